"""Structures to predict for, streamed from any input: files, folders, real-format databases, JSON dumps.

``iter_inputs(path)`` yields one :class:`InputItem` per material in a fixed order without reading
more than one item ahead, so memory stays bounded whatever the input size:

* a CIF/POSCAR/CONTCAR/``.vasp`` file, or a folder of them (``recursive=True`` also searches
  subfolders, e.g. a VASP tree of ``*/POSCAR``);
* JSON files (``.json``, ``.json.gz``, ``.json.bz2``, ``.json.xz``) holding one entry, a list of
  entries, or ``{"entries": [...]}`` (the Alexandria database's files), streamed with ``ijson``;
  an entry is a pymatgen ``ComputedStructureEntry`` dict, ``{"structure": ..., "data": ...}``, or a
  ``Structure`` dict;
* a folder of such JSON files (the authors' databases) or a ``.zip`` of them.

The structure itself is parsed by :func:`read_structure` in the worker that featurises it. Every item
has a ``source`` that is unique by construction (the file's path relative to the input, ``:member``
for zip members, ``#index`` for the entries of a JSON file) and an ``id``: the material's own
identifier (``data.mat_id`` or ``entry_id``) where it has one, else its source; an id seen twice in
one file gets ``#index`` appended. File names that are not valid UTF-8 are written with
backslash escapes.
"""
from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")
STRUCTURE_PREFIXES = ("POSCAR", "CONTCAR")
JSON_SUFFIXES = (".json", ".json.gz", ".json.bz2", ".json.xz")


#: Why an input was not predicted, besides the structure checks of featurize (their codes).
READ_ERROR = "unreadable"


class InputError(ValueError):
    """The input as a whole cannot be read (missing, empty, of no supported kind)."""


@dataclass
class InputItem:
    """One material to featurise: where it comes from and what the worker parses.

    ``kind``: ``file`` (``payload`` a structure file path), ``entry`` (``payload`` a dict), or
    ``member`` (``payload`` a ``(zip path, member name)`` pair holding one JSON entry).
    """

    id: str
    source: str
    kind: str
    payload: Any


def printable(name: str) -> str:
    """A file name as valid UTF-8 text: bytes that are not UTF-8 become backslash escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_structure_file(path: Path) -> bool:
    return path.suffix.lower() in STRUCTURE_SUFFIXES or path.name.upper().startswith(STRUCTURE_PREFIXES)


def is_json_file(path: Path) -> bool:
    return path.name.lower().endswith(JSON_SUFFIXES)


def open_text(path: Path) -> IO[bytes]:
    """A JSON file as a binary stream, decompressing ``.gz``/``.bz2``/``.xz`` on the fly."""
    name = path.name.lower()
    if name.endswith(".gz"):
        return gzip.open(path, "rb")
    if name.endswith(".bz2"):
        return bz2.open(path, "rb")
    if name.endswith(".xz"):
        return lzma.open(path, "rb")
    return open(path, "rb")


def _first_char(path: Path) -> bytes:
    with open_text(path) as fh:
        while True:
            c = fh.read(1)
            if not c or not c.isspace():
                return c


def _own_id(entry: Any) -> str | None:
    if not isinstance(entry, dict):
        return None
    data = entry.get("data")
    if isinstance(data, dict) and data.get("mat_id"):
        return str(data["mat_id"])
    return str(entry["entry_id"]) if entry.get("entry_id") else None


def iter_json(path: Path, label: str) -> Iterator[InputItem]:
    """The entries of one JSON file, streamed: a list, ``{"entries": [...]}``, or a single entry."""
    import ijson

    first = _first_char(path)
    seen: set[str] = set()

    def item(index: int, entry: Any) -> InputItem:
        source = f"{label}#{index}"
        own = _own_id(entry)
        uid = own if own and own not in seen else (f"{own}#{index}" if own else source)
        if own:
            seen.add(own)
        return InputItem(uid, source, "entry", entry)

    if first == b"[":
        with open_text(path) as fh:
            for index, entry in enumerate(ijson.items(fh, "item", use_float=True)):
                yield item(index, entry)
        return
    if first != b"{":
        raise InputError(f"{label}: not a JSON object or list")
    n = 0
    with open_text(path) as fh:
        for n, entry in enumerate(ijson.items(fh, "entries.item", use_float=True), start=1):
            yield item(n - 1, entry)
    if n == 0:  # no "entries": the file is one entry
        import json

        with open_text(path) as fh:
            entry = json.load(fh)
        yield InputItem(_own_id(entry) or label, label, "entry", entry)


def iter_zip(path: Path, label: str) -> Iterator[InputItem]:
    """One item per JSON member of a ``.zip`` (the authors' databases), in member-name order."""
    with zipfile.ZipFile(path) as zf:
        members = sorted(n for n in zf.namelist() if n.lower().endswith(".json") and not n.startswith("__MACOSX"))
    for member in members:
        stem = Path(member).name[: -len(".json")]
        yield InputItem(stem, f"{label}:{member}", "member", (str(path), member))


def _files(root: Path, recursive: bool) -> list[Path]:
    found = root.rglob("*") if recursive else root.iterdir()
    return sorted(p for p in found if p.is_file() and (is_structure_file(p) or is_json_file(p)
                                                       or p.suffix.lower() == ".zip"))


def iter_inputs(path: str | Path, recursive: bool = False) -> Iterator[InputItem]:
    """Every material of ``path`` (see the module docstring), in a fixed order (for resuming)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"input not found: {printable(str(path))}")
    if path.is_file():
        files, root = [path], path.parent
    else:
        files, root = _files(path, recursive), path
        if not files:
            sub = [p for p in path.iterdir() if p.is_dir()]
            hint = (f"; subfolders were not searched (add recursive=true to search {len(sub)} subfolder(s))"
                    if sub and not recursive else "")
            raise InputError(f"no structure found in {printable(str(path))}: no CIF/POSCAR/CONTCAR/.vasp, "
                             f"JSON or .zip file{hint}")
    for file in files:
        label = printable(file.relative_to(root).as_posix()) if file != root else printable(file.name)
        if is_structure_file(file):
            yield InputItem(label, label, "file", str(file))
        elif is_json_file(file):
            yield from iter_json(file, label)
        elif zipfile.is_zipfile(file):
            yield from iter_zip(file, label)
        else:
            raise InputError(f"{label}: not a structure file, JSON file or .zip archive")


def read_structure(item: InputItem):
    """The pymatgen ``Structure`` of an item (what a worker parses); raises ``ValueError``."""
    import json
    import warnings

    from pymatgen.core import Structure

    if item.kind == "file":
        with warnings.catch_warnings():  # pymatgen warns about every rounded CIF coordinate
            warnings.simplefilter("ignore")
            try:
                return Structure.from_file(item.payload)
            except Exception as err:  # pymatgen raises many types for malformed files
                raise ValueError(f"unreadable structure file ({type(err).__name__}: {str(err).splitlines()[0]})"
                                 if str(err) else f"unreadable structure file ({type(err).__name__})") from None
    entry = item.payload
    if item.kind == "member":
        with zipfile.ZipFile(entry[0]) as zf:
            entry = json.loads(zf.read(entry[1]))
    if not isinstance(entry, dict):
        raise ValueError("an entry must be a JSON object")
    structure = entry.get("structure", entry if "lattice" in entry and "sites" in entry else None)
    if not isinstance(structure, dict):
        raise ValueError("no structure in the entry (expected a 'structure' field or a Structure dict)")
    try:
        return Structure.from_dict(structure)
    except Exception as err:  # pymatgen raises many types for malformed dicts
        raise ValueError(f"invalid structure ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") \
            from None


@dataclass
class Featurised:
    """A featurised material (what a worker returns)."""

    id: str
    source: str
    formula: str
    arrays: tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass
class Failed:
    """An input that was not predicted, with a reason code and the message."""

    id: str
    source: str
    reason: str
    detail: str


def featurise_items(items: list[InputItem], cutoff: float, min_distance: float | None) -> list[Featurised | Failed]:
    """Parse and featurise items (in a worker process); every failure becomes a :class:`Failed`, never an exception."""
    from .data.featurize import StructureError, graph_arrays

    out: list[Featurised | Failed] = []
    for item in items:
        try:
            structure = read_structure(item)
            arrays = graph_arrays(structure, cutoff, item.id, min_distance=min_distance, require_edges=True)
            out.append(Featurised(item.id, item.source, structure.composition.reduced_formula, arrays))
        except StructureError as err:
            out.append(Failed(item.id, item.source, err.reason, str(err)))
        except Exception as err:  # one bad input never stops the run
            out.append(Failed(item.id, item.source, READ_ERROR, str(err) or type(err).__name__))
    return out
