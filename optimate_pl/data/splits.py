"""Train/validation/test splits and training subsets, as the authors make them.

The IPA split groups materials by formula (80/10/10, seeded); RPA materials inherit the split of
their ``mat_id``. The authors' published IPA split ships with the package (``published_split/``).
"""
from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

SPLITS = ("train", "validation", "test")
#: The paper's split sizes on the real databases (train, validation, test).
PAPER_SIZES = {"ipa": (7742, 944, 1059), "rpa": (4610, 603, 639)}


def split_mode(split: str | None, source: str) -> str:
    """``data.split`` with the source's default named: formula (synthetic), auto (files), else published."""
    return split or {"synthetic": "formula", "files": "auto"}.get(str(source), "published")


def formula_split(mat_ids: Sequence[str], formulas: Sequence[str], seed: int = 0) -> dict[str, str]:
    """The authors' formula-grouped 80/10/10 split: ``mat_id -> 'train'|'validation'|'test'``.

    Same calls as the authors (``np.unique``; ``np.random.seed(seed)``; ``np.random.shuffle``;
    cuts at ``int(0.8 n)`` and ``int(0.9 n)``), made on a private ``RandomState`` so the global
    NumPy state is left alone; the result is identical. All polymorphs share a split.
    """
    unique = np.unique(np.asarray(formulas, dtype=object).astype(str))
    np.random.RandomState(seed).shuffle(unique)
    n = len(unique)
    cut1, cut2 = int(0.8 * n), int(0.9 * n)
    where = {f: "train" for f in unique[:cut1]}
    where.update({f: "validation" for f in unique[cut1:cut2]})
    where.update({f: "test" for f in unique[cut2:]})
    return {m: where[f] for m, f in zip(mat_ids, formulas)}


def _hash_fraction(formula: str, seed: int) -> float:
    """A formula's fixed place in [0, 1): the same on every machine and whatever else is in the database."""
    digest = hashlib.sha256(f"{seed}:{formula}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2 ** 64


def grouped_split(mat_ids: Sequence[str], formulas: Sequence[str], known: Mapping[str, str] | None = None,
                  known_formulas: Mapping[str, str] | None = None, seed: int = 0) -> dict[str, str]:
    """A split for materials of one's own (``data.split=auto``): deterministic, grouped by formula, 80/10/10.

    * a material of ``known`` (the authors' published split) keeps its split, so the built-in ladder and the
      authors' materials never move;
    * a new material whose formula is in ``known_formulas`` (``formula -> split`` of the known materials, e.g.
      the built-in ladder's) goes where its polymorphs are: polymorphs never straddle train and test;
    * any other formula gets a place in [0, 1) from a hash of (seed, formula): train below 0.8, validation
      below 0.9, test above. Adding materials later never moves one already placed.

    A handful of new formulas can leave validation or test empty; then (and only then) the new formula groups
    are ranked by their hash and cut so that each split gets at least one (with at least 3 groups).
    """
    known = dict(known or {})
    by_formula = dict(known_formulas or {})
    for m, f in zip(mat_ids, formulas):
        if m in known:
            by_formula.setdefault(str(f), known[m])
    out: dict[str, str] = {}
    new: dict[str, list[str]] = {}
    for m, f in zip(mat_ids, formulas):
        f = str(f)
        if m in known:
            out[m] = known[m]
        elif f in by_formula:
            out[m] = by_formula[f]
        else:
            new.setdefault(f, []).append(m)
    place = {f: _hash_fraction(f, seed) for f in new}
    where = {f: "train" if x < 0.8 else "validation" if x < 0.9 else "test" for f, x in place.items()}
    if len(new) >= 3 and not set(SPLITS) <= set(out.values()) | set(where.values()):
        order = sorted(new, key=place.get)
        n = len(order)
        cut1 = min(max(int(0.8 * n), 1), n - 2)
        cut2 = max(min(int(0.9 * n), n - 1), cut1 + 1)
        where = {f: "train" if k < cut1 else "validation" if k < cut2 else "test" for k, f in enumerate(order)}
    for f, ms in new.items():
        out.update({m: where[f] for m in ms})
    return out


def write_split_files(assignment: Mapping[str, str], folder: str | Path, prefix: str = "ipa") -> Path:
    """Write ``{prefix}_{train,validation,test}_ids.txt`` (sorted ids), which ``data.split=<folder>`` reads back."""
    from ..utils.atomic import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        ids = sorted(m for m, s in assignment.items() if s == split)
        atomic_write_text("".join(f"{m}\n" for m in ids), folder / f"{prefix}_{split}_ids.txt")
    return folder


def read_split_files(split_dir: Any, prefix: str = "ipa") -> dict[str, str]:
    """Read ``{prefix}_{train,validation,test}_ids.txt`` (one ``mat_id`` a line) into ``mat_id -> split``.

    ``split_dir``: a folder (path or package resource). A ``mat_id`` listed in two files is an
    error naming both files.
    """
    split_dir = split_dir if hasattr(split_dir, "joinpath") else Path(split_dir)
    assignment: dict[str, str] = {}
    for split in SPLITS:
        path = split_dir / f"{prefix}_{split}_ids.txt"
        if not path.is_file():
            raise FileNotFoundError(f"split file missing: {path} (expected {prefix}_{{train,validation,test}}_ids.txt)")
        for line in path.read_text().splitlines():
            mat_id = line.strip()
            if not mat_id or mat_id.startswith("#"):
                continue
            if mat_id in assignment and assignment[mat_id] != split:
                raise ValueError(f"mat_id {mat_id} is listed in both the {assignment[mat_id]} and the {split} "
                                 f"split files in {split_dir}")
            assignment[mat_id] = split
    return assignment


def published_split() -> dict[str, str]:
    """The authors' published IPA split (7742/944/1059 ``mat_id`` s), shipped as package data."""
    return read_split_files(resources.files("optimate_pl.data").joinpath("published_split"))


def apply_split(mat_ids: Sequence[str], assignment: Mapping[str, str]) -> tuple[dict[str, list[int]], list[str]]:
    """Indices of ``mat_ids`` per split, plus the ids that the assignment does not know.

    Used for RPA data, which inherits the split of its ``mat_id`` in the IPA split.
    """
    out: dict[str, list[int]] = {s: [] for s in SPLITS}
    unknown = []
    for i, m in enumerate(mat_ids):
        split = assignment.get(m)
        if split is None:
            unknown.append(m)
        else:
            out[split].append(i)
    return out, unknown


def training_subset(train_ids: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """The authors' subset: ``random.seed(seed); random.sample(train, n)`` (on a private ``Random``).

    ``train_ids`` must be in the authors' order: file-name order of the database (their notebooks
    read ``sorted(os.listdir(...))`` and keep that order through filtering and splitting).
    """
    if n > len(train_ids):
        raise ValueError(f"data.subset={n} is larger than the training set ({len(train_ids)} materials); "
                         f"choose at most {len(train_ids)} or leave subset unset")
    if n <= 0:
        raise ValueError(f"data.subset must be positive, got {n}")
    return random.Random(seed).sample(list(train_ids), n)
