"""One material's spectra as a code wrote them, and its conversion to database entries on the project's grid.

Every importer (:mod:`.vasp`, :mod:`.yambo`, :mod:`.gpaw`) returns an :class:`ImportedSpectra`: the
structure, ε without local fields (the IPA rung) and, where the code computed them, with local fields (the
RPA rung), each as xx/yy/zz on the code's own frequencies, its broadening and what it knows of the run.
:func:`to_entries` puts them on the 0-20 eV grid at the databases' broadening (0.3 eV, REFERENCE §1) and
writes them through :mod:`optimate_pl.data.entries`, the same code the compute command writes with.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Structure

from ..data.entries import ipa_database_entry, rpa_database_entry
from ..spectra.resample import GridError, lorentzian_broaden, max_step, onto_grid

#: The databases' broadening (REFERENCE §1: the 300 meV IPA spectra; the RPA spectra use 300 meV too).
DATABASE_BROADENING_EV = 0.3
#: Two broadenings this close count as the same.
BROADENING_TOLERANCE_EV = 0.005
RUNGS = ("auto", "ipa", "rpa", "both")


class ImportRefused(ValueError):
    """A file the importer cannot use; the message is one line saying why (and what would make it work)."""


@dataclass
class ImportedSpectra:
    """ε(ω) of one material as a code wrote it.

    ``ipa`` / ``rpa``: complex [3, n] (xx, yy, zz) on ``energies`` [n] (eV), without and with local fields;
    ``rpa`` is ``None`` where the run computed none. ``broadening_eV``: the code's Lorentzian half width
    (``None``: the file does not say). ``parameters``: what the file says of the run (code, version, file, ...).
    """

    source: str
    structure: Structure
    energies: np.ndarray
    ipa: np.ndarray | None
    rpa: np.ndarray | None = None
    broadening_eV: float | None = None
    direct_gap: float | None = None
    indirect_gap: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImportOptions:
    """How spectra become entries: which rungs, to what broadening, and what to do at the grid's edges."""

    rung: str = "auto"                 # auto: every rung the file has; ipa / rpa / both: insist on those
    broaden_to: float | None = None    # eV; None: the file's broadening must already be the databases' 0.3 eV
    beyond_grid: str = "refuse"        # refuse, or zero: Im ε = 0 where the code's grid does not reach
    broadening_eV: float | None = None  # the run's broadening where the file does not record it (GPAW's CSV)


def _on_grid(sp: ImportedSpectra, eps: np.ndarray, opts: ImportOptions, notes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(imag, real) [3, 2001] of ``eps`` at the databases' broadening."""
    eta = sp.broadening_eV if sp.broadening_eV is not None else opts.broadening_eV
    if eta is None:
        raise ImportRefused("the file does not record its broadening: give broadening=<the run's η in eV>")
    target = DATABASE_BROADENING_EV if opts.broaden_to is None else float(opts.broaden_to)
    if opts.broaden_to is None and abs(eta - DATABASE_BROADENING_EV) > BROADENING_TOLERANCE_EV:
        raise ImportRefused(f"broadened with {eta:g} eV, the databases with {DATABASE_BROADENING_EV:g} eV "
                            f"(broaden_to={DATABASE_BROADENING_EV:g} adds a Lorentzian of half width "
                            f"{max(DATABASE_BROADENING_EV - eta, 0):.3g} eV)")
    if target < eta - BROADENING_TOLERANCE_EV:
        raise ImportRefused(f"broadened with {eta:g} eV, more than broaden_to={target:g}: a spectrum cannot be sharpened")
    step = max_step(sp.energies)
    if step > target:  # fewer than two points across a peak's full width: linear interpolation would miss peaks
        raise ImportRefused(f"its frequency grid has steps of up to {step:.3g} eV below 20 eV, too coarse for a "
                            f"{target:g} eV broadening (at most {target:g} eV)")
    extra = max(target - eta, 0.0)
    try:
        energies, imag, real = sp.energies, eps.imag, eps.real
        if extra > BROADENING_TOLERANCE_EV:
            energies, imag = lorentzian_broaden(sp.energies, eps.imag, extra, parity="odd")
            _, real = lorentzian_broaden(sp.energies, eps.real, extra, parity="even")
        imag_g, note = onto_grid(energies, imag, opts.beyond_grid)
        real_g, _ = onto_grid(energies, real, opts.beyond_grid)
    except GridError as err:
        raise ImportRefused(str(err)) from None
    said = f"broadened from {eta:g} to {target:g} eV (Lorentzian, half width {extra:.3g} eV)"
    for line in ([said] if extra > BROADENING_TOLERANCE_EV else []) + ([note] if note else []):
        if line not in notes:
            notes.append(line)
    if not np.all(np.isfinite(imag_g)) or not np.all(np.isfinite(real_g)):
        raise ImportRefused("its spectrum has NaN/inf values")
    return imag_g, real_g


def to_entries(sp: ImportedSpectra, mat_id: str, opts: ImportOptions) -> tuple[dict | None, dict | None, list[str]]:
    """(IPA entry, RPA entry, notes) of ``sp``: the entries ``None`` for a rung not imported; the notes say what
    was done to the spectra (broadened, filled beyond the code's grid)."""
    if opts.rung not in RUNGS:
        raise ValueError(f"rung={opts.rung}: use one of {', '.join(RUNGS)}")
    if sp.ipa is None:
        raise ImportRefused("no spectrum without local fields (the IPA rung) in it")
    if opts.rung in ("rpa", "both") and sp.rpa is None:
        raise ImportRefused(f"rung={opts.rung} but the file has no spectrum with local fields (only the IPA rung)")
    notes: list[str] = []
    ipa = _on_grid(sp, sp.ipa, opts, notes)
    target = DATABASE_BROADENING_EV if opts.broaden_to is None else float(opts.broaden_to)
    params = {**sp.parameters, "imported_from": sp.source, "source_broadening_eV": sp.broadening_eV
              if sp.broadening_eV is not None else opts.broadening_eV, "ipa_broad": target,
              "import_notes": notes}
    ipa_entry = rpa_entry = None
    if opts.rung in ("auto", "ipa", "both"):
        ipa_entry = ipa_database_entry(sp.structure, mat_id, ipa[0], ipa[1], sp.direct_gap, sp.indirect_gap, params)
    if sp.rpa is not None and opts.rung in ("auto", "rpa", "both"):
        rpa = _on_grid(sp, sp.rpa, opts, notes)
        rpa_entry = rpa_database_entry(sp.structure, mat_id, rpa, ipa, sp.direct_gap, sp.indirect_gap,
                                       {**params, "rpa_broad": target})
    return ipa_entry, rpa_entry, notes


def cubic_only(structure: Structure, source: str, what: str) -> None:
    """One direction of ε is the trace only for a cubic crystal; refuse any other with the reason."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    system = SpacegroupAnalyzer(structure, symprec=0.1).get_crystal_system()
    if system != "cubic":
        raise ImportRefused(f"{what} gives ε along one direction, which is the trace only for a cubic crystal; "
                            f"this one is {system}: give one file per direction (x, y, z)")
