"""What a model predicts and how it is scored: one description per target.

The module, the per-material results table and the summary all read these descriptions, so a
target's loss, metrics, log keys and table columns are stated once. The paper has two targets:
the spectrum Im ε(ω) on 2001 points (scored by SC, MSE, MAE against the DFT spectrum, with the IPA
spectrum as baseline on RPA data) and the scalar SC[RPA;IPA] of the SC predictor (scored by the
absolute error).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from ..spectra.metrics import AbsoluteError, PerSampleMetric, SimilarityCoefficient, SpectralMAE, SpectralMSE
from .target_names import OUT_DIMS


@dataclass(frozen=True)
class Score:
    """One per-material score: logged as ``<stage>/<key>_median``, written as column ``column``."""

    key: str
    column: str
    label: str
    metric: type[PerSampleMetric]


@dataclass(frozen=True)
class Target:
    """A regression target.

    Attributes:
        name: the ``data.target`` value.
        out_dim: network outputs per material.
        label: what a model of this target is, in words.
        scores: per-material scores of the test set (medians logged, per-material values in the table).
        validated: keys of ``scores`` also tracked during validation; the first is on the progress bar.
        means: keys whose mean over the test set is logged too.
        baseline: keys also computed for the IPA spectrum against the target (``ipa_`` prefix), where
            the data carries one (RPA data).
        value_columns: write the true and predicted value per material (scalar targets).
        loss: training and validation loss (the authors': L1 over all outputs).
    """

    name: str
    out_dim: int
    label: str
    scores: tuple[Score, ...]
    validated: tuple[str, ...]
    means: tuple[str, ...] = ()
    baseline: tuple[str, ...] = ()
    value_columns: bool = False
    loss: Callable[[Tensor, Tensor], Tensor] = F.l1_loss

    def score(self, key: str) -> Score:
        return next(s for s in self.scores if s.key == key)

    @property
    def spectral(self) -> bool:
        return self.out_dim > 1

    def columns(self) -> list[str]:
        """The numeric per-material columns of the results table."""
        return [s.column for s in self.scores] + [f"ipa_{self.score(k).column}" for k in self.baseline]


SPECTRUM = Target(
    name="eps_imag", out_dim=2001, label="a spectrum model (Im ε on 2001 points per material, target eps_imag)",
    scores=(Score("sc", "sc", "SC", SimilarityCoefficient), Score("mse", "mse", "MSE", SpectralMSE),
            Score("mae", "mae", "MAE", SpectralMAE)),
    validated=("sc", "mse"), means=("sc",), baseline=("sc", "mse"))

SIMILARITY = Target(
    name="sc_rpa_ipa", out_dim=1, label="an SC[RPA;IPA] model (one number per material, target sc_rpa_ipa)",
    scores=(Score("ae", "abs_error", "|ΔSC|", AbsoluteError),),
    validated=("ae",), means=("ae",), value_columns=True)

TARGETS = {t.name: t for t in (SPECTRUM, SIMILARITY)}
assert {t.name: t.out_dim for t in TARGETS.values()} == OUT_DIMS, "target_names.OUT_DIMS is out of date"


def target(name: str) -> Target:
    """The description of ``data.target=name``."""
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose one of {', '.join(TARGETS)}")
    return TARGETS[name]


def target_of_weights(weights) -> str:
    """The target a set of weights (:class:`~optimate_pl.models.weights.Weights`) predicts: as saved in its
    hyperparameters, else from its output width (a published plain state_dict: one output is the SC
    predictor, 2001 a spectrum model)."""
    saved = weights.hparams.get("target")
    return saved or (SIMILARITY.name if weights.out_dim == SIMILARITY.out_dim else SPECTRUM.name)


def describe(name: str, out_dim: int) -> str:
    """What a network predicts, in words: a spectrum model, an SC[RPA;IPA] model, or its output count."""
    known = TARGETS.get(name)
    if known is not None and known.out_dim == out_dim:
        return known.label
    return f"a model of {out_dim} outputs per material (target {name})"
