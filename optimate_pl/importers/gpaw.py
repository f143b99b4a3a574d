"""GPAW ``DielectricFunction`` CSV files (``get_dielectric_function(direction=..., filename=...)``).

Each line is ``ω [eV], Re ε_NLF, Im ε_NLF, Re ε_LF, Im ε_LF``: without local fields (the IPA rung, the head
of χ0, REFERENCE §7b) and with them (the RPA rung); no header, and no record of the broadening ``eta``, which
the user gives (``broadening=``; GPAW's default is 0.2 eV). One file is one direction: files that differ only
by a final ``_x``/``_y``/``_z`` (``df_x.csv``, ``df_y.csv``, ``df_z.csv``) are one material's xx, yy, zz; a
single file is the trace only for a cubic crystal (:func:`~.material.cubic_only`). The files carry no
structure and no gap: the structure comes from beside them.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from pymatgen.core import Structure

from .material import ImportedSpectra, ImportRefused, cubic_only

DIRECTIONS = ("x", "y", "z")


def direction_of(path: Path) -> str | None:
    """``x``/``y``/``z`` for ``…_x.csv`` and the like, else ``None``."""
    stem = path.name[: -len(".csv")] if path.name.endswith(".csv") else path.stem
    return stem[-1] if len(stem) > 2 and stem[-2] == "_" and stem[-1] in DIRECTIONS else None


def _read_one(path: Path) -> np.ndarray:
    try:
        data = np.loadtxt(path, delimiter=",", ndmin=2)
    except (OSError, ValueError) as err:
        raise ImportRefused(f"{path.name}: not a GPAW dielectric-function CSV ({str(err).splitlines()[0][:100]})") from None
    if data.shape[1] != 5:
        raise ImportRefused(f"{path.name}: {data.shape[1]} columns; a GPAW dielectric function has 5 (ω, Re/Im ε "
                            f"without and with local fields)")
    return data


def read_gpaw_csv(paths: Sequence[str | Path], structure: Structure) -> ImportedSpectra:
    """One material's spectra from one CSV (a cubic crystal) or three (``_x``, ``_y``, ``_z``)."""
    paths = [Path(p) for p in paths]
    if len(paths) == 1:
        cubic_only(structure, str(paths[0]), "one GPAW CSV")
        tables = [_read_one(paths[0])] * 3
    else:
        by_dir = {direction_of(p): p for p in paths}
        if sorted(d for d in by_dir if d) != list(DIRECTIONS) or len(paths) != 3:
            raise ImportRefused(f"{len(paths)} CSV files for one material ({', '.join(p.name for p in paths)}): give one "
                                f"(cubic) or three ending in _x, _y, _z")
        tables = [_read_one(by_dir[d]) for d in DIRECTIONS]
    energies = tables[0][:, 0]
    if any(t.shape != tables[0].shape or not np.allclose(t[:, 0], energies) for t in tables):
        raise ImportRefused("the x, y, z files have different frequencies")
    ipa = np.stack([t[:, 1] + 1j * t[:, 2] for t in tables])
    rpa = np.stack([t[:, 3] + 1j * t[:, 4] for t in tables])
    params = {"code": "GPAW", "files": [p.name for p in paths],
              "trace_from": "three directions" if len(paths) == 3 else "one direction (cubic crystal)"}
    return ImportedSpectra(source=str(paths[0] if len(paths) == 1 else paths[0].parent), structure=structure,
                           energies=energies, ipa=ipa, rpa=rpa, broadening_eV=None, parameters=params)
