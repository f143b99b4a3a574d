"""The built-in GPAW ladder: real IPA and RPA spectra of Alexandria materials, packed small.

``optimate-pl-compute`` writes one JSON entry per material and rung (the authors' formats, ~40-70 kB
each). :func:`pack` keeps what a model learns from in two files under ``builtin_gpaw/`` of this
package: ``spectra.npz`` (float32 Im/Re ε of both rungs on a 0.05 eV grid, each distinct Cartesian
component once) and ``materials.json.gz`` (structures, gaps, metadata, GPAW parameters). GPAW's own
frequency grid is 0.05-0.1 eV apart and the spectra are broadened by 0.3 eV, so the 0.05 eV grid
loses nothing (tested). :func:`unpack` writes them back as the authors' IPA and RPA databases
(``.zip`` of entry JSON files), which the ordinary readers take: ``data.source=gpaw``.

No GPAW is needed to read the dataset; only to extend it (``python -m optimate_pl.data.ladder pack``
after ``optimate-pl-compute``, see ``optimate_pl/data/builtin_gpaw/README.md``).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import zipfile
from collections.abc import Collection
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..utils.atomic import atomic_open, atomic_write_text, file_lock, remove_with_checksum, verify_file
from . import failures
from .entries import damaged_entry, entry_file_name
from ..spectra.grid import ENERGY_GRID

log = logging.getLogger("optimate_pl")

#: The packed grid: 0-20 eV in 50 meV steps (every 5th point of the 2001-point grid).
PACK_STEP = 5
PACK_GRID = ENERGY_GRID[::PACK_STEP]
SPECTRA = ("ipa_epsI", "ipa_epsR", "rpa_epsI", "rpa_epsR")
DIRS = ("xx", "yy", "zz")


def builtin_dir() -> Path:
    """The packaged dataset's folder."""
    return Path(str(resources.files("optimate_pl.data").joinpath("builtin_gpaw")))


def _components(data: dict, key: str) -> list[np.ndarray] | None:
    """xx, yy, zz of one spectrum of either database format (missing yy/zz = xx)."""
    if key in data and isinstance(data[key], dict):  # RPA database: {"xx": [...], ...}
        comps = data[key]
        xx = np.asarray(comps["xx"], dtype=np.float64)
        return [xx if comps.get(d) is None else np.asarray(comps[d], dtype=np.float64) for d in DIRS]
    prefix = {"ipa_epsI": "ipa_epsI_", "ipa_epsR": "ipa_epsR_"}.get(key)
    if prefix and f"{prefix}0" in data:  # IPA database: ipa_epsI_0, _1, _2
        xx = np.asarray(data[f"{prefix}0"], dtype=np.float64)
        return [xx if data.get(f"{prefix}{i}") is None else np.asarray(data[f"{prefix}{i}"], dtype=np.float64)
                for i in range(3)]
    return None


#: A compact row may differ from its float32 spectrum by at most this fraction of the spectrum's maximum.
COMPACT_TOLERANCE = 1e-3


def _compact_row(comps: list[np.ndarray]) -> tuple[np.ndarray, bool]:
    """The trace of Im ε on the packed grid, in float16 where that is within :data:`COMPACT_TOLERANCE` of its
    maximum (it always is for GPAW's spectra: float16 keeps 3 significant digits), else in float32."""
    row = (sum(comps) / 3.0)[::PACK_STEP].astype(np.float32)
    half = row.astype(np.float16)
    lossless = np.all(np.isfinite(half)) and \
        np.abs(half.astype(np.float32) - row).max() <= COMPACT_TOLERANCE * max(float(np.abs(row).max()), 1e-12)
    return (half, True) if lossless else (row, False)


def pack(folder: str | Path, dest: str | Path | None = None, replace: bool = False, compact: bool = False) -> dict:
    """Pack an ``optimate-pl-compute`` output folder (``ipa/``, ``rpa/``) into ``dest`` (default: the package's).

    A ``dest`` that already holds materials the folder lacks is refused (packing would drop them: the shipped
    dataset replaced by a folder of two materials) unless ``replace``; restoring ``dest`` into the folder first
    makes the new pack hold both. So is a folder holding another calculation of a packed material (other settings,
    another local-field basis; the RPA rung lost): ``replace`` takes the folder's, ``restore --replace`` the pack's.

    The folder's failures that are the materials' own (a metal, an odd electron count: :mod:`.failures`) go into
    ``failures.csv`` beside the spectra, so that a run continued from the pack does not compute them again.

    ``compact`` keeps of a material with the IPA rung alone only what a model learns from: the trace of Im ε
    (no Re ε, no separate Cartesian components), in float16 where lossless at 1e-3 of its maximum (about a fifth
    of the bytes: the shape of a shipped dataset with a large cheap rung, issue #37). Such a material is marked
    ``"compact"`` and comes back from :func:`unpack` and :func:`restore` with its trace as ``ipa_epsI_0``."""
    folder, dest = Path(folder), Path(dest) if dest else builtin_dir()
    if dest.exists() and not dest.is_dir():
        raise ValueError(f"{dest} is a file: the destination of a pack is a folder (it gets materials.json.gz and "
                         f"spectra.npz)")
    if not (folder / "ipa").is_dir():
        raise ValueError(f"{folder} is not an optimate-pl-compute output folder (no ipa/ in it)")
    ipa_files = {p.stem: p for p in sorted((folder / "ipa").glob("*.json"))}
    rpa_files = {p.stem: p for p in sorted((folder / "rpa").glob("*.json"))} if (folder / "rpa").exists() else {}
    rows: list[np.ndarray] = []
    halves: list[np.ndarray] = []  # compact float16 rows, stored after the float32 ones
    materials = []
    for stem, path in ipa_files.items():
        entry = _read_entry(path)
        data = dict(entry["data"])
        rpa = _read_entry(rpa_files[stem]) if stem in rpa_files else None
        source = dict(data)
        if rpa is not None:
            source.update({k: v for k, v in rpa["data"].items() if k in SPECTRA})
        index: dict[str, list[int]] = {}
        extra: dict[str, Any] = {}
        # A material restored from a compact pack has its Im ε trace alone (no Re ε, no yy/zz): it packs compact
        # again, with or without --compact (else it would pass for an isotropic material without Re ε).
        restored_compact = rpa is None and _components(source, "ipa_epsR") is None and "ipa_epsI_1" not in source
        trace = _components(source, "ipa_epsI") if (compact or restored_compact) and rpa is None else None
        if trace is not None:
            row, half = _compact_row(trace)
            (halves if half else rows).append(row)
            # A float16 row's index counts within the float16 rows until all float32 ones are known (below).
            index["ipa_epsI"] = [len(halves) - 1 if half else len(rows) - 1]
            extra["compact"] = "float16" if half else "float32"
        for key in SPECTRA if not extra else ():
            comps = _components(source, key)
            if comps is None:
                continue
            idx = []
            for c in comps:
                same = next((j for j in idx if np.array_equal(rows[j], c[::PACK_STEP].astype(np.float32))), None)
                if same is None:
                    rows.append(c[::PACK_STEP].astype(np.float32))
                    same = len(rows) - 1
                idx.append(same)
            index[key] = idx
        for key in list(data):
            if key.startswith(("ipa_epsI", "ipa_epsR")):
                del data[key]
        if rpa is not None:
            data.update({k: v for k, v in rpa["data"].items() if k not in SPECTRA and k not in data})
        materials.append({"mat_id": data["mat_id"], "structure": entry["structure"], "data": data,
                          "parameters": entry["parameters"], "rpa_parameters": rpa["parameters"] if rpa else None,
                          "spectra": index, "has_rpa": rpa is not None, **extra})
    if not materials:
        raise ValueError(f"no computed entries in {folder}/ipa")
    for m in materials:  # the float16 rows follow the float32 ones
        if m.get("compact") == "float16":
            m["spectra"]["ipa_epsI"] = [len(rows) + m["spectra"]["ipa_epsI"][0]]
    packed = read_materials(dest) if (dest / "materials.json.gz").is_file() else []
    dropped = sorted({m["mat_id"] for m in packed} - {m["mat_id"] for m in materials})
    if dropped and not replace:
        raise ValueError(f"{dest} holds {len(dropped)} materials that {folder} lacks (e.g. {dropped[0]}): packing "
                         f"would drop them. Restore it into the folder first (python -m optimate_pl.data.ladder "
                         f"restore {dest} {folder}) so that the pack holds both, or pass --replace to drop them")
    changed = _other_calculations(packed, materials)
    if changed and not replace:
        first, what = next(iter(changed.items()))
        raise ValueError(f"{folder} holds other calculations of {len(changed)} materials {dest} has (e.g. {first}: "
                         f"{what}): packing would replace them. Pass --replace to take the folder's (recomputed on "
                         f"purpose), or keep the pack's: python -m optimate_pl.data.ladder restore --replace {dest} "
                         f"{folder}")
    # The materials that failed for reasons of their own (the pack's and the folder's), so that a run continued from
    # the pack does not compute them again; not one the pack now holds (computed since, with other settings). Read
    # before anything is written: a bad table stops the pack whole.
    failed = failures.own({**failures.read_table(dest / failures.PACKED_NAME), **failures.read_folder(folder)})
    held = {m["mat_id"] for m in materials}
    failed = {k: r for k, r in failed.items() if k not in held}
    dest.mkdir(parents=True, exist_ok=True)
    listing = io.BytesIO()
    with gzip.GzipFile(fileobj=listing, mode="wb", mtime=0) as gz:
        gz.write(json.dumps(materials).encode())
    arrays = {"rows": np.stack(rows) if rows else np.zeros((0, len(PACK_GRID)), np.float32)}
    if halves:
        arrays["rows16"] = np.stack(halves)
    # The two files are written one after the other: the spectra name the listing they belong to, so a pack cut
    # between the two (or two packs at once) is an error on reading, not spectra under another material's name.
    arrays["materials_sha256"] = np.array(hashlib.sha256(listing.getvalue()).hexdigest())
    with atomic_open(dest / "materials.json.gz", "wb") as fh:
        fh.write(listing.getvalue())
    with atomic_open(dest / "spectra.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays, grid=PACK_GRID.astype(np.float32))
    out = {"materials": len(materials), "rpa": sum(m["has_rpa"] for m in materials), "rows": len(rows) + len(halves)}
    if failed:
        failures.write_table(failed, dest / failures.PACKED_NAME)
        out["failed"] = len(failed)
    else:  # none left (computed since, or not carried any more): no table naming them
        (dest / failures.PACKED_NAME).unlink(missing_ok=True)
    n_compact = sum("compact" in m for m in materials)
    if n_compact:
        out["compact"] = n_compact
    return {**out, "dropped": len(dropped)} if dropped else out


def _other_calculations(packed: list[dict], materials: list[dict]) -> dict[str, str]:
    """``mat_id -> what differs`` for the materials of ``packed`` that ``materials`` holds from another calculation
    (other settings or cost, another local-field basis, the RPA rung lost); gaining the RPA rung is growth."""
    old = {m["mat_id"]: m for m in packed}
    out = {}
    for m in materials:
        before = old.get(m["mat_id"])
        if before is None or (m["has_rpa"] and not before["has_rpa"]):
            continue
        if before["has_rpa"] and not m["has_rpa"]:
            out[m["mat_id"]] = "the RPA rung would be lost"
            continue
        differ = sorted({k for part in ("parameters", "rpa_parameters")
                         for k in set(before.get(part) or {}) | set(m.get(part) or {})
                         if (before.get(part) or {}).get(k) != (m.get(part) or {}).get(k)})
        if differ:
            out[m["mat_id"]] = f"{', '.join(differ)} differ"
    return out


def _read_entry(path: Path) -> dict:
    """One entry file of a compute output folder, or a one-line error naming it (nothing is packed then)."""
    try:
        entry = json.loads(path.read_bytes())
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a whole entry ({type(err).__name__}: {str(err)[:80]}); compute it again "
                         f"(optimate-pl-compute sets a damaged entry aside) or move it out of the folder") from None
    missing = [k for k in ("data", "structure", "parameters") if not isinstance(entry, dict) or k not in entry]
    if missing or "mat_id" not in entry["data"]:
        raise ValueError(f"{path}: not an entry of optimate-pl-compute (no {', '.join(missing) or 'data.mat_id'})")
    return entry


def read_materials(src: str | Path | None = None) -> list[dict]:
    """The packed materials of ``src`` (default: the built-in ladder) without their spectra: structures, metadata,
    settings and cost, ``has_rpa``."""
    folder = Path(src).expanduser() if src else builtin_dir()
    return json.loads(gzip.decompress((folder / "materials.json.gz").read_bytes()))


def packed_dir(path: str | Path) -> Path:
    """``path`` as a packed ladder dataset folder, or a one-line error saying what it is instead."""
    folder = Path(path).expanduser()
    if (folder / "materials.json.gz").is_file() and (folder / "spectra.npz").is_file():
        return folder
    if not folder.exists():
        raise FileNotFoundError(f"data.root={path}: no such folder (data.source=gpaw takes a packed ladder: a folder "
                                f"with materials.json.gz and spectra.npz, what `python -m optimate_pl.data.ladder "
                                f"pack` writes)")
    hint = (f"; it is an optimate-pl-compute output folder: train on it as data.source=files, or pack it first "
            f"(python -m optimate_pl.data.ladder pack {path} DEST)" if (folder / "ipa").is_dir() else "")
    raise FileNotFoundError(f"data.root={path} is not a packed ladder (data.source=gpaw needs materials.json.gz and "
                            f"spectra.npz in it){hint}")


def load(src: str | Path | None = None) -> tuple[list[dict], np.ndarray]:
    """The packed materials and their spectra rows on the 2001-point grid (cubic interpolation)."""
    from scipy.interpolate import CubicSpline

    src = Path(src) if src else builtin_dir()
    if not (src / "materials.json.gz").is_file():
        raise FileNotFoundError(f"no packed GPAW dataset in {src} (materials.json.gz missing)")
    materials = read_materials(src)
    with np.load(src / "spectra.npz") as z:
        if "materials_sha256" in z and str(z["materials_sha256"]) != \
                hashlib.sha256((src / "materials.json.gz").read_bytes()).hexdigest():
            raise ValueError(f"{src}: spectra.npz was not packed with this materials.json.gz (a pack cut short between "
                             f"its two files, or two at once): pack it again from its compute folder")
        rows, grid = z["rows"].astype(np.float64), z["grid"].astype(np.float64)
        if "rows16" in z:  # compact rows (pack(compact=True)): indexed after the float32 ones
            rows = np.concatenate([rows, z["rows16"].astype(np.float64)])
    full = CubicSpline(grid, rows, axis=1)(ENERGY_GRID)
    return materials, full


def _entry(m: dict, rows: np.ndarray, kind: str) -> dict:
    data = dict(m["data"])
    spec = m["spectra"]
    if kind == "ipa":
        for key in (k for k in ("ipa_epsI", "ipa_epsR") if k in spec):  # a compact material: the Im ε trace alone
            idx = spec[key]
            for i, j in enumerate(idx):
                if i == 0 or j != idx[0]:
                    data[f"{key}_{i}"] = rows[j].tolist()
        params = m["parameters"]
    else:
        for key in SPECTRA:
            idx = spec[key]
            data[key] = {d: rows[j].tolist() for d, j in zip(DIRS, idx) if d == "xx" or j != idx[0]}
        params = m["rpa_parameters"]
    # Im ε is non-negative; the cubic spline may dip by ~1e-5 where it vanishes below the gap.
    for key in [k for k in data if k.startswith(("ipa_epsI", "rpa_epsI"))]:
        if isinstance(data[key], dict):
            data[key] = {d: np.clip(v, 0, None).tolist() for d, v in data[key].items()}
        else:
            data[key] = np.clip(data[key], 0, None).tolist()
    return {"@module": "pymatgen.entries.computed_entries", "@class": "ComputedStructureEntry",
            "energy": 0.0, "correction": 0.0, "entry_id": m["mat_id"], "structure": m["structure"],
            "data": data, "parameters": params}


def digest(src: str | Path | None = None) -> str:
    """16 hex digits of the packed files' SHA-256: names what is derived from this version of the dataset."""
    src = Path(src).expanduser() if src else builtin_dir()
    h = hashlib.sha256()
    for name in ("materials.json.gz", "spectra.npz"):
        h.update((src / name).read_bytes())
    return h.hexdigest()[:16]


def unpack(cache_dir: str | Path, src: str | Path | None = None) -> dict[str, Path]:
    """Write the packed dataset as the authors' IPA and RPA databases (zips) under ``cache_dir``, once.

    Named by the packed files' hash and this module's code (a fix to how a pack is read reaches every cache);
    built under a lock and written atomically with a checksum sidecar, so a crash, a second process or a damaged
    cache file never gives a half-written zip (it is rebuilt).
    """
    import sys

    from .cache import code_hash

    src = Path(src) if src else builtin_dir()
    out = Path(cache_dir) / f"gpaw-ladder-{digest(src)}-{code_hash(sys.modules[__name__])[:8]}"
    paths = {"ipa": out / "ipa.zip", "rpa": out / "rpa.zip"}
    if all(verify_file(p) is None for p in paths.values()):
        return paths
    with file_lock(out.with_suffix(".lock")):
        if all(verify_file(p) is None for p in paths.values()):
            return paths
        for p in paths.values():
            remove_with_checksum(p)
        materials, rows = load(src)
        for kind, path in paths.items():
            with atomic_open(path, "wb", checksum=True) as fh, zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED,
                                                                               compresslevel=1) as zf:
                for m in materials:
                    if kind == "rpa" and not m["has_rpa"]:
                        continue
                    zf.writestr(entry_file_name(m["mat_id"]), json.dumps(_entry(m, rows, kind)))
        atomic_write_text(json.dumps({"source": str(src), "materials": len(materials)}), out / "unpacked.json")
    return paths


def restore(src: str | Path, folder: str | Path, ids: Collection[str] | None = None,
            replace: bool = False) -> dict[str, int]:
    """Write a packed dataset back as an ``optimate-pl-compute`` output folder (``ipa/``, ``rpa/`` entries).

    A compute run pointed at ``folder`` then takes these materials as done and goes on with the rest: how
    a long computation continues on another machine from its committed packed progress. An entry the folder
    already holds whole is kept, not replaced, unless ``replace`` (the pack's calculation wins: e.g. a material
    recomputed elsewhere and packed, over the folder's older one). ``ids``: only these materials (all by default).
    The pack's failures (``failures.csv``) go into the folder's ``errors-packed.csv``, which the compute command
    reads as its own. Returns the materials, the entries restored and kept, and the failures restored (if any).
    """
    materials, rows = load(src)
    if ids is not None:
        wanted = set(ids)
        materials = [m for m in materials if m["mat_id"] in wanted]
    folder = Path(folder)
    counts = {"restored": 0, "kept": 0}
    for m in materials:
        # A material the folder has since computed with both rungs keeps its own pair even with ``replace``: the
        # pack's IPA entry beside the folder's RPA one would mix two calculations of one material.
        grown = not m["has_rpa"] and (folder / "rpa" / entry_file_name(m["mat_id"])).exists()
        lone = folder / "ipa" / entry_file_name(m["mat_id"])
        if m["has_rpa"] and lone.exists() and not (folder / "rpa" / entry_file_name(m["mat_id"])).exists():
            # The reverse: the folder's IPA entry alone (an IPA-only run) beside the pack's RPA one would be two
            # calculations of one material, counted as done. The pack's pair wins; the folder's entry is kept aside.
            aside = lone.with_name(lone.name + ".ipa-only")
            lone.replace(aside)
            log.warning("%s: the folder's IPA-only entry is moved to %s; the pack's calculation of both rungs is "
                        "restored in its place", m["mat_id"], aside)
        for kind in ("ipa", "rpa") if m["has_rpa"] else ("ipa",):
            path = folder / kind / entry_file_name(m["mat_id"])
            if (not replace or grown) and path.exists() and damaged_entry(path) is None:
                counts["kept"] += 1  # the folder's own entry (perhaps a newer calculation), unless replace
                continue
            atomic_write_text(json.dumps(_entry(m, rows, kind)), path)
            counts["restored"] += 1
    # The pack's failures, as a table of their own that the compute command reads beside its own (never rewritten by
    # a run): the materials stay failed instead of being computed again. Not those the folder has entries of.
    failed = failures.own(failures.read_table(Path(src) / failures.PACKED_NAME))  # a pack of an earlier version
    if ids is not None:
        failed = {k: r for k, r in failed.items() if k in wanted}
    failed = {k: r for k, r in failed.items() if not (folder / "ipa" / entry_file_name(k)).exists()}
    if failed:
        folder.mkdir(parents=True, exist_ok=True)
        failures.write_table({**failures.read_table(folder / failures.RESTORED_NAME), **failed},
                             folder / failures.RESTORED_NAME)
        counts["failed"] = len(failed)
    return {"materials": len(materials), **counts}


def describe(src: str | Path | None = None) -> dict[str, Any]:
    """Counts, sites and settings of the packed dataset (for README tables and logs)."""
    folder = Path(src) if src else builtin_dir()
    if not (folder / "materials.json.gz").is_file():
        hint = (" (an optimate-pl-compute output folder: pack it first, `python -m optimate_pl.data.ladder pack "
                f"{folder} DEST`)" if (folder / "ipa").is_dir() else "")
        raise FileNotFoundError(f"{folder} is not a packed ladder dataset: no materials.json.gz{hint}")
    materials = read_materials(folder)
    sites: dict[int, int] = {}
    for m in materials:
        n = len(m["structure"]["sites"])
        sites[n] = sites.get(n, 0) + 1
    seconds = [m["parameters"]["core_seconds"]["total"] for m in materials]
    return {"materials": len(materials), "with_rpa": sum(m["has_rpa"] for m in materials),
            "compact": sum("compact" in m for m in materials), "sites": dict(sorted(sites.items())),
            "core_hours": round(sum(seconds) / 3600, 2),
            # The IPA-only materials are a cheaper run (their own settings): their cost apart.
            "core_hours_ipa_only": round(sum(s for s, m in zip(seconds, materials) if not m["has_rpa"]) / 3600, 2),
            "failed": len(failures.read_table(folder / failures.PACKED_NAME))}


def local_field_shortfall(materials: list[dict], min_G: int) -> list[str]:
    """The materials whose RPA rung was computed with fewer local-field G-vectors than ``min_G`` (recorded as
    ``rpa_n_G``): the ones to recompute with the floor (c-BN and BeO had 1: RPA = IPA)."""
    return sorted(m["mat_id"] for m in materials if m.get("has_rpa")
                  and ((m.get("rpa_parameters") or {}).get("rpa_n_G") or min_G) < min_G)


def main(argv: list[str] | None = None) -> None:
    """``python -m optimate_pl.data.ladder pack FOLDER [DEST]`` | ``restore PACKED FOLDER`` | ``describe [DEST]``."""
    from ..utils.tool import run_tool, tool_parser

    ap = tool_parser("python -m optimate_pl.data.ladder", main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack", help="pack an optimate-pl-compute output folder into the package")
    p.add_argument("folder")
    p.add_argument("dest", nargs="?")
    p.add_argument("--replace", action="store_true",
                   help="drop the materials of DEST that FOLDER lacks, take FOLDER's calculations of the others")
    p.add_argument("--compact", action="store_true",
                   help="materials with the IPA rung alone: the Im ε trace only, float16 where lossless at 1e-3")
    r = sub.add_parser("restore", help="a packed folder back into a compute output folder (to continue it)")
    r.add_argument("packed")
    r.add_argument("folder")
    r.add_argument("--replace", action="store_true", help="write the pack's entries over the folder's own")
    d = sub.add_parser("describe", help="counts of the packed dataset")
    d.add_argument("dest", nargs="?")
    args = ap.parse_args(argv)
    if args.cmd == "pack":
        info = run_tool(lambda: pack(args.folder, args.dest, args.replace, args.compact), args)
        print(f"packed {info['materials']} materials ({info['rpa']} with the RPA rung"
              + (f", {info['compact']} IPA-only compact" if info.get("compact") else "") + f") into "
              f"{args.dest or builtin_dir()}" + (f", dropping {info['dropped']}" if info.get("dropped") else "")
              + (f"; {info['failed']} failures of their own kept in failures.csv" if info.get("failed") else ""))
    elif args.cmd == "restore":
        info = run_tool(lambda: restore(args.packed, args.folder, replace=args.replace), args)
        print(f"restored {info['materials']} materials into {args.folder}: {info['restored']} entries written"
              + (f", {info['kept']} already there kept as they are" if info["kept"] else "")
              + (f", {info['failed']} failures of their own (not computed again)" if info.get("failed") else ""))
    else:
        print(json.dumps(run_tool(lambda: describe(args.dest), args), indent=2))


if __name__ == "__main__":
    main()
