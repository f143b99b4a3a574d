"""The in-memory record of one material, shared by the readers and the synthetic generator."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from pymatgen.core import Structure


@dataclass
class MaterialRecord:
    """One material: structure, metadata and its Im eps trace on :data:`ENERGY_GRID`.

    ``spectrum`` is the database's target (IPA for the IPA database, RPA for the RPA one);
    ``ipa_spectrum`` is set for RPA records: the IPA spectrum of the RPA workflow, the baseline.
    """

    mat_id: str
    formula: str
    structure: Structure
    spectrum: np.ndarray
    direct_gap: float = float("nan")
    indirect_gap: float = float("nan")
    ipa_spectrum: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    @property
    def nsites(self) -> int:
        """Number of sites in the (primitive) cell as stored."""
        return len(self.structure)


@dataclass
class SkippedRecord:
    """A file or entry that was not loaded, and why.

    ``left_out``: dropped by one of the authors' own rules (a filter, an unfinished RPA run), not
    because it is broken.
    """

    source: str
    reason: str
    left_out: bool = False

    def __str__(self) -> str:
        return f"{self.source}: {self.reason}"


@dataclass
class LoadReport:
    """What a reader loaded, what it skipped as bad input, and what the authors' filters dropped."""

    records: list[MaterialRecord]
    skipped: list[SkippedRecord] = field(default_factory=list)
    filtered: list[SkippedRecord] = field(default_factory=list)

    def summary(self, first: int = 5) -> str:
        """Human-readable counts plus the first few skipped records."""
        lines = [
            f"loaded {len(self.records)} materials, skipped {len(self.skipped)} bad records, "
            f"filtered out {len(self.filtered)} by the authors' filters"
        ]
        lines += [f"  skipped {s}" for s in self.skipped[:first]]
        if len(self.skipped) > first:
            lines.append(f"  ... and {len(self.skipped) - first} more")
        return "\n".join(lines)
