"""Readers for the authors' real IPA and RPA databases (their data release with the paper).

Each material is one JSON file holding a pymatgen ``ComputedStructureEntry.as_dict()``; a
database is a folder of such files or a ``.zip`` of them. The materials kept are exactly the
authors': their filters (gaps, one known bad calculation) and, for RPA, only finished runs (with
``rpa_similarity``) are left out with a reason of their own; a record that cannot be parsed, or
whose spectrum is NaN (a metal or failed run), is skipped as bad input with its reason (or raises
with ``strict=True``). Nothing else is rejected: the authors keep every other record.
"""
from __future__ import annotations

import json
import logging
import math
import zipfile
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from pymatgen.core import Composition, Structure

from .featurize import element_features
from ..utils.parallel import parallel_map
from ..spectra.grid import NUM_POINTS
from .records import LoadReport, MaterialRecord, SkippedRecord

log = logging.getLogger(__name__)

#: A known bad calculation excluded by the authors.
EXCLUDED_IDS = frozenset({"agm005546161"})
MIN_INDIRECT_GAP = 0.5
MAX_DIRECT_GAP = 10.0
DIRECTIONS = ("xx", "yy", "zz")


class BadRecordError(ValueError):
    """Raised (in strict mode) for a record that cannot be loaded; the message names the file."""


class LeftOut(ValueError):
    """A record the authors leave out by one of their rules (not broken input)."""


def as_array(value: Any, what: str) -> np.ndarray:
    """A spectrum from a list, a NumPy array or a monty-serialised ``{"@module": "numpy", ...}`` dict."""
    if isinstance(value, dict) and value.get("@module") == "numpy":
        value = np.asarray(value["data"], dtype=value.get("dtype", "float64"))
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} is not a numeric array ({err})") from None
    if arr.shape != (NUM_POINTS,):
        raise ValueError(f"{what} has shape {arr.shape}, expected ({NUM_POINTS},)")
    return arr


def check_spectrum(arr: np.ndarray, what: str) -> np.ndarray:
    """A NaN/inf spectrum is a metal or a failed run: skipped. Nothing else is judged (the authors keep it)."""
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what} contains NaN/inf (metal or failed run)")
    return arr


def trace(xx: np.ndarray, yy: np.ndarray | None, zz: np.ndarray | None) -> np.ndarray:
    """(xx + yy + zz) / 3 where a missing yy or zz means 'same as xx' by symmetry."""
    return (xx + (xx if yy is None else yy) + (xx if zz is None else zz)) / 3.0


def _get(data: dict, key: str) -> Any:
    if key not in data:
        raise ValueError(f"missing field '{key}'")
    return data[key]


def _float(data: dict, key: str, unknown_ok: bool = False) -> float:
    value = _get(data, key)
    if value is None and unknown_ok:  # an imported spectrum whose code wrote no gap
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"field '{key}' is not a number: {value!r}") from None


def ipa_trace(data: dict) -> np.ndarray:
    """Trace of the IPA database's ``ipa_epsI_{0,1,2}`` arrays."""
    xx = as_array(_get(data, "ipa_epsI_0"), "ipa_epsI_0")
    yy = as_array(data["ipa_epsI_1"], "ipa_epsI_1") if data.get("ipa_epsI_1") is not None else None
    zz = as_array(data["ipa_epsI_2"], "ipa_epsI_2") if data.get("ipa_epsI_2") is not None else None
    return check_spectrum(trace(xx, yy, zz), "ipa_epsI trace")


def dict_trace(data: dict, key: str) -> np.ndarray:
    """Trace of an RPA-database spectrum stored as ``{"xx": ..., "yy": ..., "zz": ...}``."""
    comps = _get(data, key)
    if not isinstance(comps, dict) or "xx" not in comps:
        raise ValueError(f"field '{key}' must be a dict with at least an 'xx' component")
    arrs = [as_array(comps[d], f"{key}[{d}]") if comps.get(d) is not None else None for d in DIRECTIONS]
    return check_spectrum(trace(*arrs), f"{key} trace")


def parse_entry(d: dict, kind: str) -> MaterialRecord:
    """One entry dict -> record; raises ``ValueError`` with the reason for bad input."""
    if not isinstance(d, dict) or "structure" not in d:
        raise ValueError("missing field 'structure' (not a ComputedStructureEntry dict)")
    if not isinstance(d.get("data"), dict):
        raise ValueError("missing field 'data'")
    # Only the structure and the data are read: ComputedStructureEntry.from_dict would also import pymatgen's
    # compatibility schemes (1 s of YAML per process) and walk every spectrum value through MontyDecoder.
    try:
        structure = Structure.from_dict(d["structure"])
        # As ComputedStructureEntry does: a recorded composition must be the structure's (else the file is damaged).
        recorded = Composition(d["composition"]) if d.get("composition") else None
    except Exception as err:  # pymatgen raises many types for malformed dicts
        raise ValueError(f"not a valid ComputedStructureEntry ({type(err).__name__}: {err})") from None
    if recorded is not None and (recorded.get_integer_formula_and_factor()[0]
                                 != structure.composition.get_integer_formula_and_factor()[0]):
        raise ValueError(f"not a valid ComputedStructureEntry: its composition {recorded.formula} is not its "
                         f"structure's {structure.composition.formula}")
    data = d["data"]
    mat_id = str(_get(data, "mat_id"))
    if kind == "rpa" and "rpa_similarity" not in data:
        # The authors keep an RPA file only when its run finished (it then carries rpa_similarity).
        nsites = data.get("nsites", len(structure))
        raise LeftOut(f"no rpa_similarity: the RPA calculation of {mat_id} did not finish"
                      + (" (missing calculation)" if isinstance(nsites, int) and nsites <= 8 else ""))
    if len(structure) == 0:
        raise ValueError(f"material {mat_id}: structure has no sites")
    if not structure.is_ordered:
        raise ValueError(f"material {mat_id}: disordered sites are not supported")
    for el in structure.composition.elements:
        element_features(el.symbol, mat_id)
    direct = _float(data, "ipa_direct_gap", unknown_ok=True)
    indirect = _float(data, "ipa_indirect_gap", unknown_ok=True)
    if kind == "ipa":
        spectrum, ipa = ipa_trace(data), None
    elif kind == "rpa":
        spectrum, ipa = dict_trace(data, "rpa_epsI"), dict_trace(data, "ipa_epsI")
    else:
        raise ValueError(f"unknown database kind {kind!r}")
    # The split groups polymorphs by the database's own formula, as the authors do.
    formula = data.get("formula")
    formula = str(formula) if formula else structure.composition.reduced_formula
    return MaterialRecord(mat_id=mat_id, formula=formula,
                          structure=structure, spectrum=spectrum.astype(np.float32),
                          ipa_spectrum=None if ipa is None else ipa.astype(np.float32),
                          direct_gap=direct, indirect_gap=indirect,
                          extra={"gap_unknown": data["ipa_indirect_gap"] is None})


def filter_reason(rec: MaterialRecord) -> str | None:
    """The authors' filters (indirect gap >= 0.5 eV, direct gap <= 10 eV, one bad run); ``None`` keeps it."""
    if rec.mat_id in EXCLUDED_IDS:
        return "excluded by the authors (known bad calculation)"
    if rec.extra.get("gap_unknown"):  # imported from a code that wrote no gap: the gap filters cannot apply
        return None
    if math.isnan(rec.indirect_gap) or rec.indirect_gap < MIN_INDIRECT_GAP:
        return f"filter: ipa_indirect_gap {rec.indirect_gap:.3f} < {MIN_INDIRECT_GAP} eV"
    if rec.direct_gap > MAX_DIRECT_GAP:
        return f"filter: ipa_direct_gap {rec.direct_gap:.3f} > {MAX_DIRECT_GAP} eV"
    return None


_ZIP_CACHE: dict[str, zipfile.ZipFile] = {}


def _read_text(source: tuple[str, str | None]) -> bytes:
    path, member = source
    if member is None:
        return Path(path).read_bytes()
    zf = _ZIP_CACHE.get(path)
    if zf is None:  # one open handle per worker process and archive
        zf = _ZIP_CACHE[path] = zipfile.ZipFile(path)
    return zf.read(member)


def read_entry(source: tuple[str, str | None], kind: str) -> MaterialRecord | SkippedRecord:
    """One database file (``(path, None)``, or ``(zip path, member)``) as a record, or the reason it is not one."""
    name = source[0] if source[1] is None else f"{source[0]}:{source[1]}"
    try:
        raw = _read_text(source)
        try:
            d = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return SkippedRecord(name, f"invalid JSON ({err})")
        return parse_entry(d, kind)
    except LeftOut as err:
        return SkippedRecord(name, str(err), left_out=True)
    except (ValueError, KeyError, TypeError, OSError, zipfile.BadZipFile) as err:
        return SkippedRecord(name, str(err))


def list_sources(path: str | Path) -> list[tuple[str, str | None]]:
    """The JSON files of a database folder (recursively) or ``.zip`` archive, sorted by name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"database not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.json") if p.is_file())
        return [(str(p), None) for p in files]
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            members = sorted(n for n in zf.namelist() if n.endswith(".json") and not n.startswith("__MACOSX"))
        return [(str(path), m) for m in members]
    raise ValueError(f"{path} is neither a folder of JSON files nor a .zip archive")


def read_database(path: str | Path, kind: str, strict: bool = False, workers: int | None = None,
                  apply_filters: bool = True) -> LoadReport:
    """Read an IPA (``kind='ipa'``) or RPA (``kind='rpa'``) database folder or zip.

    Parses in parallel with a progress bar. Bad records are skipped and listed in the report with
    their file name and reason; ``strict=True`` raises :class:`BadRecordError` on the first one.
    Duplicate ``mat_id`` s keep the first file (by name) and report the others.
    """
    sources = list_sources(path)
    if not sources:
        raise ValueError(f"no .json files found in {path}")
    results = parallel_map(partial(read_entry, kind=kind), sources, workers, desc=f"reading {kind.upper()} database")
    report = LoadReport(records=[])
    seen: dict[str, str] = {}
    for src, res in zip(sources, results):
        name = src[0] if src[1] is None else f"{src[0]}:{src[1]}"
        if isinstance(res, SkippedRecord) and res.left_out:
            report.filtered.append(res)
            continue
        if isinstance(res, SkippedRecord):
            if strict:
                raise BadRecordError(f"bad record {res.source}: {res.reason}")
            report.skipped.append(res)
            continue
        if res.mat_id in seen:
            msg = f"duplicate mat_id {res.mat_id} (first seen in {seen[res.mat_id]})"
            if strict:
                raise BadRecordError(f"bad record {name}: {msg}")
            report.skipped.append(SkippedRecord(name, msg))
            continue
        seen[res.mat_id] = name
        reason = filter_reason(res) if apply_filters else None
        if reason:
            report.filtered.append(SkippedRecord(name, reason))
        else:
            report.records.append(res)
    log.info("%s database %s: %s", kind.upper(), path, report.summary())
    return report


def read_ipa_database(path: str | Path, **kwargs: Any) -> LoadReport:
    """Read the IPA database (``database_300``); see :func:`read_database`."""
    return read_database(path, "ipa", **kwargs)


def read_rpa_database(path: str | Path, **kwargs: Any) -> LoadReport:
    """Read the RPA database; see :func:`read_database`."""
    return read_database(path, "rpa", **kwargs)
