"""LightningDataModules for the IPA and RPA databases (synthetic by default, or the real figshare data).

A featurised database is built once and cached on disk, keyed by a fingerprint of what produced
it (source files or generator settings, filters, featuriser version); splits, subsets and
small-cell selections are cheap selections on the cached store made in ``setup()``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from . import featurize, readers, synthetic
from .cache import code_hash, default_cache_dir, fingerprint, source_stats
from .featurize import FEATURIZER_VERSION, graph_arrays, isolated_sites
from .parallel import parallel_map
from .readers import EXCLUDED_IDS, MAX_DIRECT_GAP, MIN_INDIRECT_GAP, BadRecordError, read_database
from .records import MaterialRecord, SkippedRecord
from .splits import PAPER_SIZES, SPLITS, apply_split, formula_split, published_split, read_split_files, training_subset
from .store import GraphDataset, GraphStore, collate_prebatched

log = logging.getLogger(__name__)
SOURCES = ("synthetic", "figshare")


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
    return store, skipped


def _filters() -> dict:
    return {"min_indirect_gap": MIN_INDIRECT_GAP, "max_direct_gap": MAX_DIRECT_GAP, "excluded": sorted(EXCLUDED_IDS)}


def _timed_load(path: Path) -> tuple[GraphStore, dict]:
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
    if all(p.exists() for p in paths.values()):
        return paths
    t0 = time.perf_counter()
    log.info("generating the SYNTHETIC IPA/RPA databases (seed %d, sizes %s / %s) ...", seed, ipa_sizes, rpa_sizes)
    db = synthetic.generate(seed, tuple(ipa_sizes), tuple(rpa_sizes))
    ipa_store, skipped = featurize_records(db.ipa, cutoff, workers, strict=True, desc="featurising synthetic IPA")
    # RPA materials are IPA materials: reuse their graphs instead of featurising twice.
    row = ipa_store.index_of()
    rows = [row[r.mat_id] for r in db.rpa]
    rpa_store = GraphStore.from_graphs([ipa_store.arrays(i) for i in rows], np.stack([r.spectrum for r in db.rpa]),
                                       [r.mat_id for r in db.rpa], [r.formula for r in db.rpa],
                                       np.stack([r.ipa_spectrum for r in db.rpa]))
    meta = {"source": "synthetic", "fingerprint": key, "synthetic": True, "skipped": [], "filtered": 0}
    ipa_store.save(paths["ipa"], {**meta, "kind": "ipa"})
    # The RPA split is inherited from the IPA split, so the RPA store carries the IPA formulas.
    rpa_store.save(paths["rpa"], {**meta, "kind": "rpa", "ipa_mat_ids": ipa_store.mat_id,
                                  "ipa_formulas": ipa_store.formula})
    log.info("built SYNTHETIC databases (%d IPA, %d RPA) in %.1f s", len(ipa_store), len(rpa_store),
             time.perf_counter() - t0)
    return paths


def figshare_store(kind: str, root: str | Path, cache_dir: str | Path | None = None, cutoff: float = 5.0,
                   strict: bool = False, workers: int | None = None) -> Path:
    """Read (once) and cache a real-format database folder or zip; returns the cache path."""
    if root is None:
        raise ValueError(f"data.source=figshare needs data.root: the {kind.upper()} database folder or .zip")
    root = Path(root).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"data.root {root} does not exist (the {kind.upper()} database folder or .zip)")
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    key = fingerprint({"source": "figshare", "kind": kind, "root": str(root.resolve()), "files": source_stats(root),
                       "filters": _filters(), "cutoff": cutoff, "featurizer": FEATURIZER_VERSION, "strict": strict,
                       "code": code_hash(readers, featurize)})
    path = cache_dir / f"figshare-{kind}-{key[:16]}.pt"
    if path.exists():
        return path
    t0 = time.perf_counter()
    report = read_database(root, kind, strict=strict, workers=workers)
    if not report.records:
        raise ValueError(f"no usable material in {root}:\n{report.summary()}")
    store, skipped = featurize_records(report.records, cutoff, workers, strict, desc=f"featurising {kind.upper()}")
    report.skipped.extend(skipped)
    if report.skipped:
        log.warning("%s", report.summary())
    store.save(path, {"source": "figshare", "kind": kind, "fingerprint": key, "synthetic": False,
                      "skipped": [str(s) for s in report.skipped], "filtered": len(report.filtered)})
    log.info("built %s database from %s (%d materials) in %.1f s", kind.upper(), root, len(store),
             time.perf_counter() - t0)
    return path


class SpectraDataModule(pl.LightningDataModule):
    """Shared logic of :class:`IPADataModule` and :class:`RPADataModule`.

    Args:
        source: ``"synthetic"`` (built-in, default) or ``"figshare"`` (the real databases at ``root``).
        root: database folder or ``.zip`` (figshare only).
        split: ``published`` (the authors' split, shipped with the package; default for figshare),
            ``formula`` (recompute the authors' seeded formula-grouped split; default for synthetic
            data) or a folder with ``ipa_{train,validation,test}_ids.txt``.
        ipa_root: (RPA, figshare) the IPA database, for ``split=formula`` and TL's auto pretraining.
        subset: train on ``random.Random(seed).sample(train, subset)`` materials.
        max_sites: train on materials with at most this many sites (validation/test stay full).
        seed: seed of the split and of the subset draw (the authors use 0).
        target: ``eps_imag`` (spectra) or, for RPA, ``sc_rpa_ipa`` (scalar SC[RPA;IPA]).
        synthetic_seed, synthetic_sizes: generator seed and ``{"ipa": [tr, va, te], "rpa": [...]}``.
        device_resident: keep each split on the training device and gather batches there
            (:mod:`optimate_pl.data.device_batches`); ``"auto"`` does so on a single GPU.
    """

    kind = "ipa"

    def __init__(self, source: str = "synthetic", root: str | None = None, split: str | None = None,
                 ipa_root: str | None = None, subset: int | None = None, max_sites: int | None = None,
                 seed: int = 0, batch_size: int = 128, eval_batch_size: int = 256, num_workers: int = 0,
                 drop_last: bool = False, target: str = "eps_imag", cache_dir: str | None = None,
                 strict: bool = False, cutoff: float = 5.0, synthetic_seed: int = 0,
                 synthetic_sizes: dict | None = None, device_resident: bool | str = "auto") -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"unknown data.source {source!r}; choose one of {SOURCES}")
        if source == "figshare" and not root:
            raise ValueError("data.source=figshare needs data.root (the database folder or .zip from figshare)")
        if target not in ("eps_imag", "sc_rpa_ipa"):
            raise ValueError(f"unknown data.target {target!r}; choose eps_imag or sc_rpa_ipa")
        if target == "sc_rpa_ipa" and self.kind != "rpa":
            raise ValueError("data.target=sc_rpa_ipa needs the RPA data module (data=rpa)")
        self.source, self.root, self.split, self.ipa_root = source, root, split, ipa_root
        self.subset, self.max_sites, self.seed = subset, max_sites, seed
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.drop_last, self.target, self.strict, self.cutoff = drop_last, target, strict, cutoff
        self.cache_dir = cache_dir
        self.device_resident = device_resident
        self.synthetic_seed = synthetic_seed
        sizes = synthetic_sizes or {}
        self.synthetic_sizes = {"ipa": tuple(sizes.get("ipa", synthetic.IPA_SIZES)),
                                "rpa": tuple(sizes.get("rpa", synthetic.RPA_SIZES))}
        self.store: GraphStore | None = None
        self.train_set = self.val_set = self.test_set = None

    # -- building -------------------------------------------------------------------------------
    def cache_path(self) -> Path:
        """Build the cache if needed and return its path (rank 0 via ``prepare_data``)."""
        if self.source == "synthetic":
            return synthetic_stores(self.cache_dir, self.synthetic_seed, self.synthetic_sizes["ipa"],
                                    self.synthetic_sizes["rpa"], self.cutoff)[self.kind]
        return figshare_store(self.kind, self.root, self.cache_dir, self.cutoff, self.strict)

    def prepare_data(self) -> None:
        self.cache_path()

    def split_assignment(self, store: GraphStore, meta: dict) -> tuple[dict[str, str], str]:
        """``mat_id -> split`` for this database, and where it came from (for the log)."""
        mode = self.split or ("published" if self.source == "figshare" else "formula")
        if mode == "published":
            return published_split(), "the authors' published split"
        if mode == "formula":
            return self.formula_assignment(store, meta), f"the authors' formula split, seed {self.seed}"
        folder = Path(str(mode)).expanduser()
        if not folder.is_dir():
            raise ValueError(f"data.split={mode}: use published, formula, or a folder holding "
                             f"ipa_{{train,validation,test}}_ids.txt (no such folder)")
        return read_split_files(folder), f"the split files in {folder}"

    def formula_assignment(self, store: GraphStore, meta: dict) -> dict[str, str]:
        """The authors' seeded formula split of this (IPA) database."""
        return formula_split(store.mat_id, store.formula, self.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        store, meta = _timed_load(self.cache_path())
        if meta.get("synthetic"):
            log.info("data: SYNTHETIC %s database (generated, not physics)", self.kind.upper())
        assignment, origin = self.split_assignment(store, meta)
        rows, unknown = apply_split(store.mat_id, assignment)
        sizes = tuple(len(rows[s]) for s in SPLITS)
        log.info("%s splits from %s: train %d, validation %d, test %d", self.kind.upper(), origin, *sizes)
        if unknown:
            log.warning("%d %s materials are in no split and are left out (e.g. %s)", len(unknown),
                        self.kind.upper(), ", ".join(unknown[:3]))
        if self.source == "figshare" and sizes != PAPER_SIZES[self.kind]:
            not_found = len(set(assignment) - set(store.mat_id))
            log.warning("%s split sizes %s differ from the paper's %s: %d of the %d IDs of %s are not in this "
                        "database (filtered, unfinished or missing files)", self.kind.upper(), "/".join(map(str, sizes)),
                        "/".join(map(str, PAPER_SIZES[self.kind])), not_found, len(assignment), origin)
        if not rows["train"]:
            raise ValueError(f"the training split of {self.kind.upper()} is empty: none of the {len(store)} "
                             f"materials of this database is a training material of {origin}")
        train = rows["train"]
        if self.max_sites is not None:
            train = [i for i in train if int(store.nsites[i]) <= self.max_sites]
            if not train:
                raise ValueError(f"no training material has at most data.max_sites={self.max_sites} sites")
        if self.subset is not None:
            ids = [store.mat_id[i] for i in train]
            row = {m: i for m, i in zip(ids, train)}
            train = [row[m] for m in training_subset(ids, int(self.subset), self.seed)]
        self.store = store
        self.train_set = GraphDataset(store, train, self.target)
        self.val_set = GraphDataset(store, rows["validation"], self.target)
        self.test_set = GraphDataset(store, rows["test"], self.target)
        chosen = (f" (subset {self.subset})" if self.subset is not None else "") + \
            (f" (at most {self.max_sites} sites)" if self.max_sites is not None else "")
        log.info("%s data: training on %d materials%s, validating on %d, testing on %d", self.kind.upper(),
                 len(self.train_set), chosen, len(self.val_set), len(self.test_set))

    # -- loaders --------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, dataset: GraphDataset, batch_size: int, shuffle: bool, drop_last: bool = False):
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1
        resident = self.device_resident
        if resident == "auto":
            resident = self._device().type == "cuda" and not distributed
        if resident:
            from .device_batches import DeviceBatchLoader, DeviceGraphBatcher

            if distributed:
                raise ValueError("data.device_resident=true is for single-device runs; set it to false with DDP")
            return DeviceBatchLoader(DeviceGraphBatcher(dataset, self._device()), batch_size, shuffle, drop_last,
                                     seed=self.seed)

        sampler = None
        if not shuffle and distributed:
            # Evaluation must see every material exactly once: the default DistributedSampler pads
            # with duplicates, which shifts a median.
            from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
            sampler = UnrepeatedDistributedSampler(dataset, shuffle=False)
        # A plain torch DataLoader: GraphDataset.__getitems__ gathers each batch in one go.
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle if sampler is None else False,
                          sampler=sampler, drop_last=drop_last, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, collate_fn=collate_prebatched)

    def train_dataloader(self) -> DataLoader:
        drop = self.drop_last and len(self.train_set) > self.batch_size
        return self._loader(self.train_set, self.batch_size, shuffle=True, drop_last=drop)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()


class IPADataModule(SpectraDataModule):
    """The IPA database (300 meV broadening): pretraining data for transfer learning."""

    kind = "ipa"


class RPADataModule(SpectraDataModule):
    """The RPA database; every material keeps the split of its ``mat_id`` in the IPA split.

    Graphs carry ``ipa`` (the IPA spectrum of the RPA workflow) for the IPA baseline.
    """

    kind = "rpa"

    def formula_assignment(self, store: GraphStore, meta: dict) -> dict[str, str]:
        """The IPA database's formula split, which RPA materials inherit by ``mat_id``."""
        if "ipa_mat_ids" in meta:  # synthetic: the generator's IPA database
            return formula_split(meta["ipa_mat_ids"], meta["ipa_formulas"], self.seed)
        if self.ipa_root:
            ipa_store, _ = _timed_load(figshare_store("ipa", self.ipa_root, self.cache_dir, self.cutoff, self.strict))
            return formula_split(ipa_store.mat_id, ipa_store.formula, self.seed)
        raise ValueError("data.split=formula on RPA data recomputes the IPA database's formula split: set "
                         "data.ipa_root (the IPA database), or use data.split=published")
