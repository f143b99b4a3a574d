"""LightningDataModules for the IPA and RPA databases: the built-in GPAW ladder (the default, here and in
``conf/data/ipa.yaml``), the synthetic generator, the authors' figshare databases, or one's own files
(``data.source=files``: what ``optimate-pl-import`` or ``optimate-pl-compute`` wrote), optionally mixed with
the built-in ladder (``data.extra=[gpaw]``).

The featurised database comes from the cache (:mod:`optimate_pl.data.build`, built on first use);
splits, subsets and small-cell selections are cheap selections on the store made in ``setup()``,
and the loaders serve them as batches gathered from the store (:mod:`optimate_pl.data.batching`).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader

from . import synthetic
from .batching import BatchLoader, collate_prebatched
from .padding import PadCollate, PaddedLoader
from .build import figshare_store, files_store, gpaw_store, load_store, synthetic_stores
from .cache import SOURCES, fingerprint, source_label
from .splits import (PAPER_SIZES, SPLITS, apply_split, formula_split, grouped_split, published_split,
                     read_split_files, split_mode, training_subset)
from .store import TARGETS, GraphDataset, GraphStore

log = logging.getLogger(__name__)
#: Fewer training materials than this left by data.max_sites get a warning (the smallest published size is 100).
SMALL_TRAINING_SET = 100


def written_here(root: str | Path | None) -> bool:
    """Whether ``root`` (a database folder or one rung's folder) was written by ``optimate-pl-compute`` or
    ``optimate-pl-import`` (their ``summary.json``/``errors.csv`` beside the rungs), not downloaded from the authors."""
    if not root:
        return False
    path = Path(str(root)).expanduser()
    return any((folder / name).is_file() for folder in (path, path.parent) for name in ("summary.json", "errors.csv")
               if (folder / "ipa").is_dir())


class SpectraDataModule(pl.LightningDataModule):
    """Shared logic of :class:`IPADataModule` and :class:`RPADataModule`.

    Args:
        source: ``"gpaw"`` (built-in GPAW-computed IPA/RPA ladder, real physics), ``"synthetic"`` (built-in
            generator, not physics), ``"figshare"`` (the authors' real databases at ``root``) or ``"files"``
            (one's own database in their format at ``root``: a folder with ``ipa/`` and ``rpa/``, or this rung's
            folder).
        root: database folder or ``.zip`` (figshare, files); for gpaw, another packed ladder than the built-in
            one (a ``ladder pack`` folder, e.g. ``experiments/gpaw_ladder/snapshot``).
        split: ``published`` (the authors' split, shipped with the package; default for gpaw and figshare),
            ``formula`` (recompute the authors' seeded formula-grouped split; default for synthetic
            data), ``auto`` (published where a material is in it, else formula-grouped by a hash of the
            formula: :func:`~optimate_pl.data.splits.grouped_split`; default for files) or a folder with
            ``ipa_{train,validation,test}_ids.txt`` (e.g. the ``split/`` a run wrote).
        ipa_root: (RPA) the IPA database, for ``split=formula`` and TL's auto pretraining (files: defaults
            to ``root/ipa``).
        extra: more databases mixed into this one: ``gpaw`` (the built-in ladder) or folders in the
            authors' format; every material keeps where it came from (``origin`` in the outputs).
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
        static_shapes: pad every training and validation batch to the batch size and to a few fixed node and
            edge counts (:mod:`optimate_pl.data.padding`), so that a compiled step is replayed as a CUDA graph
            per shape; the numbers are unchanged. Test and prediction batches stay unpadded.
    """

    kind = "ipa"

    def __init__(self, source: str = "gpaw", root: str | None = None, split: str | None = None,
                 ipa_root: str | None = None, subset: int | None = None, max_sites: int | None = None,
                 seed: int = 0, batch_size: int = 128, eval_batch_size: int = 256, num_workers: int = 0,
                 drop_last: bool = False, target: str = "eps_imag", cache_dir: str | None = None,
                 strict: bool = False, cutoff: float = 5.0, synthetic_seed: int = 0,
                 synthetic_sizes: dict | None = None, device_resident: bool | str = "auto",
                 train_on: str = "train", train_ids: str | None = None, extra: list[str] | None = None,
                 static_shapes: bool = False) -> None:
        super().__init__()
        if source not in SOURCES:
            raise ValueError(f"unknown data.source {source!r}; choose one of {SOURCES}")
        if source in ("figshare", "files") and not root:
            raise ValueError(f"data.source={source} needs data.root (the database folder"
                             + (" or .zip from figshare)" if source == "figshare" else
                                ": what optimate-pl-import or optimate-pl-compute wrote)"))
        self.extra = [str(e) for e in (extra or [])]
        if self.extra and source == "synthetic":  # its RPA rung is split over the generator's IPA database alone,
            # its IPA rung would be split over that plus the extras: the rungs would disagree (TL would leak)
            raise ValueError(f"data.extra={self.extra} mixes real databases into real data, not into SYNTHETIC data: use it with "
                             f"data.source=gpaw, files or figshare, not synthetic")
        for e in self.extra:
            if e != "gpaw" and not Path(e).expanduser().is_dir():
                raise ValueError(f"data.extra: {e} is neither gpaw (the built-in ladder) nor a database folder")
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
        self.static_shapes = bool(static_shapes)
        self.train_on = train_on
        self.train_ids = train_ids
        self.synthetic_seed = synthetic_seed
        sizes = synthetic_sizes or {}
        self.synthetic_sizes = {"ipa": tuple(sizes.get("ipa", synthetic.IPA_SIZES)),
                                "rpa": tuple(sizes.get("rpa", synthetic.RPA_SIZES))}
        self.store: GraphStore | None = None
        self.meta: dict = {}
        self.split_origin = ""
        self.assignment: dict[str, str] = {}
        self.split_record: dict[str, str] = {}
        self.train_set = self.val_set = self.test_set = None

    # -- building -------------------------------------------------------------------------------
    def origin_label(self) -> str:
        """How this module's own materials are named in the per-material outputs' ``origin`` column (and in the model
        card): ``files:<folder>`` for one's own files, also when they are read as ``data.source=figshare``."""
        own = self.source == "files" or (self.source == "figshare" and written_here(self.root))
        path = Path(str(self.root)).expanduser()
        name = path.parent.name if path.name in ("ipa", "rpa") else path.name  # the database, not its rung folder
        return f"files:{name}" if own else self.source

    def cache_path(self, kind: str | None = None) -> Path:
        """Build the cache of this source's ``kind`` database (default: this module's) if needed; its path."""
        kind = kind or self.kind
        if self.source == "synthetic":
            return synthetic_stores(self.cache_dir, self.synthetic_seed, self.synthetic_sizes["ipa"],
                                    self.synthetic_sizes["rpa"], self.cutoff)[kind]
        if self.source == "gpaw":
            return gpaw_store(kind, self.cache_dir, self.cutoff, self.strict, root=self.root)
        if not self.has_rung(kind):
            where = ("set data.ipa_root" if kind == "ipa" else "give data.root the RPA database") + (
                f", give data.root a folder holding {kind}/, or add 'data.extra=[gpaw]' (the built-in ladder's "
                f"{kind.upper()} rung)" if self.source == "files" else "")
            raise ValueError(f"this needs the {kind.upper()} database of data.source={self.source}: {where}")
        if self.source == "files":
            return files_store(kind, self.rung_root(kind), self.cache_dir, self.cutoff, self.strict)
        root = self.root if kind == self.kind else self.ipa_root
        return figshare_store(kind, root, self.cache_dir, self.cutoff, self.strict)

    def rung_root(self, kind: str) -> Path | None:
        """(files) Where this source's ``kind`` database is: ``data.ipa_root`` for IPA where given, ``root/<kind>``
        where the root holds both rungs, else the root itself for the rung it holds (RPA when an IPA root is given
        beside it, else this module's); ``None`` where there is none."""
        root = Path(str(self.root)).expanduser()
        if kind == "ipa" and self.ipa_root:
            return Path(str(self.ipa_root)).expanduser()
        if (root / kind).is_dir():
            return root / kind
        if (root / "ipa").is_dir() or (root / "rpa").is_dir():
            return None
        return root if kind == ("rpa" if self.ipa_root or self.kind == "rpa" else self.kind) else None

    def has_rung(self, kind: str) -> bool:
        """Whether this source has a ``kind`` database."""
        if self.source == "files":
            return self.rung_root(kind) is not None
        return kind == self.kind or self.source in ("synthetic", "gpaw") or kind == "ipa" and bool(self.ipa_root)

    def _extra_path(self, extra: str, kind: str) -> Path:
        if extra == "gpaw":
            return gpaw_store(kind, self.cache_dir, self.cutoff, self.strict)
        return files_store(kind, extra, self.cache_dir, self.cutoff, self.strict)

    @staticmethod
    def extra_has_rung(extra: str, kind: str) -> bool:
        """Whether a ``data.extra`` database has a ``kind`` rung: the built-in ladder has both; a folder of the
        ``ipa/`` + ``rpa/`` layout those it holds (an IPA-only import or run has no RPA rung, and its IPA entries
        must not be read as one); a folder of one database's entries is taken as either."""
        if extra == "gpaw":
            return True
        root = Path(extra).expanduser()
        return (root / kind).is_dir() or not ((root / "ipa").is_dir() or (root / "rpa").is_dir())

    def _extras(self, kind: str) -> list[str]:
        """The extras that have a ``kind`` rung (the others are left out of it, said once in the log)."""
        kept = [e for e in self.extra if self.extra_has_rung(e, kind)]
        for e in sorted(set(self.extra) - set(kept)):
            log.info("data.extra=%s has no %s rung (no %s/ folder): it adds to the other rung only", e, kind.upper(),
                     kind)
        return kept

    def prepare_data(self) -> None:
        if self.has_rung(self.kind) or not self.extra:
            self.cache_path()
        for e in self._extras(self.kind):
            self._extra_path(e, self.kind)

    def load_rung(self, kind: str | None = None) -> tuple[GraphStore, dict]:
        """This source's ``kind`` database with ``data.extra`` mixed in; every row knows its ``origin``.

        One's own files may lack a rung (e.g. VASP LOPTICS spectra are IPA only): with ``data.extra`` the rung is
        then the extra databases' alone.
        """
        kind = kind or self.kind
        if not self.extra:
            return load_store(self.cache_path(kind))
        parts, meta, prints = [], {}, []
        if self.has_rung(kind):
            own, meta = load_store(self.cache_path(kind))
            prints.append(meta.get("fingerprint"))
            own.origin = [self.origin_label()] * len(own)
            parts.append(own)
        else:
            log.info("%s has no %s database: the %s data are data.extra's", self.root, kind.upper(), kind.upper())
        extras = self._extras(kind)
        if not parts and not extras:
            raise ValueError(f"no {kind.upper()} data: data.root={self.root} has no {kind}/ folder and no data.extra "
                             f"({', '.join(self.extra)}) has one; add 'data.extra=[gpaw]' (the built-in ladder's) or "
                             f"import {kind.upper()} spectra")
        seen = {m for p in parts for m in p.mat_id}
        for e in extras:
            other, other_meta = load_store(self._extra_path(e, kind))
            meta = meta or other_meta
            prints.append(other_meta.get("fingerprint"))
            keep = [i for i, m in enumerate(other.mat_id) if m not in seen]
            if len(keep) < len(other):
                log.warning("data.extra=%s: %d of its %s materials are also in data.root; those entries of data.root "
                            "are used", e, len(other) - len(keep), kind.upper())
            if keep:
                part = other.subset(keep)
                part.origin = [e if e == "gpaw" else f"files:{Path(e).expanduser().name}"] * len(keep)
                parts.append(part)
                seen.update(part.mat_id)
        mixed = GraphStore.concat(parts)
        log.info("%s data: %s", kind.upper(), ", ".join(f"{n} from {o}" for o, n in Counter(mixed.origin).items()))
        return mixed, {**meta, "source": self.source, "extra": list(self.extra), "synthetic": False,
                       "fingerprint": fingerprint({"parts": prints})}

    @property
    def split_mode(self) -> str:
        """``data.split`` with the source's default named (:func:`~optimate_pl.data.splits.split_mode`)."""
        return split_mode(self.split, self.source)

    def split_assignment(self, store: GraphStore, meta: dict, kind: str | None = None) -> tuple[dict[str, str], str]:
        """``mat_id -> split`` for this database (or ``store`` of rung ``kind``, e.g. MF's IPA rung beside its
        RPA one), and where it came from (for the log)."""
        mode = self.split_mode
        if mode == "published":
            return published_split(), "the authors' published split"
        if mode == "formula":
            return self.formula_assignment(store, meta), f"the authors' formula split, seed {self.seed}"
        if mode == "auto":
            return self.auto_assignment(store, kind), (f"the published split where it has a material, else formula groups "
                                                 f"placed by hash (seed {self.seed})")
        folder = Path(str(mode)).expanduser()
        if not folder.is_dir():
            raise ValueError(f"data.split={mode}: use published, formula, auto, or a folder holding "
                             f"ipa_{{train,validation,test}}_ids.txt (no such folder)")
        return read_split_files(folder), f"the split files in {folder}"

    def auto_assignment(self, store: GraphStore, kind: str | None = None) -> dict[str, str]:
        """:func:`grouped_split` over every material of both rungs of this source (so that the IPA and RPA
        modules agree, and no RPA validation/test material is an IPA training one): ``store``, of rung ``kind``
        (this module's by default), and the other rung."""
        ids, formulas = list(store.mat_id), list(store.formula)
        for other in ("ipa", "rpa"):
            if other != (kind or self.kind) and self.has_rung(other):
                o, _ = self.load_rung(other)
                ids, formulas = ids + o.mat_id, formulas + o.formula
        return grouped_split(ids, formulas, known=published_split(), seed=self.seed)

    def formula_assignment(self, store: GraphStore, meta: dict) -> dict[str, str]:
        """The authors' seeded formula split of this (IPA) database."""
        return formula_split(store.mat_id, store.formula, self.seed)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        store, meta = self.load_rung()
        log.info("data: %s %s database", source_label(self.source, self.root), self.kind.upper())
        self.meta = meta
        assignment, origin = self.split_assignment(store, meta)
        self.split_origin = origin
        self.assignment = {m: assignment[m] for m in store.mat_id if m in assignment}
        # What a run's split/ folder keeps (data.split=<run>/split): the materials of both rungs (auto, or a split
        # folder given, kept whole), so that a TL pretraining or MF on those files loses no IPA-only material; the
        # published split: this rung's.
        self.split_record = self.assignment if self.split_mode == "published" else dict(assignment)
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
                hint = ("; for materials outside the authors' published split use data.source=files (or data.split=auto), "
                        "which places them by formula" if origin.startswith("the authors' published") else
                        "; data.split=auto gives each split a formula group where there are at least 3"
                        if origin.startswith("the authors' formula") else "")
                raise ValueError(f"the {split} split of {self.kind.upper()} is empty: none of the {len(store)} "
                                 f"materials of this database is a {split} material of {origin}{hint}")
        train = rows["train"]
        if self.train_ids:
            train = self._chosen_training_rows(store, assignment, set(train))
        if self.train_on == "all":
            # The latent map's SC model: the authors train it on every material (all splits, in database
            # order); validation and test then measure nothing held out.
            train = sorted(rows["train"] + rows["validation"] + rows["test"])
            log.warning("data.train_on=all: training on all %d materials, validation and test included", len(train))
        if self.max_sites is not None:
            before = len(train)
            train = [i for i in train if int(store.nsites[i]) <= self.max_sites]
            if not train:
                raise ValueError(f"no training material has at most data.max_sites={self.max_sites} sites")
            if len(train) < min(SMALL_TRAINING_SET, before):
                log.warning("data.max_sites=%d keeps %d of the %d training materials: a network sized for the whole "
                            "set (model=dl_auto and strategy=dl choose by data.subset, unset here) may overfit; "
                            "consider model=dl_100", self.max_sites, len(train), before)
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
        origins = dict(Counter(self.store.origin)) if self.store.origin else {self.origin_label(): len(self.store)}
        if self.source == "figshare" and written_here(self.root):
            log.warning("data.root=%s was written by optimate-pl-compute/import, not downloaded from the authors: it "
                        "is labelled as your own data (data.source=files reads it as such, with its own split)",
                        self.root)
        return {"kind": self.kind, "source": self.source, "synthetic": bool(self.meta.get("synthetic")),
                "extra": list(self.extra), "origins": origins,
                "root": str(self.root) if self.root else None, "fingerprint": self.meta.get("fingerprint"),
                "cutoff": self.cutoff, "split": self.split_origin, "subset": self.subset,
                "max_sites": self.max_sites, "seed": self.seed, "target": self.target, "train_on": self.train_on,
                "train_ids": str(self.train_ids) if self.train_ids else None,
                "sizes": {"train": len(self.train_set), "validation": len(self.val_set), "test": len(self.test_set)},
                "ladder": self.ladder_version(), "domain": self.domain()}

    def ladder_version(self) -> str | None:
        """The digest of the GPAW ladder pack read (``data.source=gpaw`` or ``data.extra=[gpaw]``), else None. The
        built-in ladder changes between versions under the same config, so a run records which one it learned."""
        from . import ladder

        if self.source == "gpaw":
            return ladder.digest(self.root)
        return ladder.digest() if "gpaw" in [str(e) for e in self.extra] else None

    def domain(self) -> dict:
        """The training materials' elements, sites per cell and volume per site (:mod:`optimate_pl.data.domain`)."""
        from .domain import training_domain

        rows = self.train_set.rows.tolist()
        volumes = None if self.store.volume is None else self.store.volume[rows].tolist()
        return training_domain([self.store.formula[i] for i in rows], self.store.nsites[rows].tolist(), volumes)

    # -- loaders --------------------------------------------------------------------------------
    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _loader(self, dataset: GraphDataset, batch_size: int, shuffle: bool, drop_last: bool = False,
                pad: bool = False):
        # data.static_shapes: this many graphs in every batch (a split smaller than a batch is one batch)
        graphs = min(batch_size, len(dataset)) if pad and self.static_shapes else None
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized() \
            and torch.distributed.get_world_size() > 1
        resident = self.device_resident
        if resident == "auto":
            resident = self._device().type == "cuda" and not distributed
        if resident:
            if distributed:
                raise ValueError("data.device_resident=true is for single-device runs; set it to false with DDP")
            loader = BatchLoader(dataset.batcher(self._device()), batch_size, shuffle, drop_last, seed=self.seed)
            return loader if graphs is None else PaddedLoader(loader, graphs)

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
                          persistent_workers=self.num_workers > 0,
                          collate_fn=collate_prebatched if graphs is None else PadCollate(graphs))

    def train_dataloader(self) -> DataLoader:
        drop = self.drop_last and len(self.train_set) > self.batch_size
        return self._loader(self.train_set, self.batch_size, shuffle=True, drop_last=drop, pad=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False, pad=True)

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
        if self.has_rung("ipa") and self.source in ("figshare", "files", "gpaw"):
            ipa_store, _ = self.load_rung("ipa")
            return formula_split(ipa_store.mat_id, ipa_store.formula, self.seed)
        raise ValueError("data.split=formula on RPA data recomputes the IPA database's formula split: set "
                         "data.ipa_root (the IPA database), or use data.split=published")
