"""Deep ensembles: members that differ by seed (initialisation and data order; TL members all start from the
same IPA weights), trained in one command, calibrated on the validation set, saved as one loadable model.

    python -m optimate_pl strategy=tl data.subset=300 ensemble.size=5        # members one after another
    python -m optimate_pl -m strategy=tl ensemble.size=5 ensemble.member=0,1,2,3,4 launcher=slurm \\
        hydra.sweep.dir=ens hydra.sweep.subdir=member-\\${ensemble.member}   # one member per job ...
    python -m optimate_pl.uncertainty.ensemble ens                                      # ... then assemble them

The ensemble folder holds ``member-<i>/`` (each an ordinary run), ``ensemble.json`` (members, seeds,
calibration, test summary: ``optimate_pl.load_model(folder)`` loads it), and the test report:
``uncertainty.csv``/``.md`` (coverage of the nominal 90 % band, rank correlation of the predicted
scalar uncertainty with the real 1 - SC), ``reliability.png``/``.pdf`` and ``ensemble_test_results.csv``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from ..config import derive_config
from ..data.cache import source_label
from ..utils.atomic import atomic_write_text
from ..models.card import ENSEMBLE_CARD, package_version
from ..spectra.calibration import band, calibrate, coverage, expected_sc_error, reliability, spearman

log = logging.getLogger("optimate_pl")


def member_config(cfg: DictConfig, member: int, folder: Path) -> DictConfig:
    """Member ``member`` of the ensemble: seed ``seed + member``, output ``folder/member-<member>``. With
    ``ckpt_path=last`` a member resumes from its own ``last.ckpt`` (none: it starts), never another run's."""
    out = folder / f"member-{member}"
    changes = {"seed": int(cfg.seed) + member, "paths.output_dir": str(out), "ensemble.member": member}
    if cfg.get("ckpt_path") == "last":
        own = out / "checkpoints" / "last.ckpt"
        changes["ckpt_path"] = str(own) if own.is_file() else None
    return derive_config(cfg, changes)


#: What a finished member must share with the member to train for it to be kept (a rerun of an interrupted
#: ensemble trains only the members that are missing).
MEMBER_KEYS = ("seed", "model", "optimizer", "scheduler", "strategy", "trainer.max_epochs", "trainer.max_steps",
               "data.source", "data.root", "data.subset", "data.target", "data.split")


def finished_member(member: DictConfig) -> bool:
    """Whether the member's folder holds a finished run (its metrics.json) of the same settings (:data:`MEMBER_KEYS`)."""
    out = Path(member.paths.output_dir)
    if not (out / "metrics.json").is_file() or not (out / "config.yaml").is_file():
        return False
    saved = OmegaConf.load(out / "config.yaml")

    def plain(c, key):  # a key set to null is one not there (a config that gained e.g. strategy.checkpoint: null)
        value = OmegaConf.select(c, key, default=None)
        value = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
        return {k: v for k, v in value.items() if v is not None} if isinstance(value, dict) else value

    return all(plain(saved, k) == plain(member, k) for k in MEMBER_KEYS)


def train_ensemble(cfg: DictConfig, init_weights: Path | None) -> dict[str, Any]:
    """Train the members (all of them, or only ``ensemble.member``), then assemble when all are there."""
    from ..config import ConfigError
    from ..training.train import train

    size = int(cfg.ensemble.size)
    if cfg.data.target != "eps_imag":
        raise ConfigError("ensemble.size > 1 gives uncertainty bands for spectra (data.target=eps_imag)")
    only = cfg.ensemble.get("member")
    folder = Path(cfg.paths.output_dir)
    if only is not None:  # one job of a launcher: its member, in this job's own folder
        folder = folder.parent
        if not 0 <= int(only) < size:
            raise ConfigError(f"ensemble.member={only}: must be between 0 and ensemble.size - 1 = {size - 1}")
    members = [int(only)] if only is not None else list(range(size))
    for m in members:
        member = member_config(cfg, m, folder)
        if finished_member(member):
            log.info("ensemble: member %d of %d finished already in %s: kept (remove the folder to train it anew)",
                     m + 1, size, member.paths.output_dir)
            continue
        log.info("ensemble: member %d of %d (seed %d)", m + 1, size, int(cfg.seed) + m)
        train(member, init_weights=init_weights)
    finished = len(list(folder.glob("member-*/metrics.json")))
    if finished < size:
        log.info("ensemble: %d of %d members in %s; assemble them with `python -m optimate_pl.uncertainty.ensemble %s`",
                 finished, size, folder, folder)
        return {"objective": None}
    return assemble(folder, size)


@torch.no_grad()
def member_predictions(model, dataset, batch_size: int = 256) -> torch.Tensor:
    """Every member's prediction [members, n, points] on a dataset."""
    return torch.cat([model.members(b).cpu() for b in dataset.batches(batch_size)], dim=1)


def assemble(folder: str | Path, size: int | None = None) -> dict[str, Any]:
    """Calibrate the members of ``folder`` on the validation set, report on the test set, write the card."""
    import hydra.utils

    from ..spectra.metrics import median, similarity_coefficient, spectral_mse
    from ..inference.predictor import load_model

    folder = Path(folder)
    runs = sorted(folder.glob("member-*/metrics.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    if not runs or (size is not None and len(runs) < size):
        raise FileNotFoundError(f"{folder}: {len(runs)} finished members (member-<i>/metrics.json), "
                                f"{size or 'at least 1'} needed")
    metrics = [json.loads(p.read_text()) for p in runs]
    checkpoints = [Path(m["best_checkpoint"]) for m in metrics]
    cfg = OmegaConf.load(runs[0].parent / "config.yaml")
    members = [{"checkpoint": str(c.relative_to(folder)) if c.is_relative_to(folder) else str(c),
                "seed": int(OmegaConf.load(p.parent / "config.yaml").seed)} for c, p in zip(checkpoints, runs)]
    model = load_model(checkpoints)
    dm = hydra.utils.instantiate(cfg.data, _convert_="all")
    dm.setup()
    val, test = member_predictions(model, dm.val_set), member_predictions(model, dm.test_set)
    y_val, y = dm.val_set.targets, dm.test_set.targets
    val_mean, val_std = val.mean(0), val.std(0, unbiased=False)
    cal = calibrate(y_val, val_mean, val_std)
    mean, std = test.mean(0), test.std(0, unbiased=False)
    lower, upper = band(mean, std, cal)
    real_error = 1.0 - similarity_coefficient(mean, y)
    predicted = expected_sc_error(mean, std, cal)
    member_sc = [float(median(similarity_coefficient(p, y))) for p in test]
    summary = {
        "members": len(members), "level": cal.level, "test_coverage": coverage(y, lower, upper),
        "spearman_expected_vs_real_sc_error": spearman(predicted, real_error),
        "test_sc_median_ensemble": float(median(1.0 - real_error)), "test_mse_median_ensemble":
            float(median(spectral_mse(mean, y))), "test_sc_median_members_mean": float(np.mean(member_sc)),
        "val_sc_median_ensemble": float(median(similarity_coefficient(val_mean, y_val))),
        "median_expected_sc_error": float(median(predicted)), "median_real_sc_error": float(median(real_error)),
    }
    rows = reliability((y_val, val_mean, val_std), (y, mean, std), cal)
    card = {"kind": "ensemble", "optimate_pl_version": package_version(), "members": members,
            "calibration": cal.to_dict(), "test": summary, "target": "eps_imag",
            "data": (metrics[0].get("data") or {})}
    atomic_write_text(json.dumps(card, indent=2, default=str) + "\n", folder / ENSEMBLE_CARD)
    write_report(folder, summary, rows, predicted.numpy(), real_error.numpy(), dm.test_set, cfg.data.source,
                 cfg.data.get("root"))
    log.info("ensemble of %d in %s: the %.0f %% band covers %.1f %% of the test points; Spearman(expected, real "
             "1 - SC) = %.2f", len(members), folder, 100 * cal.level, 100 * summary["test_coverage"],
             summary["spearman_expected_vs_real_sc_error"])
    return {**summary, "objective": summary["val_sc_median_ensemble"], "val/sc_median": summary["val_sc_median_ensemble"],
            "folder": str(folder)}


def write_report(folder: Path, summary: dict[str, Any], rows: list[dict], predicted: np.ndarray, real: np.ndarray,
                 test_set, source: str, root: str | None = None) -> None:
    """The test report of an ensemble: the summary table, the reliability plot, per-material results."""
    from ..utils.plots import plt, save_with_statement

    statement = source_label(source, root)  # SYNTHETIC, GPAW-computed or the authors' databases: never just "real"
    table = pd.DataFrame([summary])
    atomic_write_text(table.to_csv(index=False), folder / "uncertainty.csv")
    atomic_write_text(f"Data: {statement}.\n\n{table.T.to_markdown(floatfmt='.4f')}\n\n"
                      f"{pd.DataFrame(rows).to_markdown(index=False, floatfmt='.3f')}\n", folder / "uncertainty.md")
    atomic_write_text(pd.DataFrame({"mat_id": test_set.mat_ids, "expected_sc_error": predicted,
                                    "real_sc_error": real}).to_csv(index=False), folder / "ensemble_test_results.csv")
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.6))
    nominal = [r["nominal"] for r in rows]
    a.plot([0, 1], [0, 1], "k--", lw=0.8)
    a.plot(nominal, [r["observed"] for r in rows], "o-", color="tab:blue")
    a.set(xlabel="nominal coverage of the band", ylabel="observed on the test set", xlim=(0, 1), ylim=(0, 1),
          title="band calibration (points)")
    bins = np.quantile(predicted, np.linspace(0, 1, 11))
    which = np.clip(np.digitize(predicted, bins[1:-1]), 0, 9)
    xs = [predicted[which == i].mean() for i in range(10) if np.any(which == i)]
    ys = [real[which == i].mean() for i in range(10) if np.any(which == i)]
    b.scatter(predicted, real, s=3, alpha=0.3, color="tab:gray")
    b.plot(xs, ys, "o-", color="tab:orange", label="deciles")
    top = float(max(predicted.max(), real.max()))
    b.plot([0, top], [0, top], "k--", lw=0.8)
    b.set(xlabel="expected SC error (ensemble)", ylabel="real 1 - SC", title=f"Spearman {summary['spearman_expected_vs_real_sc_error']:.2f}")
    b.legend(fontsize=7)
    fig.tight_layout()
    save_with_statement(fig, folder, "reliability", statement, dpi=130)


def main(argv: list[str] | None = None) -> None:
    """``python -m optimate_pl.uncertainty.ensemble FOLDER``: assemble (calibrate, report) the members trained as
    separate jobs."""
    from ..utils.tool import run_tool, tool_parser

    parser = tool_parser("python -m optimate_pl.uncertainty.ensemble", main.__doc__)
    parser.add_argument("folder", help="a folder of member-<i>/ runs")
    args = parser.parse_args(argv)
    summary = run_tool(lambda: assemble(args.folder), args)
    print(json.dumps({k: v for k, v in summary.items() if k != "objective"}, indent=2))


if __name__ == "__main__":
    main()
