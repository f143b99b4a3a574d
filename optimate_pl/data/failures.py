"""The compute command's error tables (``errors*.csv`` of an output folder), and which failures are a material's own.

A material that failed for a reason of its own (a metal, an odd electron count, a disordered cell) fails the same
way on every run, after a ground state that costs seconds to minutes. The packed progress of a long computation
carries these failures (``failures.csv`` beside its spectra), so that a run continued on another machine from the
pack does not compute them again; failures worth a retry (a time limit, a crash) and those a run's settings decide
(too many sites, the input's gap, a PBE gap just below the bound on the run's k-grids) are not carried.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from ..utils.atomic import atomic_write_text

#: The columns of an error table.
COLUMNS = ("id", "source", "reason", "message", "seconds")
#: Failures worth another try on a later run only when asked (retry_failed=true); the others are the material's.
TRANSIENT = frozenset({"time_limit", "gpaw_error", "after_dft"})
#: Materials left out by a setting of the run (max_sites, min_gap_eV), not by their own physics: never taken as done,
#: so that a run with other settings computes them (each run's filters decide again, before any DFT).
BY_SETTINGS = frozenset({"too_large", "small_gap"})
#: The packed copy of a folder's own failures, and the table ``ladder.restore`` writes back into a folder.
PACKED_NAME = "failures.csv"
RESTORED_NAME = "errors-packed.csv"


def read_table(path: str | Path) -> dict[str, dict]:
    """The rows of one error table by material id ({} where the file does not exist)."""
    path = Path(path)
    if not path.is_file():
        return {}
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = set(COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not an error table of the compute command: no column {sorted(missing)}")
        return {row["id"]: {k: row[k] for k in COLUMNS} for row in reader}


def read_folder(folder: str | Path) -> dict[str, dict]:
    """Every error table of a compute output folder (each chunk's, the restored one), by material id."""
    rows: dict[str, dict] = {}
    for path in sorted(Path(folder).glob("errors*.csv")):
        rows.update(read_table(path))
    return rows


#: How far below the bound a PBE gap must lie to fail under any settings: the k-grids move a gap by up to ~0.15 eV
#: (Si: 0.69 eV on 4x4x4, 0.56 on 5x5x5), so a metal or a gap of 0.1 eV fails everywhere, and 0.46 eV may not.
GAP_MARGIN_EV = 0.25


def gap_near_bound(row: dict) -> bool:
    """A ``not_insulator`` failure whose PBE gap lies within :data:`GAP_MARGIN_EV` below the bound: decided by the
    run's k-grids and cutoff, not by the material (an odd electron count or a metal is its own)."""
    found = re.match(r"PBE gap (-?[\d.]+) eV < ([\d.]+) eV", row["message"]) if row["reason"] == "not_insulator" else None
    return bool(found) and float(found[1]) > float(found[2]) - GAP_MARGIN_EV


def own(rows: dict[str, dict]) -> dict[str, dict]:
    """The failures that are the material's own under any settings: neither worth a retry nor decided by a run's
    settings (a gap just below the bound on a coarse grid may lie above it on the defaults' grid)."""
    return {k: r for k, r in rows.items() if r["reason"] not in TRANSIENT | BY_SETTINGS and not gap_near_bound(r)}


def write_table(rows: dict[str, dict], path: str | Path) -> None:
    """Write ``rows`` as an error table, atomically (sorted by id, so that a pack's file changes only where rows do)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows[k] for k in sorted(rows))
    atomic_write_text(buf.getvalue(), path)
