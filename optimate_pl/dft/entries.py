"""Computed rungs as entries of the authors' two database formats (written by :mod:`optimate_pl.data.entries`).

The RPA entry carries ``rpa_similarity`` only when the run checked its local fields at half the G-vector
cutoff (a finished RPA rung, as the authors' files). Every setting, the GPAW version, the k-point grids,
band counts and costs go into ``parameters``.
"""
from __future__ import annotations

from typing import Any

from pymatgen.core import Lattice, Structure

from ..data.entries import ipa_database_entry, rpa_database_entry, similarity
from .runner import RungResult
from .settings import LadderSettings


def computed_structure(structure: Structure, result: RungResult) -> Structure:
    """The structure the rungs were computed for (the input, symmetrised to its space group)."""
    return Structure(Lattice(result.cell), [s.specie for s in structure], result.positions,
                     coords_are_cartesian=True)


def _parameters(settings: LadderSettings, result: RungResult, level: str) -> dict[str, Any]:
    info = result.info
    params = {"code": "GPAW", "gpaw_version": info.get("gpaw_version"), "xc": "PBE", "level": level,
              "settings": settings.as_dict(), "ipa_broad": settings.broadening_eV,
              "kpts_gs": info.get("kpts_gs"), "kpts_nscf": info.get("kpts_nscf"),
              "n_kpts_ibz": info.get("n_kpts_ibz"), "n_symmetries": info.get("n_symmetries"),
              "ipa_nbands": info.get("n_bands"), "n_occupied": info.get("n_occupied"),
              "bands_reach_eV": info.get("bands_reach_eV"), "pw_conv_cutoff": settings.pw_cutoff_eV,
              "scf_iterations": info.get("scf_iterations"),
              "core_seconds": {k: round(v, 2) for k, v in result.times.items()}}
    if level == "both":
        params.update({"rpa_G_eV": info.get("response_cutoff_eV", settings.response_cutoff_eV), "rpa_n_G": info.get("n_G"),
                       "rpa_broad": settings.broadening_eV})
    return params


def ipa_entry(structure: Structure, result: RungResult, settings: LadderSettings, mat_id: str,
              data: dict[str, Any] | None = None, level: str = "ipa") -> dict:
    """The IPA-database entry (``ComputedStructureEntry.as_dict()``) of a computed material."""
    return ipa_database_entry(computed_structure(structure, result), mat_id, result.ipa.imag, result.ipa.real,
                              result.gap_direct, result.gap_indirect, _parameters(settings, result, level), data)


def rpa_entry(structure: Structure, result: RungResult, settings: LadderSettings, mat_id: str,
              data: dict[str, Any] | None = None) -> dict:
    """The RPA-database entry of a material computed with ``level=both``."""
    if result.rpa is None:
        raise ValueError(f"{mat_id}: no RPA rung was computed (level=ipa)")
    # Convergence check of the local fields: the RPA trace with half the G-vector cutoff against the full one.
    check = None if result.rpa_half is None else similarity(result.rpa_half.imag.mean(0), result.rpa.imag.mean(0))
    return rpa_database_entry(computed_structure(structure, result), mat_id, (result.rpa.imag, result.rpa.real),
                              (result.ipa.imag, result.ipa.real), result.gap_direct, result.gap_indirect,
                              _parameters(settings, result, "both"), data, rpa_similarity=check,
                              finished=result.rpa_half is not None)
