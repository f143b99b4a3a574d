"""Finished training runs as the studies read them: config, metrics, per-material results, models."""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from ..data.cache import gpaw_ladder_words

log = logging.getLogger(__name__)


#: What every table and figure made from the built-in data says.
SYNTHETIC_STATEMENT = "SYNTHETIC data (generated, not physics): not comparable with the paper's numbers"


class StudyInputError(FileNotFoundError):
    """A study's input (its runs) is missing or incomplete; the message says which and how to make it."""


@dataclass
class Run:
    """One finished run: its folder, resolved config and ``metrics.json``."""

    dir: Path
    cfg: DictConfig
    metrics: dict[str, Any] = field(repr=False)

    @property
    def strategy(self) -> str:
        return str(self.cfg.strategy.name)

    @property
    def n_train(self) -> int:
        return int(self.metrics.get("n_train") or 0)

    @property
    def max_sites(self) -> int | None:
        return self.cfg.data.get("max_sites")

    @cached_property
    def results(self) -> pd.DataFrame:
        """The per-material test results (``test_results.csv``)."""
        path = self.dir / "test_results.csv"
        if not path.is_file():
            raise StudyInputError(f"run {self.dir} has no test results ({path.name}; trained with test=false?)")
        return pd.read_csv(path)

    def model(self):
        """The tested model (best checkpoint) as a :class:`~optimate_pl.inference.predictor.Predictor`."""
        from ..inference.predictor import load_model

        ckpt = self.metrics.get("best_checkpoint")
        if not ckpt or not Path(ckpt).is_file():
            raise StudyInputError(f"run {self.dir} has no checkpoint to predict with ({ckpt})")
        return load_model(ckpt)

    def initial_model(self):
        """The weights a TL run started from (the IPA model), as a Predictor."""
        from ..inference.predictor import load_model

        path = (self.metrics.get("data") or {}).get("initial_weights")
        if not path or not Path(path).is_file():
            raise StudyInputError(f"run {self.dir} records no initial (IPA) weights that still exist ({path})")
        return load_model(path)

    def datamodule(self):
        """The run's data module, set up (from the cache). Refused where it is not the data the run learned: the
        built-in GPAW ladder changes between versions under the same config (v5 -> v6)."""
        import hydra.utils

        dm = hydra.utils.instantiate(self.cfg.data, _convert_="all")
        dm.setup()
        self._check_same_ladder(dm)
        return dm

    def _check_same_ladder(self, dm) -> None:
        recorded = self.metrics.get("data") or {}
        now = dm.ladder_version() if hasattr(dm, "ladder_version") else None
        if now is None:
            return
        hint = (". The built-in ladder was v5 until 2026-12-07 (session 23); v5 is kept in "
                "experiments/gpaw_ladder/builtin_v5: set data.root to that folder in the run's config.yaml")
        learned = recorded.get("ladder")
        if learned:
            if learned != now:
                raise StudyInputError(f"run {self.dir} learned the GPAW ladder pack {learned}, but its config now "
                                      f"reads pack {now}{hint}")
            return
        # Before the record: the validation and test sizes tell versions apart (v5 50/65, v6 63/80).
        sizes = recorded.get("sizes") or {}
        if any(sizes.get(split) not in (None, n) for split, n in (("validation", len(dm.val_set)),
                                                                  ("test", len(dm.test_set)))):
            raise StudyInputError(f"run {self.dir} was tested on {sizes.get('test')} materials "
                                  f"({sizes.get('validation')} for validation), but its config now reads a GPAW "
                                  f"ladder with {len(dm.test_set)} ({len(dm.val_set)}): another version{hint}")


def load_runs(root: str | Path, what: str = "") -> list[Run]:
    """Every finished run below ``root`` (a folder with ``metrics.json`` and ``config.yaml``)."""
    root = Path(root)
    hint = f" (make them with: python -m optimate_pl experiment={what})" if what else ""
    if not root.is_dir():
        raise StudyInputError(f"no such folder: {root}{hint}")
    runs = []
    for metrics_path in sorted(root.rglob("metrics.json")):
        run_dir = metrics_path.parent
        if (run_dir / "config.yaml").is_file():
            runs.append(Run(run_dir, OmegaConf.load(run_dir / "config.yaml"), json.loads(metrics_path.read_text())))
    if not runs:
        raise StudyInputError(f"no finished run (metrics.json + config.yaml) below {root}{hint}")
    # A run still training (or stopped) has its config but not yet its metrics: say which are left out.
    unfinished = sorted(str(c.parent) for c in root.rglob("config.yaml")
                        if c.parent.name != ".hydra" and not (c.parent / "metrics.json").is_file())
    if unfinished:
        log.warning("%d unfinished run(s) below %s left out (no metrics.json): %s", len(unfinished), root,
                    ", ".join(unfinished))
    return runs


def pick(runs: list[Run], strategy: str, n_train: int | None = None, **data: Any) -> Run | None:
    """The run of ``strategy`` (and training-set size, and data settings such as ``max_sites``), if any."""
    for run in runs:
        if run.strategy == strategy and (n_train is None or run.n_train == n_train) and \
                all(run.cfg.data.get(k) == v for k, v in data.items()):
            return run
    return None


def is_real(runs: list[Run]) -> bool:
    return all(r.cfg.data.source == "figshare" for r in runs)


def _budget(run: Run) -> str:
    steps = OmegaConf.select(run.cfg, "trainer.max_steps", default=None)
    return f"{steps} training steps (a quick preset)" if steps and int(steps) > 0 else "the strategies' epochs"


def data_statement(runs: list[Run]) -> str:
    """What the runs were trained on: SYNTHETIC, the built-in GPAW ladder (or another pack), the authors' databases
    or one's own (path and fingerprint); runs of several sources say so, each named, and so do runs of several
    training budgets (a quick preset's runs left in the folder of a full study's)."""
    budgets = sorted({_budget(r) for r in runs})
    if len(budgets) > 1:
        log.warning("these runs were trained with different budgets (%s): a quick preset's runs beside a full "
                    "study's? Report them apart with --runs", "; ".join(budgets))
        return (f"MIXED training budgets, not comparable with each other ({'; '.join(budgets)}): "
                f"{_source_statement(runs)}")
    return _source_statement(runs)


def _source_statement(runs: list[Run]) -> str:
    sources = sorted({str(r.cfg.data.source) for r in runs})
    if len(sources) > 1:
        return (f"MIXED data sources, not comparable with each other: "
                f"{'; '.join(_source_statement([r for r in runs if r.cfg.data.source == s]) for s in sources)}")
    if sources == ["gpaw"]:
        roots = sorted({str(r.cfg.data.get("root") or "") for r in runs})
        ladder = gpaw_ladder_words(", ".join(p or "the built-in one" for p in roots) if roots != [""] else None)
        packs = sorted({str(((getattr(r, "metrics", None) or {}).get("data") or {}).get("ladder")
                            or "version not recorded") for r in runs})
        mixed = "MIXED ladder versions, not comparable with each other: " if len(packs) > 1 else ""
        return (f"{mixed}GPAW-computed (real physics: {ladder}, pack {', '.join(packs)}; not the authors' databases, "
                f"so no published numbers beside it)")
    if sources != ["figshare"] and sources != ["files"]:
        return SYNTHETIC_STATEMENT
    data = runs[0].metrics.get("data") or {}
    what = "real data" if sources == ["figshare"] else "your own data (data.source=files)"
    return f"{what}: {runs[0].cfg.data.root} (database fingerprint {str(data.get('fingerprint'))[:16]})"


@torch.no_grad()
def predict(model, dataset, rows: list[int] | None = None, batch_size: int = 256) -> np.ndarray:
    """Predictions [n, out_dim] of a Predictor on dataset items ``rows`` (default: all), batched."""
    out = [model(b).cpu() for b in dataset.batches(batch_size, rows)]
    return torch.cat(out).numpy() if out else np.zeros((0, 1), np.float32)


def split_arrays(dataset) -> dict[str, Any]:
    """Targets, IPA spectra (RPA data) and identities of every item of a dataset, in its order."""
    batch = dataset.collate(range(len(dataset)))
    return {"y": batch.y.numpy(), "ipa": batch.ipa.numpy() if getattr(batch, "ipa", None) is not None else None,
            "mat_id": list(batch.mat_id), "formula": list(batch.formula), "nsites": batch.nsites.numpy()}
