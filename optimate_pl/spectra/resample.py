"""Spectra from other codes onto this project's grid: resampling to 0-20 eV and extra Lorentzian broadening.

Codes write ε(ω) on their own frequency grids (VASP's NEDOS points, Yambo's ``EnRnge``/``ETStps``,
GPAW's nonlinear ``frequencies``) and with their own broadening (VASP ``CSHIFT``, Yambo ``DmRnge``,
GPAW ``eta``). The databases hold Im ε on :data:`~optimate_pl.spectra.grid.ENERGY_GRID` (2001 points,
10 meV) broadened by 0.3 eV (REFERENCE §1), so an imported spectrum is

* broadened further where asked (:func:`lorentzian_broaden`): all three codes broaden by a complex
  frequency shift, i.e. a Lorentzian of half width η on every transition, and Lorentzians add their
  widths, so a spectrum with η₀ convolved with a Lorentzian of half width ``η - η₀`` has η. Im ε is odd
  in ω, so the spectrum is continued as an odd function below 0 before the convolution (the tail of a
  peak near 0 then cancels as it does in the code's own sum). Above the input's last energy nothing is
  known: weight there is missing from the convolution (its effect is confined to the last few η);
* then interpolated linearly onto the grid (:func:`onto_grid`), which must be covered: a code's grid that
  starts above 0 or stops short of 20 eV is refused unless the caller says to fill the rest with zeros.

scipy does the convolution (``fftconvolve``); the odd continuation, the grid checks and the notes are
what no library we use does, hence written here.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import fftconvolve

from .grid import ENERGY_GRID

ENERGY_MAX = float(ENERGY_GRID[-1])

#: An input grid reaching this close to 20 eV counts as reaching it (codes print 19.99 for 20).
REACH_TOLERANCE_EV = 0.02
#: Step of the uniform grid a spectrum is broadened on (the target grid's step).
BROADEN_STEP_EV = 0.01


class GridError(ValueError):
    """A spectrum that cannot be put on the grid as asked (the message says why and what to do)."""


def _check_energies(energies: np.ndarray) -> np.ndarray:
    energies = np.asarray(energies, dtype=np.float64)
    if energies.ndim != 1 or len(energies) < 2:
        raise GridError(f"needs at least 2 frequencies, got {energies.shape}")
    if not np.all(np.isfinite(energies)) or np.any(np.diff(energies) <= 0):
        raise GridError("frequencies are not finite and strictly increasing")
    return energies


def onto_grid(energies: np.ndarray, values: np.ndarray, beyond_grid: str = "refuse") -> tuple[np.ndarray, str | None]:
    """``values`` [..., n] given at ``energies`` [n] (eV) interpolated onto the 0-20 eV grid -> [..., 2001].

    A grid that starts at 0 or just above it (within :data:`REACH_TOLERANCE_EV`) is continued linearly to
    ω = 0 from its first point. A grid that starts higher or stops short of 20 eV: ``beyond_grid="refuse"``
    raises :class:`GridError` saying how far it reaches; ``"zero"`` sets the value to 0 where the input has
    none and returns a note saying so (the second item; ``None`` when nothing was filled).
    """
    energies = _check_energies(energies)
    values = np.asarray(values, dtype=np.float64)
    if values.shape[-1] != len(energies):
        raise GridError(f"{values.shape[-1]} values for {len(energies)} frequencies")
    if energies[0] < 0:
        raise GridError(f"frequencies start below 0 ({energies[0]:.3f} eV)")
    start, reach = float(energies[0]), float(energies[-1])
    gaps = []
    if start > REACH_TOLERANCE_EV:
        gaps.append(f"starts at {start:.2f} eV")
    if reach < ENERGY_MAX - REACH_TOLERANCE_EV:
        gaps.append(f"reaches only {reach:.2f} eV")
    note = None
    if gaps:
        if beyond_grid != "zero":
            raise GridError(f"the spectrum {' and '.join(gaps)}, not 0-{ENERGY_MAX:.0f} eV "
                            f"(beyond_grid=zero takes it with Im ε = 0 where it has no value)")
        note = f"{' and '.join(gaps)}: set to 0 where it has no value"
    flat = values.reshape(-1, len(energies))
    continued = start <= REACH_TOLERANCE_EV and start > 0
    xs = np.concatenate([[0.0], energies]) if continued else energies
    out = []
    for row in flat:
        ys = np.concatenate([[row[0] - (row[1] - row[0]) / (energies[1] - energies[0]) * start], row]) \
            if continued else row
        out.append(np.interp(ENERGY_GRID, xs, ys, left=0.0, right=0.0))
    return np.stack(out).reshape(*values.shape[:-1], len(ENERGY_GRID)), note


def max_step(energies: np.ndarray, upto: float = ENERGY_MAX) -> float:
    """The widest spacing of a frequency grid below ``upto`` (eV): whether it resolves a broadened spectrum."""
    energies = _check_energies(energies)
    inside = energies[energies <= upto + 1e-9]
    if len(inside) < 2:
        inside = energies[:2]
    return float(np.diff(inside).max())


def lorentzian_broaden(energies: np.ndarray, values: np.ndarray, extra_eV: float,
                       parity: str = "odd") -> tuple[np.ndarray, np.ndarray]:
    """ε [..., n] at ``energies`` convolved with a Lorentzian of half width ``extra_eV``.

    ``parity``: ``odd`` for Im ε, ``even`` for Re ε (how each continues below ω = 0). Convolving the boundary
    values of ε with this kernel is evaluating ε a further ``extra_eV`` above the real axis (the Poisson kernel),
    which is why Re and Im are broadened alike. Returns ``(uniform energies, broadened values)`` on a 10 meV
    grid from 0 to the input's last energy (resample it with :func:`onto_grid`).
    """
    if extra_eV < 0:
        raise GridError(f"cannot sharpen a spectrum (extra broadening {extra_eV:.3f} eV < 0)")
    energies = _check_energies(energies)
    values = np.asarray(values, dtype=np.float64)
    n = int(round(energies[-1] / BROADEN_STEP_EV)) + 1
    grid = np.arange(n) * BROADEN_STEP_EV
    flat = values.reshape(-1, len(energies))
    rows = np.stack([np.interp(grid, energies, r) for r in flat])
    if extra_eV == 0:
        return grid, rows.reshape(*values.shape[:-1], n)
    sign = -1.0 if parity == "odd" else 1.0
    full = np.concatenate([sign * rows[:, :0:-1], rows], axis=1)          # ω from -E to +E
    k = np.arange(-(2 * n - 2), 2 * n - 1) * BROADEN_STEP_EV
    kernel = (extra_eV / np.pi) / (k ** 2 + extra_eV ** 2) * BROADEN_STEP_EV
    conv = fftconvolve(full, kernel[None, :], mode="full", axes=1)
    centre = 2 * n - 2                                                    # the kernel's zero lag
    out = conv[:, centre:centre + 2 * n - 1][:, n - 1:]
    return grid, out.reshape(*values.shape[:-1], n)
