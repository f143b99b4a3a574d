"""Yambo optical output, ``o-<job>.eps_q1_*``: ε along the field direction, with and without local fields.

* ``*.eps_q1_inv_rpa_dyson``: columns ``E/ev``, ``EPS-Im``, ``EPS-Re`` (with local fields, the RPA rung, when
  ``Chimod`` is Hartree and ``NGsBlkXd`` > 1) and ``EPSo-Im``, ``EPSo-Re`` (independent particles, the IPA rung);
* ``*.eps_q1_ip``: ``E/ev``, ``EPS-Im``, ``EPS-Re`` of independent particles only (the IPA rung).

BSE spectra (``*_bse``) are excitonic, a rung this ladder does not have: refused. The broadening is the
echoed input's damping range (``DmRngeXd``); an energy-dependent one (two different ends) is refused, as it
cannot be brought to one width. Yambo computes one direction (``LongDrXd``, printed as ``Absorption @ Q(1)``):
it is the trace only for a cubic crystal (:func:`~.material.cubic_only`). The structure comes from beside the
file (:func:`~.structures.structure_beside`); Yambo's files carry no gap.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from .material import ImportedSpectra, ImportRefused, cubic_only

_COLUMN = re.compile(r"(\S+?)\[(\d+)\]")


def _header(lines: list[str]) -> tuple[list[str], dict[str, str]]:
    """Column names and the echoed input's settings (``name -> text``, ``%`` blocks joined) of an ``o-`` file."""
    columns: list[str] = []
    settings: dict[str, str] = {}
    block = None
    for line in lines:
        if not line.startswith("#"):
            continue
        text = line[1:].strip()
        if "[1]" in text and not columns:
            columns = [m.group(1) for m in _COLUMN.finditer(text)]
        if text.startswith("|"):
            body = text[1:].split("#")[0].strip()
            if body.startswith("%"):
                name = body[1:].strip()
                block = name if name else None
                continue
            if block:
                settings[block] = body
            elif "=" in body:
                key, value = body.split("=", 1)
                settings[key.strip()] = value.strip()
        if text.startswith("Version") and "version" not in settings:
            settings["version"] = " ".join(text.split()[1:4])
    return columns, settings


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?", text)]


def check_name(path: str | Path) -> None:
    """Refuse, by its name alone, a Yambo file that holds no rung of this ladder (before its structure is sought)."""
    name = Path(path).name
    if "_bse" in name:
        raise ImportRefused("a BSE (excitonic) spectrum: this ladder's rungs are IPA and RPA; import the RPA run's "
                            "eps_q1_inv_rpa_dyson or eps_q1_ip file")
    if ".eps_q1" not in name:
        raise ImportRefused("not a Yambo dielectric function file (o-<job>.eps_q1_*)")


def read_yambo(path: str | Path, structure: Structure) -> ImportedSpectra:
    """The spectra of one ``o-*.eps_q1_*`` file, for ``structure``; :class:`ImportRefused` says why not."""
    path = Path(path)
    name = path.name
    check_name(path)
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError as err:
        raise ImportRefused(f"cannot read it ({err})") from None
    columns, settings = _header(lines)
    rows = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    try:
        data = np.array(rows, dtype=np.float64)
    except ValueError:
        raise ImportRefused("its data lines are not all numbers (a damaged or cut file)") from None
    if data.ndim != 2 or len(data) < 2 or data.shape[1] != len(columns):
        raise ImportRefused(f"{data.shape[1] if data.ndim == 2 else 0} data columns but the header names "
                            f"{len(columns)} ({', '.join(columns) or 'none'})")
    col = {c: data[:, i] for i, c in enumerate(columns)}
    if "E/ev" not in col or "EPS-Im" not in col:
        raise ImportRefused(f"no E/ev and EPS-Im columns (it has {', '.join(columns)})")
    damping = settings.get("DmRngeXd") or settings.get("BDmRange")
    if not damping:
        raise ImportRefused("its echoed input has no damping range (DmRngeXd): the broadening is unknown")
    ends = _numbers(damping)[:2]
    if len(ends) == 2 and abs(ends[0] - ends[1]) > 1e-6:
        raise ImportRefused(f"energy-dependent broadening ({ends[0]:g} to {ends[1]:g} eV across the range): it "
                            f"cannot be brought to one broadening; rerun with equal DmRngeXd ends")
    cubic_only(structure, str(path), "Yambo")
    eps = col["EPS-Re"] + 1j * col["EPS-Im"]
    local_fields = "inv_rpa_dyson" in name
    chimod = settings.get("Chimod", "").strip('"').upper()
    blocks = _numbers(settings.get("NGsBlkXd", "1"))[:1] or [1.0]
    if local_fields and (chimod not in ("HARTREE", "") or blocks[0] <= 1):
        raise ImportRefused(f"Chimod={chimod or '?'} with NGsBlkXd={blocks[0]:g}: not the RPA with local fields "
                            f"(Chimod=Hartree, NGsBlkXd > 1) that the RPA rung is")
    if local_fields:
        if "EPSo-Im" not in col:
            raise ImportRefused("an RPA file without the EPSo columns (the IPA rung)")
        ipa, rpa = col["EPSo-Re"] + 1j * col["EPSo-Im"], eps
    else:
        ipa, rpa = eps, None
    params = {"code": "Yambo", "code_version": settings.get("version"), "Chimod": chimod or None,
              "NGsBlkXd": settings.get("NGsBlkXd"), "damping": damping, "bands": settings.get("BndsRnXd"),
              "direction": settings.get("LongDrXd"), "trace_from": "one direction (cubic crystal)"}
    three = lambda e: np.stack([e, e, e])  # noqa: E731 - one direction is all three in a cubic crystal
    return ImportedSpectra(source=str(path), structure=structure, energies=col["E/ev"], ipa=three(ipa),
                           rpa=None if rpa is None else three(rpa), broadening_eV=ends[0], parameters=params)
