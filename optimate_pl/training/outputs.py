"""What a run leaves behind: the per-material results table, the summary table, the spectra figure, the
training-set medians and the model cards beside its checkpoints.

Every column and summary row comes from the target's description (:mod:`optimate_pl.models.targets`).
"""
from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import DictConfig

from ..utils.atomic import atomic_write_text
from ..spectra.metrics import median
from ..models.card import make_card, write_card
from ..models.targets import Target
from ..utils.plots import QUANTILES, plt, quantile_rows, save_figure

if TYPE_CHECKING:
    from ..models.module import SpectraModule

log = logging.getLogger("optimate_pl")


def write_results_csv(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Write per-material test results (one row a material, quoted as CSV needs) atomically."""
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return atomic_write_text(buf.getvalue(), path)


def summarise_rows(rows: list[dict[str, Any]], spec: Target) -> dict[str, float]:
    """Medians (NumPy's) and means of the target's per-material columns, as the paper reports them."""
    out = {}
    for key in spec.columns():
        if rows and key in rows[0]:
            vals = torch.tensor([r[key] for r in rows], dtype=torch.float64)
            out[f"{key}_median"] = float(median(vals))
            out[f"{key}_mean"] = float(vals.mean())
    return out


def print_summary(cfg: DictConfig, spec: Target, metrics: dict[str, Any], n_test: int) -> None:
    """Test medians of the run (and the IPA baseline for RPA data) as a table on the console."""
    from rich.console import Console
    from rich.table import Table

    source = {"synthetic": "SYNTHETIC", "gpaw": "GPAW-computed (real physics)"}.get(cfg.data.source, cfg.data.source)
    kind = "IPA" if "IPA" in cfg.data._target_ else "RPA"
    title = (f"{cfg.strategy.name.upper()} on {source} {kind} data, train subset {cfg.data.subset or 'full'}"
             + (f", max_sites {cfg.data.max_sites}" if cfg.data.max_sites else "") + f" — test set of {n_test}")
    table = Table(title=title)
    for name, justify in (("metric", "left"), ("model", "right"), ("IPA baseline", "right")):
        table.add_column(name, justify=justify)
    for score in spec.scores:
        base = metrics.get(f"test/ipa_{score.key}_median")
        table.add_row(f"median {score.label}", f"{metrics[f'test/{score.key}_median']:.4f}",
                      "" if base is None else f"{base:.4f}")
    for key in spec.means:
        table.add_row(f"mean {spec.score(key).label}", f"{metrics[f'test/{key}_mean']:.4f}", "")
    Console().print(table)


@torch.no_grad()
def plot_quantile_spectra(module, dataset, rows: list[dict[str, Any]], path: str | Path, synthetic: bool = False) -> Path:
    """Predicted vs DFT (or synthetic target) and IPA-baseline spectra for test materials at the 10%...90% SC quantiles."""
    from ..spectra.grid import ENERGY_GRID

    picks = quantile_rows(rows)
    index = {m: k for k, m in enumerate(dataset.mat_ids)}
    batch = dataset.collate([index[r["mat_id"]] for r in picks])
    was_training = module.training
    module.eval()
    pred = module(batch.to(module.device)).float().cpu().numpy()
    module.train(was_training)
    fig, axes = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
    target_label = "target (synthetic)" if synthetic else "DFT"
    for k, (ax, q, r, p, y) in enumerate(zip(axes.flat, QUANTILES, picks, pred, batch.y.cpu().numpy())):
        ax.plot(ENERGY_GRID, y, color="k", lw=1.5, label=target_label)
        ax.plot(ENERGY_GRID, p, color="tab:red", lw=1.2, label="ML")
        if getattr(batch, "ipa", None) is not None:
            ax.plot(ENERGY_GRID, batch.ipa[k].cpu().numpy(), color="tab:blue", lw=1, ls="--", label="IPA")
        ax.set_title(f"{r['formula']} ({r['mat_id']})\n{int(q * 100)}% quantile, SC={r['sc']:.3f}", fontsize=9)
        ax.set_xlim(0, 20)
    for ax in axes[-1]:
        ax.set_xlabel("photon energy (eV)")
    for ax in axes[:, 0]:
        ax.set_ylabel("Im ε(ω)")
    axes.flat[0].legend(fontsize=8)
    if synthetic:
        fig.suptitle("SYNTHETIC data (generated, not physics)", color="tab:red")
    return save_figure(fig, Path(path))


def write_run_outputs(cfg: DictConfig, module, datamodule, metrics: dict, out: Path, loggers: list) -> None:
    """Per-material CSV, summary table, spectra figure; also to W&B when it is a logger."""
    from lightning.pytorch.loggers import WandbLogger

    rows, spec = module.test_rows, module.spec
    store = datamodule.store
    if store is not None and hasattr(datamodule, "origin_label"):  # where each test material comes from
        origin = dict(zip(store.mat_id, store.origin)) if store.origin else {}
        rows = [{**r, "origin": origin.get(r["mat_id"], datamodule.origin_label())} for r in rows]
    csv_path = write_results_csv(rows, out / "test_results.csv")
    metrics.update({f"test_rows/{k}": v for k, v in summarise_rows(rows, spec).items()})
    figure = None
    if spec.spectral and rows:
        figure = plot_quantile_spectra(module, datamodule.test_set, rows, out / "test_spectra.png",
                                       synthetic=cfg.data.source == "synthetic")
    print_summary(cfg, spec, metrics, len(rows))
    for lg in loggers:
        if isinstance(lg, WandbLogger):
            import pandas as pd
            import wandb

            lg.experiment.summary.update({k: v for k, v in metrics.items() if isinstance(v, float)})
            lg.log_table(key="test/per_material", dataframe=pd.DataFrame(rows))
            if figure:
                lg.experiment.log({"test/spectra": wandb.Image(str(figure))})
    log.info("wrote %s", csv_path)


@torch.no_grad()
def evaluate_medians(module: SpectraModule, dataset, prefix: str, batch_size: int = 256) -> dict[str, float]:
    """Medians of the target's scores of ``module`` (eval mode, fp32) on ``dataset``: ``<prefix>/<key>_median``.

    The paper's SI puts the training-set medians next to the test-set ones (does a model underfit?).
    """
    from ..spectra.metrics import median

    was_training = module.training
    module.eval()
    scores: dict[str, list] = {s.key: [] for s in module.spec.scores}
    for batch in dataset.batches(batch_size):
        batch = batch.to(module.device)
        with torch.autocast(module.device.type, enabled=False):
            pred = module(batch).float()
        for score in module.spec.scores:
            scores[score.key].append(module.test_metrics[score.key].per_sample(pred, batch.y).cpu())
    module.train(was_training)
    return {f"{prefix}/{k}_median": float(median(torch.cat(v))) for k, v in scores.items() if v}


def write_cards(ckpt_cb, module: SpectraModule, metrics: dict[str, Any]) -> None:
    """A model card beside the best and the last checkpoint of the run."""
    if ckpt_cb is None:
        return
    test = {k: v for k, v in metrics.items() if k.startswith("test/")}
    for path in {ckpt_cb.best_model_path, ckpt_cb.last_model_path} - {"", None}:
        if Path(path).is_file():
            write_card(path, make_card(dict(module.hparams), test, best=path == ckpt_cb.best_model_path))
