"""Calibrated uncertainty of an ensemble's spectra: per-energy bands and one number per material.

An ensemble's members disagree by σ(ω) (their standard deviation at each energy). The band
``mean ± scale · (σ(ω) + floor)`` is calibrated on the validation set by split conformal prediction
with normalised scores: ``scale`` is the conformal quantile of |y - mean| / (σ + floor) over the
validation points, so that on exchangeable unseen points the band covers the nominal fraction (the
points of one spectrum are not independent, so this holds on average over materials, not per
material; the test report gives the observed coverage). The floor (1 % of the validation spectra's
median height) keeps bands from collapsing where all members predict zero, below the gap.

One number per material, ``expected_sc_error``: the members' spread in SC units,
∫ σ dω / ∫ |mean| dω, scaled on the validation set to the median real 1 - SC of the mean spectrum.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

from .metrics import similarity_coefficient

#: The nominal level of the band the outputs carry.
LEVEL = 0.9
#: The floor of σ, as a fraction of the validation spectra's median maximum.
FLOOR_FRACTION = 0.01


@dataclass
class Calibration:
    """What a validation set says about an ensemble's spread (saved in the ensemble's card)."""

    level: float
    scale: float
    floor: float
    sc_error_scale: float
    n_validation: int

    def to_dict(self) -> dict:
        return asdict(self)


def conformal_scale(scores: Tensor | np.ndarray, level: float) -> float:
    """The split-conformal quantile: the ceil((n + 1) level)-th smallest of n scores."""
    scores = torch.as_tensor(scores, dtype=torch.float64).reshape(-1).sort().values
    n = scores.numel()
    return float(scores[min(n, int(math.ceil((n + 1) * level))) - 1])


def spread(mean: Tensor, std: Tensor) -> Tensor:
    """Per material: the members' spread in SC units, ∫ σ dω / ∫ |mean| dω (before scaling)."""
    return torch.trapezoid(std, dim=-1) / torch.trapezoid(mean.abs(), dim=-1).clamp(min=1e-12)


def normalised_scores(y: Tensor, mean: Tensor, std: Tensor, floor: float) -> Tensor:
    """The conformal scores |y - mean| / (σ + floor) of every point."""
    return (y - mean).abs() / (std + floor)


def calibrate(y: Tensor, mean: Tensor, std: Tensor, level: float = LEVEL) -> Calibration:
    """Fit the band's scale and the scalar's scale on validation spectra [n, points] (targets, mean, std)."""
    y, mean, std = (torch.as_tensor(t, dtype=torch.float64) for t in (y, mean, std))
    floor = FLOOR_FRACTION * float(y.abs().amax(dim=-1).median())
    scale = conformal_scale(normalised_scores(y, mean, std, floor), level)
    real = 1.0 - similarity_coefficient(mean, y)
    sc_error_scale = float(real.median() / spread(mean, std).median().clamp(min=1e-12))
    return Calibration(level=level, scale=scale, floor=floor, sc_error_scale=sc_error_scale, n_validation=len(y))


def band(mean: Tensor, std: Tensor, cal: Calibration, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """The calibrated band ``(lower, upper)`` at the calibration's level (or with another ``scale``)."""
    half = (cal.scale if scale is None else scale) * (std + cal.floor)
    return mean - half, mean + half


def expected_sc_error(mean: Tensor, std: Tensor, cal: Calibration) -> Tensor:
    """Per material: the expected 1 - SC of the mean spectrum, from the members' spread."""
    return cal.sc_error_scale * spread(mean, std)


def coverage(y: Tensor, lower: Tensor, upper: Tensor) -> float:
    """The fraction of points inside their band."""
    y, lower, upper = (torch.as_tensor(t) for t in (y, lower, upper))
    return float(((y >= lower) & (y <= upper)).double().mean())


def reliability(val: tuple[Tensor, Tensor, Tensor], test: tuple[Tensor, Tensor, Tensor], cal: Calibration,
                levels=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)) -> list[dict[str, float]]:
    """Observed coverage of the test points at each nominal level, each level calibrated on validation
    (with the floor of ``cal``).

    ``val`` and ``test``: ``(y, mean, std)`` spectra [n, points].
    """
    y_val, mean_val, std_val = (torch.as_tensor(t, dtype=torch.float64) for t in val)
    y, mean, std = (torch.as_tensor(t, dtype=torch.float64) for t in test)
    scores = normalised_scores(y_val, mean_val, std_val, cal.floor)
    return [{"nominal": level, "observed": coverage(y, *band(mean, std, cal, scale=conformal_scale(scores, level)))}
            for level in levels]


def spearman(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> float:
    """Spearman's rank correlation (ties by average rank)."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)
