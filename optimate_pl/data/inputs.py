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

A file that cannot be read to its end (a download cut short, damaged compression or JSON, a
truncated ``.zip``) never stops the stream: what was read is yielded, then one item of kind
``incomplete`` naming the file ("stream ends early after N entries"), which becomes a row of
``errors.csv`` with reason :data:`INCOMPLETE` and makes the prediction say it did not read everything.
"""
from __future__ import annotations

import logging

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
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
#: A file of the input that could not be read to its end (its entries after that point are not there).
INCOMPLETE = "input_ends_early"


class InputError(ValueError):
    """The input as a whole cannot be read (missing, empty, of no supported kind)."""


@dataclass
class InputItem:
    """One material to featurise: where it comes from and what the worker parses.

    ``kind``: ``file`` (``payload`` a structure file path), ``entry`` (``payload`` a dict),
    ``member`` (``payload`` a ``(zip path, member name)`` pair holding one JSON entry), or
    ``incomplete`` (a file that ends early: ``payload`` says where and why).
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


def _stream_errors() -> tuple[type[BaseException], ...]:
    """What reading a damaged or truncated (compressed) JSON stream raises."""
    import ijson

    return (EOFError, OSError, zlib.error, lzma.LZMAError, ValueError, ijson.JSONError)


def incomplete(label: str, n: int, err: BaseException | str) -> InputItem:
    """The item saying that file ``label`` ends early, after ``n`` entries were read from it."""
    why = err if isinstance(err, str) else f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    return InputItem(label, label, "incomplete", f"{label}: stream ends early after {n} entries ({why.rstrip(': ')}); "
                                                 f"the entries after that point were not read")


def iter_json(path: Path, label: str) -> Iterator[InputItem]:
    """The entries of one JSON file, streamed: a list, ``{"entries": [...]}``, or a single entry.

    A stream that breaks off (truncated, damaged) ends with an ``incomplete`` item after the entries read.
    """
    errors = _stream_errors()
    try:
        first = _first_char(path)
    except errors as err:
        yield incomplete(label, 0, err)
        return
    read = [0]  # entries yielded so far (kept up to date by _json_entries)
    try:
        yield from _json_entries(path, label, first, read)
    except errors as err:
        yield incomplete(label, read[0], err)


def _json_entries(path: Path, label: str, first: bytes, counter: list[int]) -> Iterator[InputItem]:
    import ijson

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
                counter[0] = index + 1
        return
    if first != b"{":
        raise InputError(f"{label}: not a JSON object or list")
    n = 0
    with open_text(path) as fh:
        for n, entry in enumerate(ijson.items(fh, "entries.item", use_float=True), start=1):
            yield item(n - 1, entry)
            counter[0] = n
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


def input_files(root: Path, recursive: bool) -> list[Path]:
    """The files of folder ``root`` that are read as input (structure, JSON and zip files), in a fixed order."""
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
        files, root = input_files(path, recursive), path
        sub = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")] if not recursive else []
        if files and sub:
            logging.getLogger(__name__).warning(
                "input=%s: %d subfolder(s) not searched (e.g. %s); add recursive=true to read them too",
                printable(str(path)), len(sub), printable(sub[0].name))
        if not files:
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
            try:
                members = list(iter_zip(file, label))
            except (zipfile.BadZipFile, OSError, EOFError) as err:
                members = [incomplete(label, 0, err)]
            yield from members
        elif file.suffix.lower() == ".zip":  # no end-of-archive record: cut short
            yield incomplete(label, 0, "not a complete .zip archive: its central directory is missing (truncated?)")
        else:
            raise InputError(f"{label}: not a structure file, JSON file or .zip archive")


def _disordered(item: InputItem, err: Exception) -> ValueError:
    from .featurize import StructureError

    return StructureError("disordered", f"material {item.id}: {str(err).splitlines()[0]} (disordered site "
                                        f"occupancies are not supported)")


def is_espresso_input(path: Path) -> bool:
    """A Quantum ESPRESSO ``pw.x`` input (``*.in``/``*.pwi`` with a ``&SYSTEM`` namelist), e.g. beside a Yambo run."""
    if path.suffix.lower() not in (".in", ".pwi"):
        return False
    try:
        head = path.read_text(errors="replace")[:20000].lower()
    except OSError:
        return False
    return "&system" in head and "atomic_positions" in head


#: Quantum ESPRESSO's cubic Bravais lattices in units of alat (its documented ``ibrav`` 1, 2, 3).
_QE_CUBIC = {1: ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
             2: ((-0.5, 0, 0.5), (0, 0.5, 0.5), (-0.5, 0.5, 0)),
             3: ((0.5, 0.5, 0.5), (-0.5, 0.5, 0.5), (-0.5, -0.5, 0.5))}


def _espresso_with_cell(text: str) -> str:
    """A ``pw.x`` input with ``ibrav`` 1-3 rewritten as ``ibrav = 0`` plus its ``CELL_PARAMETERS alat``.

    ASE reads only ``ibrav = 0`` and pymatgen none; test inputs (Yambo's among them) mostly give the cubic
    lattices by number, so those three are spelled out here. Other lattices are refused with what to do.
    """
    import re

    match = re.search(r"ibrav\s*=\s*(-?\d+)", text, flags=re.IGNORECASE)
    ibrav = int(match.group(1)) if match else 0
    if ibrav == 0:
        return text
    if ibrav not in _QE_CUBIC:
        raise ValueError(f"ibrav={ibrav}: only ibrav 0-3 are read; give the structure as a CIF or POSCAR "
                         f"(or the pw.x input with ibrav=0 and CELL_PARAMETERS)")
    if not re.search(r"celldm\(1\)|\bA\s*=", text, flags=re.IGNORECASE):
        raise ValueError(f"ibrav={ibrav} without celldm(1) or A: the lattice constant is missing")
    text = text[:match.start()] + "ibrav = 0" + text[match.end():]
    cell = "\n".join(" ".join(f"{x:.10f}" for x in row) for row in _QE_CUBIC[ibrav])
    return text.rstrip() + f"\nCELL_PARAMETERS alat\n{cell}\n"


def read_structure_file(path: str | Path):
    """The pymatgen ``Structure`` of a CIF/POSCAR/CONTCAR/``.vasp`` file (pymatgen) or a ``pw.x`` input (ASE,
    which resolves ``ibrav``/``celldm``); raises ``ValueError``."""
    path = Path(path)
    if is_espresso_input(path):
        from ase.io import read as ase_read
        from pymatgen.io.ase import AseAtomsAdaptor

        try:
            text = _espresso_with_cell(path.read_text(errors="replace"))
            return AseAtomsAdaptor.get_structure(ase_read(io.StringIO(text), format="espresso-in"))
        except Exception as err:  # ASE raises many types for malformed inputs
            raise ValueError(f"unreadable pw.x input ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") \
                from None
    return read_structure(InputItem(path.name, str(path), "file", str(path)))


def structure_beside(path: str | Path, name: str | None = None):
    """The structure of a code's output file: ``name`` (relative to the file's folder, or absolute) where given,
    else the one structure file in the file's folder (CIF, POSCAR/CONTCAR, ``.vasp``, or a ``pw.x`` input).

    Raises ``ValueError`` naming the folder when there is none or more than one (``name`` then chooses).
    """
    folder = Path(path).parent
    if name:
        chosen = Path(name).expanduser()
        chosen = chosen if chosen.is_absolute() else folder / chosen
        if not chosen.is_file():
            raise ValueError(f"structure={name}: no such file {chosen}")
        return read_structure_file(chosen)
    found = sorted(p for p in folder.iterdir() if p.is_file() and (is_structure_file(p) or is_espresso_input(p)))
    if not found:
        raise ValueError(f"no structure file beside it in {folder} (a CIF, POSCAR or pw.x input; or give structure=)")
    if len(found) > 1:
        raise ValueError(f"{len(found)} structure files beside it in {folder} ({', '.join(p.name for p in found[:4])}): "
                         f"choose one with structure=<file name>")
    return read_structure_file(found[0])


def read_structure(item: InputItem):
    """The pymatgen ``Structure`` of an item (what a worker parses); raises ``ValueError``."""
    import json
    import warnings

    from pymatgen.core import Structure

    if item.kind == "file":
        with warnings.catch_warnings(record=True) as caught:  # pymatgen warns about every rounded CIF coordinate
            warnings.simplefilter("always")
            try:
                return Structure.from_file(item.payload)
            except Exception as err:  # pymatgen raises many types for malformed files
                # A CIF whose occupancies sum above 1 fails with "no structures"; the reason is in a warning.
                said = [str(w.message).splitlines()[0] for w in caught if "occupanc" in str(w.message).lower()]
                if "occupanc" in str(err).lower() or said:
                    raise _disordered(item, err if not said else ValueError(said[0])) from None
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
        if "occupanc" in str(err).lower():  # e.g. "Species occupancies sum to more than 1!"
            raise _disordered(item, err) from None
        raise ValueError(f"invalid structure ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})") \
            from None


@dataclass
class Featurised:
    """A featurised material (what a worker returns)."""

    id: str
    source: str
    formula: str
    arrays: tuple[np.ndarray, ...]  # (x, edge_index, dist, vec): data.featurize.graph_arrays
    volume_per_site: float = float("nan")  # Å³, for the model's domain (data.domain)


@dataclass
class Failed:
    """An input that was not predicted, with a reason code and the message."""

    id: str
    source: str
    reason: str
    detail: str


def featurise_items(items: list[InputItem], cutoff: float, min_distance: float | None) -> list[Featurised | Failed]:
    """Parse and featurise items (in a worker process); every failure becomes a :class:`Failed`, never an exception."""
    from .featurize import StructureError, graph_arrays

    out: list[Featurised | Failed] = []
    for item in items:
        if item.kind == "incomplete":
            out.append(Failed(item.id, item.source, INCOMPLETE, item.payload))
            continue
        try:
            structure = read_structure(item)
            arrays = graph_arrays(structure, cutoff, item.id, min_distance=min_distance, require_edges=True)
            out.append(Featurised(item.id, item.source, structure.composition.reduced_formula, arrays,
                                  structure.volume / len(structure)))
        except StructureError as err:
            out.append(Failed(item.id, item.source, err.reason, str(err)))
        except Exception as err:  # one bad input never stops the run
            out.append(Failed(item.id, item.source, READ_ERROR, str(err) or type(err).__name__))
    return out
