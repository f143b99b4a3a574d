"""Optical properties derived from Im ε(ω) on the 0-20 eV grid: Re ε, n, k, α, R and per-material scalars.

Re ε comes from the Kramers-Kronig relation

    ε1(ω) = 1 + (2/π) P∫_0^W ω' ε2(ω') / (ω'² - ω²) dω',

evaluated as one matrix product on the grid (batched, on any device). The principal value is taken
by subtracting the singularity: the integrand ``[ω' ε2(ω') - ω ε2(ω)] / (ω'² - ω²)`` is regular and is
integrated with the trapezoid rule (its value at ω' = ω from the derivative of ω ε2), and the
subtracted part ``ω ε2(ω) P∫_0^W dω'/(ω'² - ω²) = ε2(ω) ln|(W - ω)/(W + ω)| / 2`` is exact.

The finite window: ε2 is taken as zero above W = 20 eV. Leaving out the spectral weight there lowers
ε1 by about (2/π) ∫_W^∞ ε2(ω')/ω' dω' at low energies (a near-constant offset, small when ε2 has
decayed by 20 eV, as for the semiconductors and insulators of the paper), and ε1 is not meaningful
within about 1 eV of W, where the missing tail dominates. Tested on a Lorentz oscillator: within 1 %
of the peak |ε| up to 15 eV (``tests/test_optics.py``).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from ..spectra.grid import ENERGY_GRID

#: h c in eV cm: a photon of E eV has the wavelength HC_EV_CM / E cm.
HC_EV_CM = 1.23984198e-4
#: The visible range (eV) for the mean absorption coefficient.
VISIBLE_EV = (1.6, 3.3)
#: The absorption onset: the lowest energy from which ε2 stays at or above this fraction of its maximum ...
ONSET_FRACTION = 0.01
#: ... and at or above this absolute level: 2.5x the largest below-gap prediction of the median test material
#: (experiments/optics_noise) ...
ONSET_FLOOR = 0.1
#: ... over at least this span (eV): a wiggle of the prediction below the gap is no onset.
ONSET_SPAN_EV = 0.5
#: Scalars per material, in the order of the output tables.
SCALARS = ("onset_eV", "eps_static", "alpha_visible_mean", "peak_energy_eV", "peak_height", "qw",
           "fsum_plasma_eV")


@lru_cache(maxsize=4)
def _kk_operator(n: int, w_max: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(T [n, n], diag [n], dcoef [n])`` with ε1 - 1 = (2/π) (ε2 @ T.T + ε2 * diag + dε2 * dcoef)."""
    w = np.linspace(0.0, w_max, n)
    h = w[1] - w[0]
    weights = np.full(n, h)
    weights[[0, -1]] = h / 2
    wi, wj = w[:, None], w[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / (wj ** 2 - wi ** 2)
    np.fill_diagonal(inv, 0.0)
    T = weights[None, :] * wj * inv                          # Σ_j w_j ω_j ε2_j / (ω_j² - ω_i²)
    c = wi[:, 0] * (inv * weights[None, :]).sum(axis=1)      # subtracted: ε2_i ω_i Σ_j w_j / (ω_j² - ω_i²)
    # The exact principal value of the subtracted part; at the window's edge the log is cut at half a step.
    upper = np.abs(w_max - w)
    upper[-1] = h / 2
    log_term = 0.5 * np.log(upper / (w_max + w))
    # The regular integrand at ω' = ω: d(ω ε2)/dω / (2ω) = (ε2 + ω ε2') / (2ω); at ω = 0 its limit ε2'(0).
    diag_self = np.where(w > 0, weights / (2 * np.where(w > 0, w, 1.0)), 0.0)
    dcoef = np.where(w > 0, weights / 2, weights)
    T = T.copy()
    diag = -c + log_term + diag_self
    return T, diag, dcoef


def _grid(eps_imag: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    return _grid_tensors(eps_imag.shape[-1], eps_imag.device, eps_imag.dtype)


@lru_cache(maxsize=8)
def _grid_tensors(n: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """``(T, diag, dcoef, energy)`` of :func:`_kk_operator` as tensors, made once per size, device and dtype:
    converting the [n, n] operator costs ~25 ms, more than the rest of :func:`scalars` for one spectrum.
    Read-only; made outside inference mode, so that a caller with gradients can use them too."""
    T, diag, dcoef = _kk_operator(n, float(ENERGY_GRID[-1]))
    kw = {"device": device, "dtype": dtype}
    with torch.inference_mode(False):
        return (torch.as_tensor(T, **kw), torch.as_tensor(diag, **kw), torch.as_tensor(dcoef, **kw),
                torch.as_tensor(ENERGY_GRID, **kw))


def eps_real(eps_imag: Tensor) -> Tensor:
    """Re ε [..., n] from Im ε [..., n] on the 0-20 eV grid (Kramers-Kronig, see the module docstring)."""
    T, diag, dcoef, energy = _grid(eps_imag)
    d_eps = torch.gradient(eps_imag, spacing=(energy,), dim=-1)[0]
    return 1.0 + (2.0 / math.pi) * (eps_imag @ T.T + eps_imag * diag + d_eps * dcoef)


def refractive_index(eps_real_: Tensor, eps_imag: Tensor) -> tuple[Tensor, Tensor]:
    """``(n, k)``: the principal square root of ε = ε1 + i ε2."""
    modulus = torch.sqrt(eps_real_ ** 2 + eps_imag ** 2)
    n = torch.sqrt(torch.clamp((modulus + eps_real_) / 2, min=0.0))
    k = torch.sqrt(torch.clamp((modulus - eps_real_) / 2, min=0.0))
    return n, k


def absorption_coefficient(k: Tensor, energy: Tensor) -> Tensor:
    """α(ω) = 2 ω k / c = 4π k E / (h c), in 1/cm."""
    return 4.0 * math.pi * k * energy / HC_EV_CM


def reflectivity(n: Tensor, k: Tensor) -> Tensor:
    """Normal-incidence reflectivity R = ((n - 1)² + k²) / ((n + 1)² + k²)."""
    return ((n - 1) ** 2 + k ** 2) / ((n + 1) ** 2 + k ** 2)


def derive(eps_imag: Tensor | np.ndarray) -> dict[str, Tensor]:
    """Every derived spectrum of Im ε [B, n]: ``eps_real``, ``n``, ``k``, ``alpha`` (1/cm), ``reflectivity``."""
    eps_imag = torch.as_tensor(eps_imag)
    e1 = eps_real(eps_imag)
    n, k = refractive_index(e1, eps_imag)
    energy = _grid(eps_imag)[3]
    return {"eps_real": e1, "n": n, "k": k, "alpha": absorption_coefficient(k, energy),
            "reflectivity": reflectivity(n, k)}


def f_sum(eps_imag: Tensor) -> Tensor:
    """∫ ω ε2(ω) dω over the window (eV²); the f-sum rule makes it (π/2) (ħω_p)² for the full spectrum."""
    energy = _grid(eps_imag)[3]
    return torch.trapezoid(energy * eps_imag, x=energy, dim=-1)


def onset(eps_imag: Tensor | np.ndarray) -> Tensor:
    """The absorption onset [B] (eV) of Im ε [B, n]: the lowest energy from which ε2 stays at or above
    max(:data:`ONSET_FRACTION` x its maximum, :data:`ONSET_FLOOR`) for :data:`ONSET_SPAN_EV`; NaN where it never
    does (a flat spectrum: no absorption in the window). Robust to a prediction's below-gap noise, which the plain
    1 %-of-the-maximum rule followed (onsets at 0.2 eV for a 7 eV-gap crystal)."""
    eps_imag = torch.as_tensor(eps_imag)
    energy = _grid(eps_imag)[3]
    n = eps_imag.shape[-1]
    peak = eps_imag.max(dim=-1).values.unsqueeze(-1)
    below = (eps_imag < torch.clamp(ONSET_FRACTION * peak, min=ONSET_FLOOR)).to(torch.int32)
    span = int(round(ONSET_SPAN_EV / float(energy[1] - energy[0]))) + 1
    # Points below the threshold in [i, i + span): cumulative sums (the grid's end counts as above).
    counts = torch.nn.functional.pad(torch.cumsum(torch.nn.functional.pad(below, (0, span - 1)), dim=-1), (1, 0))
    sustained = (counts[..., span:span + n] - counts[..., :n]) == 0
    first = sustained.to(torch.int8).argmax(dim=-1)
    return torch.where(sustained.any(dim=-1), energy[first], torch.full_like(energy[first], float("nan")))


def denoised(eps_imag: Tensor | np.ndarray, start: Tensor | None = None) -> Tensor:
    """Im ε with everything below its :func:`onset` set to zero (all of it where there is none): what the derived
    scalars are taken from, so that a prediction's below-gap noise makes no visible absorption. ``start``: the
    onsets [B] when the caller has them."""
    eps_imag = torch.as_tensor(eps_imag)
    start = (onset(eps_imag) if start is None else start).unsqueeze(-1)
    energy = _grid(eps_imag)[3]
    keep = energy >= torch.nan_to_num(start, nan=float("inf"))
    return torch.where(keep, eps_imag, torch.zeros_like(eps_imag))


def scalars(eps_imag: Tensor | np.ndarray, derived: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Per-material scalars [B] of Im ε [B, n] (see :data:`SCALARS`), taken from :func:`denoised` Im ε.

    ``onset_eV``: :func:`onset` (NaN: none in the window); ``eps_static``: Re ε at ω = 0;
    ``alpha_visible_mean``: mean α over 1.6-3.3 eV (1/cm); ``peak_energy_eV``/``peak_height``: the
    maximum of ε2; ``qw``: ∫ ε2 dω (eV), the paper's integrated weight; ``fsum_plasma_eV``: the
    plasma energy ħω_p = sqrt((2/π) ∫ ω ε2 dω) that the window's spectral weight corresponds to.
    ``derived``: :func:`derive` of the denoised spectrum, when the caller has it already.
    """
    raw = torch.as_tensor(eps_imag)
    start = onset(raw)
    eps_imag = denoised(raw, start)
    derived = derived if derived is not None else derive(eps_imag)
    energy = _grid(eps_imag)[3]
    peak, where = eps_imag.max(dim=-1)
    visible = (energy >= VISIBLE_EV[0]) & (energy <= VISIBLE_EV[1])
    return {"onset_eV": start, "eps_static": derived["eps_real"][..., 0],
            "alpha_visible_mean": derived["alpha"][..., visible].mean(dim=-1),
            "peak_energy_eV": energy[where], "peak_height": peak,
            "qw": torch.trapezoid(eps_imag, x=energy, dim=-1),
            "fsum_plasma_eV": torch.sqrt(torch.clamp(2.0 / math.pi * f_sum(eps_imag), min=0.0))}


def scalar_spread(members: Tensor) -> dict[str, Tensor]:
    """How sure an ensemble is of each scalar: ``<scalar>_std`` [B], the standard deviation over its members'
    predictions ``members`` [M, B, n] (each member's scalars taken as :func:`scalars` takes them). An onset only
    some members see counts with the members that see one; ``onset_fraction``: the share of members that do."""
    per = [scalars(m) for m in members]
    out = {}
    for key in SCALARS:
        values = torch.stack([p[key] for p in per])  # [M, B]
        mean = torch.nanmean(values, dim=0)
        out[f"{key}_std"] = torch.sqrt(torch.nanmean((values - mean) ** 2, dim=0))
    out["onset_fraction"] = torch.stack([~torch.isnan(p["onset_eV"]) for p in per]).float().mean(0)
    return out
