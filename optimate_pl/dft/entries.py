"""Computed rungs as entries of the authors' two database formats (REFERENCE §2), which the readers take.

* IPA database: ``ipa_epsI_0``/``ipa_epsR_0`` (xx), ``_1``/``_2`` (yy, zz) only where they differ from
  xx, the gaps.
* RPA database: ``rpa_epsI``/``rpa_epsR``/``ipa_epsI``/``ipa_epsR`` as ``{"xx", "yy", "zz"}`` dicts
  (``yy``/``zz`` left out where equal to xx), ``rpa_similarity`` (written only for a finished RPA rung,
  as the authors' files), the gaps, ``nsites``.

Every setting, the GPAW version, the k-point grids, band counts and costs go into ``parameters``.
Spectra are rounded to 5 significant digits (far below the settings' convergence error), which keeps
the shipped dataset small.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from .runner import RungResult
from .settings import LadderSettings

DIRECTIONS = ("xx", "yy", "zz")
#: Two directions count as equal by symmetry when they agree to this fraction of the spectrum's scale.
SAME_DIRECTION_RTOL = 1e-4


def _round(arr: np.ndarray) -> list[float]:
    return [float(f"{v:.5g}") for v in np.asarray(arr, dtype=np.float64)]


def _components(eps: np.ndarray) -> dict[str, np.ndarray | None]:
    """xx, yy, zz of ε; yy/zz None where equal to xx (the databases' 'same as xx' convention)."""
    scale = max(np.abs(eps[0]).max(), 1e-12)
    out: dict[str, np.ndarray | None] = {"xx": eps[0]}
    for i, d in ((1, "yy"), (2, "zz")):
        out[d] = None if np.abs(eps[i] - eps[0]).max() <= SAME_DIRECTION_RTOL * scale else eps[i]
    return out


def similarity(x: np.ndarray, ref: np.ndarray) -> float:
    """SC[x; ref] = 1 - ∫|x - ref| dω / ∫|ref| dω on the 0-20 eV grid (REFERENCE §7)."""
    from ..spectra.grid import ENERGY_GRID

    return float(1.0 - _trapezoid(np.abs(x - ref), ENERGY_GRID) / _trapezoid(np.abs(ref), ENERGY_GRID))


def computed_structure(structure: Structure, result: RungResult) -> Structure:
    """The structure the rungs were computed for (the input, symmetrised to its space group)."""
    return Structure(Lattice(result.cell), [s.specie for s in structure], result.positions,
                     coords_are_cartesian=True)


def _metadata(structure: Structure, data: dict[str, Any] | None, mat_id: str) -> dict[str, Any]:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    data = dict(data or {})
    out = {"mat_id": mat_id, "formula": data.get("formula") or structure.composition.reduced_formula,
           "elements": sorted({el.symbol for el in structure.composition.elements}), "nsites": len(structure)}
    try:
        out["spg"] = SpacegroupAnalyzer(structure, symprec=0.1).get_space_group_number()
    except Exception:  # spglib can fail on odd cells; the space group is informative only
        out["spg"] = data.get("spg")
    for key in ("band_gap_ind", "band_gap_dir", "e_above_hull", "e_form", "prototype_id"):
        if key in data:
            out[f"alexandria_{key}"] = data[key]
    return out


def _parameters(settings: LadderSettings, result: RungResult, level: str) -> dict[str, Any]:
    info = result.info
    params = {"code": "GPAW", "gpaw_version": info.get("gpaw_version"), "xc": "PBE", "level": level,
              "settings": settings.as_dict(), "ipa_broad": settings.broadening_eV,
              "kpts_gs": info.get("kpts_gs"), "kpts_nscf": info.get("kpts_nscf"),
              "n_kpts_ibz": info.get("n_kpts_ibz"), "n_symmetries": info.get("n_symmetries"),
              "ipa_nbands": info.get("n_bands"), "n_occupied": info.get("n_occupied"),
              "bands_reach_eV": info.get("bands_reach_eV"), "pw_conv_cutoff": settings.pw_cutoff_eV,
              "core_seconds": {k: round(v, 2) for k, v in result.times.items()}}
    if level == "both":
        params.update({"rpa_G_eV": settings.response_cutoff_eV, "rpa_n_G": info.get("n_G"),
                       "rpa_broad": settings.broadening_eV})
    return params


def ipa_entry(structure: Structure, result: RungResult, settings: LadderSettings, mat_id: str,
              data: dict[str, Any] | None = None, level: str = "ipa") -> dict:
    """The IPA-database entry (``ComputedStructureEntry.as_dict()``) of a computed material."""
    s = computed_structure(structure, result)
    d = _metadata(s, data, mat_id)
    imag, real = _components(result.ipa.imag), _components(result.ipa.real)
    for i, direction in enumerate(DIRECTIONS):
        if imag[direction] is not None or real[direction] is not None or i == 0:
            d[f"ipa_epsI_{i}"] = _round(result.ipa.imag[i])
            d[f"ipa_epsR_{i}"] = _round(result.ipa.real[i])
    d.update(ipa_direct_gap=result.gap_direct, ipa_indirect_gap=result.gap_indirect)
    entry = ComputedStructureEntry(s, energy=0.0, data=d, parameters=_parameters(settings, result, level),
                                   entry_id=mat_id)
    return entry.as_dict()


def rpa_entry(structure: Structure, result: RungResult, settings: LadderSettings, mat_id: str,
              data: dict[str, Any] | None = None) -> dict:
    """The RPA-database entry of a material computed with ``level=both``."""
    if result.rpa is None:
        raise ValueError(f"{mat_id}: no RPA rung was computed (level=ipa)")
    s = computed_structure(structure, result)
    d = _metadata(s, data, mat_id)
    for key, eps in (("rpa_epsI", result.rpa.imag), ("rpa_epsR", result.rpa.real),
                     ("ipa_epsI", result.ipa.imag), ("ipa_epsR", result.ipa.real)):
        comps = _components(eps)
        d[key] = {k: _round(v) for k, v in comps.items() if v is not None}
    d.update(ipa_direct_gap=result.gap_direct, ipa_indirect_gap=result.gap_indirect, nsites=len(s),
             sc_rpa_ipa=similarity(result.rpa.imag.mean(0), result.ipa.imag.mean(0)))
    if result.rpa_half is not None:
        # Convergence check of the local fields: the RPA trace with half the G-vector cutoff against the full one.
        d["rpa_similarity"] = similarity(result.rpa_half.imag.mean(0), result.rpa.imag.mean(0))
    entry = ComputedStructureEntry(s, energy=0.0, data=d, parameters=_parameters(settings, result, "both"),
                                   entry_id=mat_id)
    return entry.as_dict()
