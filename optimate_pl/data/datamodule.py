"""LightningDataModules for the IPA and RPA databases: the built-in GPAW ladder, the synthetic generator or the
authors' figshare databases (the command's default, ``conf/data/ipa.yaml``, is the GPAW ladder; a module built in
Python defaults to the synthetic generator, which tests and benchmarks size freely).

The featurised database comes from the cache (:mod:`optimate_pl.data.build`, built on first use);
splits, subsets and small-cell selections are cheap selections on the store made in ``setup()``,
and the loaders serve them as batches gathered from the store (:mod:`optimate_pl.data.batching`).
"""
from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from . import synthetic
from .batching import BatchLoader, collate_prebatched
from .build import figshare_store, gpaw_store, load_store, synthetic_stores
from .cache import SOURCES, source_label
from .splits import PAPER_SIZES, SPLITS, apply_split, formula_split, published_split, read_split_files, training_subset
from .store import TARGETS, GraphDataset, GraphStore

log = logging.getLogger(__name__)


class SpectraDataModule(pl.LightningDataModule):
    """Shared logic of :class:`IPADataModule` and :class:`RPADataModule`.

    Args:
        source: ``"gpaw"`` (built-in GPAW-computed IPA/RPA ladder, real physics), ``"synthetic"`` (built-in
            generator, not physics) or ``"figshare"`` (the authors' real databases at ``root``).
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
            (:mod:`optimate_pl.data.batching`); ``"auto"`` does so on a single GPU.
        train_on: ``train`` (the training split) or ``all`` (every material, as the authors train the SC
            model whose latent space the paper maps).
        train_ids: a file of ``mat_id`` s (one a line) to train on instead of the whole training split
            (active learning); each must be a training material, listed once.
    """

    kind = "ipa"

    def __init__(self, source: str = "synthetic", root: str | None = None, split: str | None = None,
                 ipa_root: str | None = None, subset: int | None = None, max_sites: int | None = None,
                 seed: int = 0, batch_size: int = 128, eval_batch_size: int = 256, num_workers: int = 0,
                 drop_last: bool = False, target: str = "eps_imag", cache_dir: str | None = None,
                 strict: bool = False, cutoff: float = 5.0, synthetic_seed: int = 0,
                 synthetic_sizes: dict | None = None, device_resident: bool | str = "auto",
                 train_on: str = "train", train_ids: str | None = None) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"unknown data.source {source!r}; choose one of {SOURCES}")
        if source == "figshare" and not root:
            raise ValueError("data.source=figshare needs data.root (the database folder or .zip from figshare)")
        if target not in TARGETS:
            raise ValueError(f"unknown data.target {target!r}; choose {' or '.join(TARGETS)}")
        if train_ids and (subset is not None or train_on != "train"):
            raise ValueError("data.train_ids names the training materials itself: leave data.subset and "
                             "data.train_on at their defaults")
        if train_on not in ("train", "all"):
            raise ValueError(f"data.train_on={train_on}: use train (the training split) or all (every material)")
        if target == "sc_rpa_ipa" and self.kind != "rpa":
            raise ValueError("data.target=sc_rpa_ipa needs the RPA data module (data=rpa)")
        self.source, self.root, self.split, self.ipa_root = source, root, split, ipa_root
        self.subset, self.max_sites, self.seed = subset, max_sites, seed
        self.batch_size, self.eval_batch_size, self.num_workers = batch_size, eval_batch_size, num_workers
        self.drop_last, self.target, self.strict, self.cutoff = drop_last, target, strict, cutoff
        self.cache_dir = cache_dir
        self.device_resident = device_resident
        self.train_on = train_on
        self.train_ids = train_ids
        self.synthetic_seed = synthetic_seed
        sizes = synthetic_sizes or {}
        self.synthetic_sizes = {"ipa": tuple(sizes.get("ipa", synthetic.IPA_SIZES)),
                                "rpa": tuple(sizes.get("rpa", synthetic.RPA_SIZES))}
        self.store: GraphStore | None = None
        self.meta: dict = {}
        self.split_origin = ""
        self.train_set = self.val_set = self.test_set = None

    # -- building -------------------------------------------------------------------------------
    def cache_path(self) -> Path:
        """Build the cache if needed and return its path (rank 0 via ``prepare_data``)."""
        if self.source == "synthetic":
            return synthetic_stores(self.cache_dir, self.synthetic_seed, self.synthetic_sizes["ipa"],
                                    self.synthetic_sizes["rpa"], self.cutoff)[self.kind]
        if self.source == "gpaw":
            return gpaw_store(self.kind, self.cache_dir, self.cutoff, self.strict)
        return figshare_store(self.kind, self.root, self.cache_dir, self.cutoff, self.strict)

    def prepare_data(self) -> None:
        self.cache_path()

    def split_assignment(self, store: GraphStore, meta: dict) -> tuple[dict[str, str], str]:
        """``mat_id -> split`` for this database, and where it came from (for the log)."""
        mode = self.split or ("formula" if self.source == "synthetic" else "published")
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
        store, meta = load_store(self.cache_path())
        log.info("data: %s %s database", source_label(self.source), self.kind.upper())
        self.meta = meta
        assignment, origin = self.split_assignment(store, meta)
        self.split_origin = origin
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
        for split in SPLITS:
            if not rows[split]:
                raise ValueError(f"the {split} split of {self.kind.upper()} is empty: none of the {len(store)} "
                                 f"materials of this database is a {split} material of {origin}")
        train = rows["train"]
        if self.train_ids:
            train = self._chosen_training_rows(store, assignment, set(train))
        if self.train_on == "all":
            # The latent map's SC model: the authors train it on every material (all splits, in database
            # order); validation and test then measure nothing held out.
            train = sorted(rows["train"] + rows["validation"] + rows["test"])
            log.warning("data.train_on=all: training on all %d materials, validation and test included", len(train))
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

    def _chosen_training_rows(self, store: GraphStore, assignment: dict[str, str], train_rows: set[int]) -> list[int]:
        """The rows of the materials listed in ``train_ids``: training materials only, each once."""
        path = Path(str(self.train_ids)).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"data.train_ids={path}: no such file (one mat_id a line)")
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(set(ids)) != len(ids):
            twice = next(m for m in ids if ids.count(m) > 1)
            raise ValueError(f"data.train_ids={path}: {twice} is listed twice")
        row = store.index_of()
        for m in ids:
            if m not in row or row[m] not in train_rows:
                where = assignment.get(m, "no split") if m in row else "not in this database"
                raise ValueError(f"data.train_ids={path}: {m} is not a training material ({where}); validation and "
                                 f"test materials can never be trained on")
        return sorted(row[m] for m in ids)

    def describe(self) -> dict:
        """What a model trained on this data module learns from: saved in its checkpoints and model cards."""
        if self.train_set is None:
            self.setup()
        return {"kind": self.kind, "source": self.source, "synthetic": bool(self.meta.get("synthetic")),
                "root": str(self.root) if self.root else None, "fingerprint": self.meta.get("fingerprint"),
                "cutoff": self.cutoff, "split": self.split_origin, "subset": self.subset,
                "max_sites": self.max_sites, "seed": self.seed, "target": self.target, "train_on": self.train_on,
                "train_ids": str(self.train_ids) if self.train_ids else None,
                "sizes": {"train": len(self.train_set), "validation": len(self.val_set), "test": len(self.test_set)}}

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
            if distributed:
                raise ValueError("data.device_resident=true is for single-device runs; set it to false with DDP")
            return BatchLoader(dataset.batcher(self._device()), batch_size, shuffle, drop_last, seed=self.seed)

        sampler = None
        if not shuffle and distributed:
            # Evaluation must see every material exactly once: the default DistributedSampler pads
            # with duplicates, which shifts a median. Lightning's own sampler for this (what it uses
            # for prediction) is not re-exported at a shorter public path.
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
            ipa_store, _ = load_store(figshare_store("ipa", self.ipa_root, self.cache_dir, self.cutoff, self.strict))
            return formula_split(ipa_store.mat_id, ipa_store.formula, self.seed)
        raise ValueError("data.split=formula on RPA data recomputes the IPA database's formula split: set "
                         "data.ipa_root (the IPA database), or use data.split=published")
