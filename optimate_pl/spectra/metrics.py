"""Spectral metrics (docs/domain.md §7) as functions and as torchmetrics with per-sample state.

SC[X; Y] = 1 - ∫|X - Y| dω / ∫|Y| dω, where Y is the reference (trapezoid rule on the grid).
The metric classes keep every per-spectrum value as state (reduced across processes by
concatenation), so ``compute()`` can return the median over the whole evaluation set, as the
paper reports, and also the mean and the per-sample values.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


def similarity_coefficient(x: Tensor, reference: Tensor, energy: Tensor | None = None) -> Tensor:
    """SC[x; reference] per spectrum, shape [..., n_points] -> [...].

    The reference normalises: 1 - trapz|x - ref| / trapz|ref|. An all-zero reference is defined
    as 1.0 when ``x`` is all zero too and ``-inf`` otherwise (loud, never NaN).
    """
    num = torch.trapezoid((x - reference).abs(), x=energy, dim=-1) if energy is not None \
        else torch.trapezoid((x - reference).abs(), dim=-1)
    den = torch.trapezoid(reference.abs(), x=energy, dim=-1) if energy is not None \
        else torch.trapezoid(reference.abs(), dim=-1)
    sc = 1.0 - num / torch.where(den > 0, den, torch.ones_like(den))
    zero_ref = den <= 0
    return torch.where(zero_ref, torch.where(num <= 0, torch.ones_like(sc), torch.full_like(sc, -torch.inf)), sc)


def spectral_mse(x: Tensor, reference: Tensor) -> Tensor:
    """Mean over the grid of (x - reference)^2, per spectrum."""
    return ((x - reference) ** 2).mean(dim=-1)


def spectral_mae(x: Tensor, reference: Tensor) -> Tensor:
    """Mean over the grid of |x - reference|, per spectrum."""
    return (x - reference).abs().mean(dim=-1)


def median(values: Tensor) -> Tensor:
    """NumPy's median: the mean of the two middle values for an even count (torch takes the lower)."""
    if values.numel() == 0:
        return torch.tensor(float("nan"))
    s = values.flatten().sort().values
    n = s.numel()
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


class PerSampleMetric(Metric):
    """Base: keeps one value per sample; ``compute()`` gives the median (``reduction`` selects).

    ``reduction`` is ``"median"`` (default), ``"mean"`` or ``"none"`` (all per-sample values, in
    the order they were gathered).
    """

    full_state_update = False
    higher_is_better: bool | None = None

    def __init__(self, reduction: str = "median", **kwargs) -> None:
        super().__init__(**kwargs)
        if reduction not in ("median", "mean", "none"):
            raise ValueError(f"reduction must be median, mean or none, got {reduction!r}")
        self.reduction = reduction
        self.add_state("values", default=[], dist_reduce_fx="cat")
        # Which values are materials: a padded batch's pad rows are kept here and dropped once, in compute(),
        # so update() reads nothing on the host (data.static_shapes).
        self.add_state("kept", default=[], dist_reduce_fx="cat")

    def per_sample(self, preds: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def update(self, preds: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add the per-sample values of a batch (``preds`` and ``target`` of equal shape); ``mask`` [B]: which
        samples count (the real materials of a padded batch), default all."""
        values = self.per_sample(preds.detach().float(), target.detach().float())
        self.values.append(values)
        self.kept.append(torch.ones(values.shape[0], dtype=torch.bool, device=values.device) if mask is None
                         else mask.reshape(-1).to(torch.bool))

    def samples(self) -> Tensor:
        """All per-sample values gathered so far (across processes after sync), pad rows dropped."""
        if isinstance(self.values, list):
            if not len(self.values):
                return torch.empty(0)
            return dim_zero_cat(self.values)[dim_zero_cat(self.kept)]
        return self.values[self.kept]

    def compute(self) -> Tensor:
        vals = self.samples()
        if self.reduction == "none":
            return vals
        if self.reduction == "mean":
            return vals.mean()
        return median(vals)


class SimilarityCoefficient(PerSampleMetric):
    """SC[preds; target]: ``target`` is the reference (the denominator). See :func:`similarity_coefficient`."""

    higher_is_better = True

    def per_sample(self, preds: Tensor, target: Tensor) -> Tensor:
        return similarity_coefficient(preds, target)


class SpectralMSE(PerSampleMetric):
    """Per-spectrum mean squared error; median over samples by default."""

    higher_is_better = False

    def per_sample(self, preds: Tensor, target: Tensor) -> Tensor:
        return spectral_mse(preds, target)


class SpectralMAE(PerSampleMetric):
    """Per-spectrum mean absolute error; median over samples by default."""

    higher_is_better = False

    def per_sample(self, preds: Tensor, target: Tensor) -> Tensor:
        return spectral_mae(preds, target)


class AbsoluteError(PerSampleMetric):
    """|preds - target| per sample for scalar targets (the SC[RPA;IPA] predictor)."""

    higher_is_better = False

    def per_sample(self, preds: Tensor, target: Tensor) -> Tensor:
        return (preds - target).abs().reshape(-1)
