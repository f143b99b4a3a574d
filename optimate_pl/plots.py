"""Figures written by training runs (the studies have their own in :mod:`optimate_pl.studies`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from .atomic import atomic_open  # noqa: E402
from .data.records import ENERGY_GRID  # noqa: E402

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def quantile_rows(rows: list[dict[str, Any]], key: str = "sc", quantiles=QUANTILES) -> list[dict[str, Any]]:
    """The rows whose ``key`` sits at each quantile of that column (nearest rank)."""
    ordered = sorted(rows, key=lambda r: r[key])
    return [ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] for q in quantiles]


def save_figure(fig, path: Path, dpi: int = 130, close: bool = True) -> Path:
    """Save a figure atomically in the format its suffix names (png, pdf, ...); then close it."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip("."), dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return path


@torch.no_grad()
def plot_quantile_spectra(module, dataset, rows: list[dict[str, Any]], path: str | Path, synthetic: bool = False) -> Path:
    """Predicted vs DFT (or synthetic target) and IPA-baseline spectra for test materials at the 10%...90% SC quantiles."""
    picks = quantile_rows(rows)
    index = {m: k for k, m in enumerate(dataset.mat_ids)}
    batch = dataset.collate([index[r["mat_id"]] for r in picks])
    was_training = module.training
    module.eval()
    pred = module(batch.to(module.device)).float().cpu().numpy()
    module.train(was_training)
    fig, axes = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
    target_label = "target (synthetic)" if synthetic else "DFT"
    for k, (ax, q, r, p, y) in enumerate(zip(axes.flat, QUANTILES, picks, pred, batch.y.numpy())):
        ax.plot(ENERGY_GRID, y, color="k", lw=1.5, label=target_label)
        ax.plot(ENERGY_GRID, p, color="tab:red", lw=1.2, label="ML")
        if getattr(batch, "ipa", None) is not None:
            ax.plot(ENERGY_GRID, batch.ipa[k].numpy(), color="tab:blue", lw=1, ls="--", label="IPA")
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
