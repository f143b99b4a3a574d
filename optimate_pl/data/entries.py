"""Entries of the authors' two database formats (REFERENCE §2), written by every producer of spectra.

The compute command (:mod:`optimate_pl.dft.entries`) and the importers (:mod:`optimate_pl.importers`)
both write materials through these two functions, so the readers (:mod:`optimate_pl.data.readers`) take
what either wrote:

* IPA database: ``ipa_epsI_0``/``ipa_epsR_0`` (xx), ``_1``/``_2`` (yy, zz) only where they differ from
  xx, the gaps.
* RPA database: ``rpa_epsI``/``rpa_epsR``/``ipa_epsI``/``ipa_epsR`` as ``{"xx", "yy", "zz"}`` dicts
  (``yy``/``zz`` left out where equal to xx), ``rpa_similarity`` (only for a finished RPA rung, as the
  authors' files have it), the gaps, ``nsites``, ``sc_rpa_ipa``.

A gap the producer does not know (an imported Yambo or GPAW spectrum) is written as ``null``; the readers
then keep the material without applying the authors' gap filters to it. Spectra are rounded to 5
significant digits (far below any code's convergence error), which keeps the files small.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from ..spectra.grid import ENERGY_GRID

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed it

DIRECTIONS = ("xx", "yy", "zz")
#: Two directions count as equal by symmetry when they agree to this fraction of the spectrum's scale.
SAME_DIRECTION_RTOL = 1e-4


#: Characters an entry's file name keeps as they are; any other is written as %XX (its UTF-8 bytes).
_NAME_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.+")


def entry_file_name(mat_id: str) -> str:
    """``<id>.json`` with every character outside letters, digits and ``-_.+`` percent-encoded (and a leading dot):
    one id, one name, never two ids to one file ("a b" -> ``a%20b.json``, "a_b" -> ``a_b.json``)."""
    out = []
    for i, c in enumerate(str(mat_id)):
        out.append(c if c in _NAME_SAFE and not (i == 0 and c == ".") else
                   "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogateescape")))
    return "".join(out) + ".json"


def _round(arr: np.ndarray) -> list[float]:
    """Each value to 5 significant digits (``float(f"{v:.5g}")``), formatted in one string operation (2x faster)."""
    values = np.asarray(arr, dtype=np.float64).tolist()
    return [float(x) for x in ("%.5g," * len(values) % tuple(values)).split(",")[:-1]]


def components(eps: np.ndarray) -> dict[str, np.ndarray | None]:
    """xx, yy, zz of ε [3, 2001]; yy/zz None where equal to xx (the databases' 'same as xx' convention)."""
    scale = max(np.abs(eps[0]).max(), 1e-12)
    out: dict[str, np.ndarray | None] = {"xx": eps[0]}
    for i, d in ((1, "yy"), (2, "zz")):
        out[d] = None if np.abs(eps[i] - eps[0]).max() <= SAME_DIRECTION_RTOL * scale else eps[i]
    return out


def similarity(x: np.ndarray, ref: np.ndarray) -> float:
    """SC[x; ref] = 1 - ∫|x - ref| dω / ∫|ref| dω on the 0-20 eV grid (REFERENCE §7)."""
    return float(1.0 - _trapezoid(np.abs(x - ref), ENERGY_GRID) / _trapezoid(np.abs(ref), ENERGY_GRID))


def metadata(structure: Structure, mat_id: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """``entry.data``'s material fields: id, formula (the split's grouping key), elements, sites, space group."""
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


def _gap(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def ipa_database_entry(structure: Structure, mat_id: str, imag: np.ndarray, real: np.ndarray,
                       direct_gap: float | None, indirect_gap: float | None, parameters: dict[str, Any],
                       data: dict[str, Any] | None = None) -> dict:
    """An IPA-database entry (``ComputedStructureEntry.as_dict()``) of ε = ``real`` + i ``imag`` [3, 2001]."""
    d = metadata(structure, mat_id, data)
    im, re = components(imag), components(real)
    for i, direction in enumerate(DIRECTIONS):
        if im[direction] is not None or re[direction] is not None or i == 0:
            d[f"ipa_epsI_{i}"] = _round(imag[i])
            d[f"ipa_epsR_{i}"] = _round(real[i])
    d.update(ipa_direct_gap=_gap(direct_gap), ipa_indirect_gap=_gap(indirect_gap))
    return ComputedStructureEntry(structure, energy=0.0, data=d, parameters=parameters, entry_id=mat_id).as_dict()


def rpa_database_entry(structure: Structure, mat_id: str, rpa: tuple[np.ndarray, np.ndarray],
                       ipa: tuple[np.ndarray, np.ndarray], direct_gap: float | None, indirect_gap: float | None,
                       parameters: dict[str, Any], data: dict[str, Any] | None = None,
                       rpa_similarity: float | None = None, finished: bool = True) -> dict:
    """An RPA-database entry of ``rpa`` and ``ipa`` (each ``(imag, real)`` [3, 2001]).

    ``rpa_similarity``: the producer's convergence check of the local fields (SC of the RPA trace at half
    the G-vector cutoff against the full one). The readers keep an RPA file only when it carries the field
    (the authors' mark of a finished run): ``finished=False`` leaves it out; a finished run without a check
    (an imported spectrum) writes ``null``.
    """
    d = metadata(structure, mat_id, data)
    for key, eps in (("rpa_epsI", rpa[0]), ("rpa_epsR", rpa[1]), ("ipa_epsI", ipa[0]), ("ipa_epsR", ipa[1])):
        d[key] = {k: _round(v) for k, v in components(eps).items() if v is not None}
    d.update(ipa_direct_gap=_gap(direct_gap), ipa_indirect_gap=_gap(indirect_gap), nsites=len(structure),
             sc_rpa_ipa=similarity(rpa[0].mean(0), ipa[0].mean(0)))
    if finished:
        d["rpa_similarity"] = None if rpa_similarity is None else float(rpa_similarity)
    return ComputedStructureEntry(structure, energy=0.0, data=d, parameters=parameters, entry_id=mat_id).as_dict()


def damaged_entry(path: Path) -> str | None:
    """Why an entry file cannot be trusted (cut short, not JSON, not an entry), or ``None`` for a whole one."""
    try:
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        return f"{type(err).__name__}: {str(err)[:80]}"
    if not isinstance(entry, dict) or not isinstance(entry.get("data"), dict) or "structure" not in entry:
        return "not a database entry"
    return None
