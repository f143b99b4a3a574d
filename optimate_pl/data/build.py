"""Featurised databases, built once and cached: the SYNTHETIC databases and real-format (figshare) ones.

Each database becomes one :class:`~optimate_pl.data.store.GraphStore` file in the cache folder, named
by a fingerprint of what produced it (source files or generator settings, filters, cutoff and the
reader/featuriser/generator source), written atomically under a lock with a checksum sidecar: a crash
never leaves a file a later run trusts, two processes that need the same store build it once, and a
store damaged on disk since (truncated, overwritten) is found and rebuilt, with a log line.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.atomic import file_lock, remove_with_checksum, verify_file
from . import featurize, readers, synthetic
from .cache import code_hash, default_cache_dir, fingerprint, source_stats
from .featurize import FEATURIZER_VERSION, graph_arrays, isolated_sites
from ..utils.parallel import parallel_map
from .readers import EXCLUDED_IDS, MAX_DIRECT_GAP, MIN_INDIRECT_GAP, BadRecordError, read_database
from .records import MaterialRecord, SkippedRecord
from .store import GraphStore

log = logging.getLogger(__name__)


def _featurize_one(item: tuple[Any, str], cutoff: float):
    try:
        return graph_arrays(item[0], cutoff, item[1])
    except ValueError as err:
        return str(err)


def featurize_records(records: Sequence[MaterialRecord], cutoff: float = 5.0, workers: int | None = None,
                      strict: bool = False, desc: str = "featurising") -> tuple[GraphStore, list[SkippedRecord]]:
    """Featurise records in parallel into a :class:`GraphStore`; failures are skipped with a reason."""
    results = parallel_map(partial(_featurize_one, cutoff=cutoff), [(r.structure, r.mat_id) for r in records],
                           workers, desc=desc)
    keep, graphs, skipped = [], [], []
    for rec, res in zip(records, results):
        if isinstance(res, str):
            if strict:
                raise BadRecordError(res)
            skipped.append(SkippedRecord(rec.mat_id, res))
        else:
            keep.append(rec)
            graphs.append(res)
    if not keep:
        raise ValueError("no material could be featurised" + (f"; first error: {skipped[0]}" if skipped else ""))
    lonely = [r.mat_id for r, g in zip(keep, graphs) if len(isolated_sites(g[1], len(g[0])))]
    if lonely:
        log.info("%d materials have sites with no neighbour within %.1f Å; kept with no edges there, as the "
                 "authors do (e.g. %s)", len(lonely), cutoff, ", ".join(lonely[:3]))
    ipa = np.stack([r.ipa_spectrum for r in keep]) if keep[0].ipa_spectrum is not None else None
    store = GraphStore.from_graphs(graphs, np.stack([r.spectrum for r in keep]), [r.mat_id for r in keep],
                                   [r.formula for r in keep], ipa)
    store.volume = torch.tensor([r.structure.volume / len(r.structure) for r in keep], dtype=torch.float32)
    return store, skipped


def _filters() -> dict:
    return {"min_indirect_gap": MIN_INDIRECT_GAP, "max_direct_gap": MAX_DIRECT_GAP, "excluded": sorted(EXCLUDED_IDS)}


def _usable(paths: Sequence[Path], report: bool) -> bool:
    """Whether every cache file is there and verified; with ``report``, damaged ones are logged and removed."""
    ok = True
    for path in paths:
        problem = verify_file(path)
        if problem is None:
            continue
        ok = False
        if report and problem != "missing":
            log.warning("cache file %s cannot be trusted (%s): rebuilding it", path, problem)
            remove_with_checksum(path)
    return ok


def load_store(path: Path) -> tuple[GraphStore, dict]:
    """Load a cached store and its metadata (timed in the log)."""
    t0 = time.perf_counter()
    store, meta = GraphStore.load(path)
    log.info("loaded cached %s (%d materials) in %.2f s", path.name, len(store), time.perf_counter() - t0)
    return store, meta


def synthetic_stores(cache_dir: str | Path | None = None, seed: int = 0, ipa_sizes: Sequence[int] = synthetic.IPA_SIZES,
                     rpa_sizes: Sequence[int] = synthetic.RPA_SIZES, cutoff: float = 5.0,
                     workers: int | None = None) -> dict[str, Path]:
    """Generate (once) and cache the SYNTHETIC IPA and RPA stores; returns their cache paths."""
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = fingerprint({"source": "synthetic", "generator": synthetic.GENERATOR_VERSION,
                       "code": code_hash(synthetic, featurize), "seed": seed,
                       "ipa_sizes": list(ipa_sizes), "rpa_sizes": list(rpa_sizes), "cutoff": cutoff,
                       "featurizer": FEATURIZER_VERSION})
    paths = {k: cache_dir / f"synthetic-{k}-{key[:16]}.pt" for k in ("ipa", "rpa")}
    if _usable(paths.values(), report=False):
        return paths
    with file_lock(cache_dir / f"synthetic-{key[:16]}.lock"):
        if _usable(paths.values(), report=True):  # built by another process while we waited
            return paths
        _build_synthetic(paths, key, seed, ipa_sizes, rpa_sizes, cutoff, workers)
    return paths


def _build_synthetic(paths: dict[str, Path], key: str, seed: int, ipa_sizes: Sequence[int], rpa_sizes: Sequence[int],
                     cutoff: float, workers: int | None) -> None:
    t0 = time.perf_counter()
    log.info("generating the SYNTHETIC IPA/RPA databases (seed %d, sizes %s / %s) ...", seed, ipa_sizes, rpa_sizes)
    db = synthetic.generate(seed, tuple(ipa_sizes), tuple(rpa_sizes))
    ipa_store, _ = featurize_records(db.ipa, cutoff, workers, strict=True, desc="featurising synthetic IPA")
    # RPA materials are IPA materials: reuse their graphs instead of featurising twice.
    row = ipa_store.index_of()
    rows = [row[r.mat_id] for r in db.rpa]
    rpa_store = GraphStore.from_graphs([ipa_store.arrays(i) for i in rows], np.stack([r.spectrum for r in db.rpa]),
                                       [r.mat_id for r in db.rpa], [r.formula for r in db.rpa],
                                       np.stack([r.ipa_spectrum for r in db.rpa]))
    rpa_store.volume = ipa_store.volume[rows]
    meta = {"source": "synthetic", "fingerprint": key, "synthetic": True, "skipped": [], "filtered": 0}
    ipa_store.save(paths["ipa"], {**meta, "kind": "ipa"})
    # The RPA split is inherited from the IPA split, so the RPA store carries the IPA formulas.
    rpa_store.save(paths["rpa"], {**meta, "kind": "rpa", "ipa_mat_ids": ipa_store.mat_id,
                                  "ipa_formulas": ipa_store.formula})
    log.info("built SYNTHETIC databases (%d IPA, %d RPA) in %.1f s", len(ipa_store), len(rpa_store),
             time.perf_counter() - t0)


def gpaw_store(kind: str, cache_dir: str | Path | None = None, cutoff: float = 5.0, strict: bool = False,
               workers: int | None = None, root: str | Path | None = None) -> Path:
    """The built-in GPAW ladder (:mod:`optimate_pl.data.ladder`) as a cached store, via the real-format reader.

    ``root``: another packed ladder (a folder with ``materials.json.gz`` and ``spectra.npz``, what ``ladder pack``
    writes), e.g. the growing ladder's snapshot, instead of the built-in one."""
    from . import ladder

    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    src = ladder.packed_dir(root) if root else None
    return figshare_store(kind, ladder.unpack(cache_dir, src)[kind], cache_dir, cutoff, strict, workers,
                          source="gpaw")


def rung_folder(root: str | Path, kind: str) -> Path:
    """The ``kind`` database of a files root: ``root/ipa`` or ``root/rpa`` where the folder has them (the layout
    ``optimate-pl-compute`` and ``optimate-pl-import`` write), else ``root`` itself."""
    root = Path(root).expanduser()
    return root / kind if (root / kind).is_dir() else root


def files_store(kind: str, root: str | Path, cache_dir: str | Path | None = None, cutoff: float = 5.0,
                strict: bool = False, workers: int | None = None) -> Path:
    """One's own database (``data.source=files``) as a cached store: a folder in the authors' format, or a
    folder holding ``ipa/`` and ``rpa/`` ones (the compute and import commands' output)."""
    if root is None:
        raise ValueError(f"data.source=files needs data.root: a folder with ipa/ and rpa/ (what optimate-pl-import "
                         f"and optimate-pl-compute write) or the {kind.upper()} database folder itself")
    return figshare_store(kind, rung_folder(root, kind), cache_dir, cutoff, strict, workers, source="files")


def figshare_store(kind: str, root: str | Path, cache_dir: str | Path | None = None, cutoff: float = 5.0,
                   strict: bool = False, workers: int | None = None, source: str = "figshare") -> Path:
    """Read (once) and cache a real-format database folder or zip; returns the cache path."""
    if root is None:
        raise ValueError(f"data.source=figshare needs data.root: the {kind.upper()} database folder or .zip")
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data.root {root} does not exist (the {kind.upper()} database folder or .zip)")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = fingerprint({"source": source, "kind": kind, "root": str(root.resolve()), "files": source_stats(root),
                       "filters": _filters(), "cutoff": cutoff, "featurizer": FEATURIZER_VERSION, "strict": strict,
                       "code": code_hash(readers, featurize)})
    path = cache_dir / f"{source}-{kind}-{key[:16]}.pt"
    if _usable([path], report=False):
        return path
    with file_lock(path.with_suffix(".lock")):
        if not _usable([path], report=True):  # else built by another process while we waited
            _build_figshare(path, key, kind, root, cutoff, strict, workers, source)
    return path


def _build_figshare(path: Path, key: str, kind: str, root: Path, cutoff: float, strict: bool,
                    workers: int | None, source: str = "figshare") -> None:
    t0 = time.perf_counter()
    report = read_database(root, kind, strict=strict, workers=workers)
    if not report.records:
        raise ValueError(f"no usable material in {root}:\n{report.summary()}")
    store, skipped = featurize_records(report.records, cutoff, workers, strict, desc=f"featurising {kind.upper()}")
    report.skipped.extend(skipped)
    if report.skipped:
        log.warning("%s", report.summary())
    store.save(path, {"source": source, "kind": kind, "fingerprint": key, "synthetic": False,
                      "skipped": [str(s) for s in report.skipped], "filtered": len(report.filtered)})
    log.info("built %s database from %s (%d materials) in %.1f s", kind.upper(), root, len(store),
             time.perf_counter() - t0)
