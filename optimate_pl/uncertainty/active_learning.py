"""Active learning: which RPA calculations to run next, tested as a campaign on the RPA training pool.

    python -m optimate_pl experiment=active_learning_quick        (experiment=active_learning: the full one)

Every repetition starts from the same ``initial`` random training materials for every acquisition
function (seed ``seed + repetition``), then acquires ``step`` more from the remaining training pool
per round until ``until``, retrains TL from the IPA weights each round and tests each round on the
fixed test set. Validation and test materials are never in the pool, and nothing is acquired twice
(the data module refuses both). Acquisition functions: :mod:`optimate_pl.uncertainty.acquisition`; the ensemble
for ``disagreement`` is the round's model plus ``ensemble_size - 1`` members of other seeds, the SC
model for ``sc`` is trained on the materials labelled so far (their SC[RPA;IPA] is known).

A finished round is never trained again: the campaign resumes where it stopped. Its table,
``campaign.csv``, has one row per repetition, acquisition and round (materials, test medians).
"""
from __future__ import annotations

import json
import logging
import random
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from ..config import REMOVE, derive_config

from .acquisition import ACQUISITIONS, k_center_greedy, select_random, select_top
from ..utils.atomic import atomic_write_text

log = logging.getLogger("optimate_pl")


def _round(cfg: DictConfig, init: Path | None, ids: list[str], folder: Path, seed: int) -> dict[str, Any]:
    """Train ``cfg`` (or, when finished before, read its result) on the materials ``ids`` into ``folder``."""
    from ..training.train import train

    done = folder / "metrics.json"
    if done.is_file():
        return json.loads(done.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text("\n".join(ids) + "\n", folder / "train_ids.txt")
    run = derive_config(cfg, {"data.train_ids": str(folder / "train_ids.txt"), "data.subset": None, "seed": seed,
                              "paths.output_dir": str(folder), "evaluate_train": False, "active_learning": REMOVE})
    return train(run, init_weights=init)


def _pool_rows(dm, pool_ids: list[str]) -> list[int]:
    row = dm.store.index_of()
    return [row[m] for m in pool_ids]


@torch.no_grad()
def _latents(model, dataset, batch_size: int = 256) -> torch.Tensor:
    return torch.cat([model.net.latents(b) for b in dataset.batches(batch_size)])


def acquire(name: str, k: int, remaining: list[str], labelled: list[str], cfg: DictConfig, dm, ipa: Path | Any | None,
            folder: Path, seed: int, round_metrics: dict[str, Any]) -> list[str]:
    """The ``k`` materials of ``remaining`` that acquisition ``name`` picks after a round."""
    from ..data.store import GraphDataset
    from .ensemble import member_predictions
    from ..inference.predictor import load_model
    from ..spectra.calibration import spread

    al = cfg.active_learning
    if name == "random":
        return [remaining[i] for i in select_random(len(remaining), k, seed)]
    pool = GraphDataset(dm.store, _pool_rows(dm, remaining), "eps_imag")
    if name == "disagreement":
        checkpoints = [round_metrics["best_checkpoint"]]
        for j in range(1, int(al.ensemble_size)):
            extra = _round(cfg, ipa, labelled, folder / f"member-{j}", seed + 1000 * j)
            checkpoints.append(extra["best_checkpoint"])
        preds = member_predictions(load_model(checkpoints), pool)
        return [remaining[i] for i in select_top(spread(preds.mean(0), preds.std(0, unbiased=False)).numpy(), k)]
    if name == "sc":
        sc_cfg = derive_config(cfg, strategy="sc", model="sc")
        sc_run = _round(sc_cfg, None, labelled, folder / "sc-model", seed)
        sc_model = load_model(sc_run["best_checkpoint"])
        predicted = torch.cat([sc_model(b)[:, 0] for b in pool.batches()])
        return [remaining[i] for i in select_top((1.0 - predicted).numpy(), k)]
    if name == "diversity":
        model = load_model(round_metrics["best_checkpoint"])
        seen = GraphDataset(dm.store, _pool_rows(dm, labelled), "eps_imag")
        return [remaining[i] for i in k_center_greedy(_latents(model, pool), _latents(model, seen), k)]
    raise ValueError(f"unknown acquisition {name!r}; choose from {', '.join(ACQUISITIONS)}")


def run_campaign(cfg: DictConfig, init: Path | Any | None = None) -> dict[str, Any]:
    """The whole campaign (see the module docstring) on a resolved config, every round starting from ``init``
    (TL: the IPA weights, see :func:`optimate_pl.training.stages.prepare`); returns its table's path and size."""
    import hydra.utils

    al = cfg.active_learning
    unknown = set(al.acquisitions) - set(ACQUISITIONS)
    if unknown:
        raise ValueError(f"active_learning.acquisitions: unknown {sorted(unknown)}; choose from {', '.join(ACQUISITIONS)}")
    out = Path(cfg.paths.output_dir)
    ipa = init
    dm = hydra.utils.instantiate({**OmegaConf.to_container(cfg.data, resolve=True), "subset": None,
                                  "train_ids": None}, _convert_="all")
    dm.setup()
    pool = list(dm.train_set.mat_ids)
    ladder_pack = dm.ladder_version()  # the built-in GPAW ladder changes between versions under the same config
    sizes = list(range(int(al.initial), int(al.until) + 1, int(al.step)))
    rows: list[dict[str, Any]] = []
    for rep in range(int(al.repetitions)):
        seed = int(cfg.seed) + rep
        initial = random.Random(seed).sample(pool, sizes[0])
        first = _round(cfg, ipa, initial, out / f"rep-{rep}" / "initial", seed)
        for name in al.acquisitions:
            labelled, metrics = list(initial), first
            for k, size in enumerate(sizes):
                if k:
                    taken = set(labelled)
                    remaining = [m for m in pool if m not in taken]
                    new = acquire(name, size - len(labelled), remaining, labelled, cfg, dm, ipa,
                                  out / f"rep-{rep}" / name / f"round-{k:02d}", seed * 1000 + k, metrics)
                    assert not taken & set(new) and len(set(new)) == len(new)  # nothing twice
                    labelled += new
                    metrics = _round(cfg, ipa, labelled, out / f"rep-{rep}" / name / f"round-{k:02d}", seed)
                rows.append({"repetition": rep, "acquisition": name, "round": k, "n_rpa": len(labelled),
                             "sc_median": metrics.get("test/sc_median"), "mse_median": metrics.get("test/mse_median"),
                             "ipa_sc_median": metrics.get("test/ipa_sc_median")})
                atomic_write_text(pd.DataFrame(rows).to_csv(index=False), out / "campaign.csv")
                log.info("active learning: repetition %d, %s, %d RPA materials: test median SC %.4f", rep, name,
                         len(labelled), metrics.get("test/sc_median", float("nan")))
    atomic_write_text(json.dumps({"source": cfg.data.source, "ladder": ladder_pack, "sizes": sizes,
                                  "acquisitions": list(al.acquisitions), "repetitions": int(al.repetitions)},
                                 indent=2), out / "campaign.json")
    return {"objective": None, "campaign": str(out / "campaign.csv"), "rows": len(rows)}


def curves(table: pd.DataFrame) -> pd.DataFrame:
    """Median test SC and MSE per acquisition and number of RPA materials, over repetitions (mean, min, max)."""
    g = table.groupby(["acquisition", "n_rpa"])
    return g.agg(sc=("sc_median", "mean"), sc_min=("sc_median", "min"), sc_max=("sc_median", "max"),
                 mse=("mse_median", "mean"), mse_min=("mse_median", "min"), mse_max=("mse_median", "max"),
                 repetitions=("repetition", "nunique")).reset_index()


def needed_to_reach(curve: pd.DataFrame, target_sc: float) -> dict[str, Any]:
    """Per acquisition: the fewest RPA materials whose mean test SC reaches ``target_sc`` (None if never)."""
    out = {}
    for name, sub in curve.groupby("acquisition"):
        hit = sub[sub.sc >= target_sc].n_rpa
        out[name] = int(hit.min()) if len(hit) else None
    return out


def beats_random(curve: pd.DataFrame) -> dict[str, str]:
    """Per acquisition, in words: does its mean test SC beat random's at every round after the first?"""
    base = curve[curve.acquisition == "random"].set_index("n_rpa").sc
    verdicts = {}
    for name, sub in curve.groupby("acquisition"):
        if name == "random":
            continue
        diff = (sub.set_index("n_rpa").sc - base).dropna().iloc[1:]
        if diff.empty:
            verdicts[name] = "not compared (no round after the first)"
        elif (diff > 0).all():
            verdicts[name] = f"beats random at every round (by {diff.min():+.4f} to {diff.max():+.4f} in median SC)"
        elif (diff <= 0).all():
            verdicts[name] = f"does not beat random at any round ({diff.min():+.4f} to {diff.max():+.4f})"
        else:
            verdicts[name] = (f"beats random at {int((diff > 0).sum())} of {len(diff)} rounds "
                              f"({diff.min():+.4f} to {diff.max():+.4f})")
    return verdicts

