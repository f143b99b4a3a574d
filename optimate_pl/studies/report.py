"""Report steps of the paper's studies: run outputs -> tables (CSV + Markdown) and figures (PNG + PDF).

    python -m optimate_pl.studies efficiency  studies/efficiency/runs  --out studies/efficiency
    python -m optimate_pl.studies small_cells studies/small_cells/runs --out studies/small_cells
    python -m optimate_pl.studies correlations studies/efficiency/runs --out studies/correlations
    python -m optimate_pl.studies spectra     studies/efficiency/runs --out studies/spectra [--size 300]
    python -m optimate_pl.studies sc_predictor studies/sc_model/run   --out studies/sc_model
    python -m optimate_pl.studies latent      studies/sc_model/run    --out studies/sc_model
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from ..atomic import atomic_write_text
from ..plots import QUANTILES, plt, quantile_rows, save_figure

PUBLISHED = "Published real-data values are in docs/domain.md §8 and the paper; these runs are on {source} data."


def load_runs(root: str | Path) -> list[dict[str, Any]]:
    """Every finished run below ``root``: its resolved config, metrics and directory."""
    runs = []
    for metrics_path in sorted(Path(root).rglob("metrics.json")):
        run_dir = metrics_path.parent
        if not (run_dir / "config.yaml").is_file():
            continue
        cfg = OmegaConf.load(run_dir / "config.yaml")
        runs.append({"dir": run_dir, "cfg": cfg, "metrics": json.loads(metrics_path.read_text())})
    if not runs:
        raise FileNotFoundError(f"no finished runs (metrics.json + config.yaml) below {root}")
    return runs


def _source(runs: list[dict]) -> str:
    return "SYNTHETIC" if any(r["cfg"].data.source == "synthetic" for r in runs) else "real (figshare)"


def write_table(df: pd.DataFrame, out: Path, name: str, note: str = "") -> None:
    """``name.csv`` and ``name.md`` (with a note line) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(df.to_csv(index=False), out / f"{name}.csv")
    md = df.to_markdown(index=False, floatfmt=".4f")
    atomic_write_text((f"{note}\n\n" if note else "") + md + "\n", out / f"{name}.md")


def save_png_pdf(fig, out: Path, name: str, source: str) -> None:
    """Save a figure as PNG and PDF; synthetic figures say so."""
    if source == "SYNTHETIC":
        fig.suptitle("SYNTHETIC data (generated, not physics)", color="tab:red", fontsize=10)
    save_figure(fig, out / f"{name}.png", dpi=150, close=False)
    save_figure(fig, out / f"{name}.pdf", dpi=150)


# -- study 1: data efficiency ----------------------------------------------------------------

def efficiency(root: str | Path, out: str | Path) -> pd.DataFrame:
    """Median SC / MSE vs training-set size for DL and TL, IPA baseline as a line (Fig. 3 top/middle)."""
    runs, out = load_runs(root), Path(out)
    rows = [{"strategy": r["cfg"].strategy.name, "train_size": r["metrics"].get("n_train"),
             "sc_median": r["metrics"].get("test/sc_median"), "mse_median": r["metrics"].get("test/mse_median"),
             "ipa_sc_median": r["metrics"].get("test/ipa_sc_median"),
             "ipa_mse_median": r["metrics"].get("test/ipa_mse_median"), "time_s": r["metrics"].get("time_s")}
            for r in runs if r["cfg"].strategy.name in ("dl", "tl")]
    df = pd.DataFrame(rows).sort_values(["strategy", "train_size"]).reset_index(drop=True)
    source = _source(runs)
    write_table(df, out, "efficiency", PUBLISHED.format(source=source))
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, base, label in ((axes[0], "sc_median", "ipa_sc_median", "median SC"),
                                 (axes[1], "mse_median", "ipa_mse_median", "median MSE")):
        for strategy, color in (("dl", "tab:orange"), ("tl", "tab:blue")):
            sub = df[df.strategy == strategy]
            ax.plot(sub.train_size, sub[key], "o-", color=color, label=strategy.upper())
        ax.axhline(df[base].median(), color="k", ls="--", label="IPA baseline")
        ax.set_xscale("log")
        ax.set_xlabel("training materials")
        ax.set_ylabel(label)
    axes[0].legend()
    save_png_pdf(fig, out, "efficiency", source)
    return df


# -- study 2: small cells --------------------------------------------------------------------

def small_cells(root: str | Path, out: str | Path) -> pd.DataFrame:
    """TL trained on cells of at most K sites: medians vs K, and test SC by number of sites (Fig. 3 bottom)."""
    runs, out = load_runs(root), Path(out)
    runs = [r for r in runs if r["cfg"].data.get("max_sites")]
    rows = [{"max_sites": r["cfg"].data.max_sites, "train_size": r["metrics"].get("n_train"),
             "sc_median": r["metrics"].get("test/sc_median"), "mse_median": r["metrics"].get("test/mse_median"),
             "ipa_sc_median": r["metrics"].get("test/ipa_sc_median")} for r in runs]
    df = pd.DataFrame(rows).sort_values("max_sites").reset_index(drop=True)
    source = _source(runs)
    write_table(df, out, "small_cells", PUBLISHED.format(source=source))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(df.max_sites, df.sc_median, "o-", label="TL (small cells)")
    axes[0].axhline(df.ipa_sc_median.median(), color="k", ls="--", label="IPA baseline")
    axes[0].set_ylabel("median SC")
    axes[0].legend()
    axes[1].plot(df.max_sites, df.mse_median, "o-")
    axes[1].set_ylabel("median MSE")
    for ax in axes[:2]:
        ax.set_xlabel("max sites in training cells")
    largest = max(runs, key=lambda r: r["cfg"].data.max_sites)
    per = pd.read_csv(largest["dir"] / "test_results.csv")
    groups = sorted(per.nsites.unique())
    axes[2].boxplot([per[per.nsites == n].sc for n in groups])
    axes[2].set_xticks(range(1, len(groups) + 1), [str(n) for n in groups])
    axes[2].set_xlabel("sites in the test material's cell")
    axes[2].set_ylabel(f"SC (TL, max_sites={largest['cfg'].data.max_sites})")
    save_png_pdf(fig, out, "small_cells", source)
    return df


# -- study 3: correlations -------------------------------------------------------------------

def _per_material(runs: list[dict], strategy: str, size: int) -> pd.DataFrame | None:
    for r in runs:
        if r["cfg"].strategy.name == strategy and r["metrics"].get("n_train") == size:
            return pd.read_csv(r["dir"] / "test_results.csv")
    return None


def correlations(root: str | Path, out: str | Path) -> pd.DataFrame:
    """2-D histograms of per-material SC: TL vs DL and ML (TL) vs the IPA baseline, per size (Figs. 4-5)."""
    runs, out = load_runs(root), Path(out)
    sizes = sorted({r["metrics"].get("n_train") for r in runs if r["cfg"].strategy.name == "tl"})
    pairs = [(s, _per_material(runs, "tl", s), _per_material(runs, "dl", s)) for s in sizes]
    pairs = [(s, tl, dl) for s, tl, dl in pairs if tl is not None and dl is not None]
    if not pairs:
        raise FileNotFoundError(f"no training size with both a TL and a DL run below {root}")
    fig, axes = plt.subplots(2, len(pairs), figsize=(4 * len(pairs), 8), squeeze=False)
    rows = []
    for col, (size, tl, dl) in enumerate(pairs):
        m = tl.merge(dl, on="mat_id", suffixes=("_tl", "_dl"))
        bins = np.linspace(min(0, m[["sc_tl", "sc_dl", "ipa_sc_tl"]].min().min()), 1, 40)
        axes[0, col].hist2d(m.sc_dl, m.sc_tl, bins=bins, cmap="viridis", cmin=1)
        axes[0, col].set(xlabel="SC DL", ylabel="SC TL", title=f"{size} training materials")
        axes[1, col].hist2d(m.ipa_sc_tl, m.sc_tl, bins=bins, cmap="viridis", cmin=1)
        axes[1, col].set(xlabel="SC[IPA; RPA] baseline", ylabel="SC TL")
        for ax in axes[:, col]:
            ax.plot([bins[0], 1], [bins[0], 1], "w--", lw=0.8)
        rows.append({"train_size": size, "pearson_tl_dl": float(np.corrcoef(m.sc_tl, m.sc_dl)[0, 1]),
                     "pearson_tl_ipa": float(np.corrcoef(m.sc_tl, m.ipa_sc_tl)[0, 1]),
                     "tl_better_than_dl": float((m.sc_tl > m.sc_dl).mean()),
                     "tl_better_than_ipa": float((m.sc_tl > m.ipa_sc_tl).mean())})
    source = _source(runs)
    df = pd.DataFrame(rows)
    write_table(df, out, "correlations", PUBLISHED.format(source=source))
    save_png_pdf(fig, out, "correlations", source)
    return df


# -- study 6: example spectra ----------------------------------------------------------------

def spectra(root: str | Path, out: str | Path, size: int | None = None) -> pd.DataFrame:
    """DL vs TL vs IPA vs RPA for test materials at the 10-90% quantiles of the TL SC (Fig. 2)."""
    import hydra.utils
    import torch

    from ..data.records import ENERGY_GRID
    from ..models import SpectraModule

    runs, out = load_runs(root), Path(out)
    sizes = sorted({r["metrics"].get("n_train") for r in runs if r["cfg"].strategy.name == "tl"})
    size = size or (300 if 300 in sizes else sizes[0])
    pick = {s: next(r for r in runs if r["cfg"].strategy.name == s and r["metrics"].get("n_train") == size)
            for s in ("tl", "dl")}
    tl_rows = pd.read_csv(pick["tl"]["dir"] / "test_results.csv").to_dict("records")
    chosen = quantile_rows(tl_rows)
    dm = hydra.utils.instantiate(pick["tl"]["cfg"].data, _convert_="all")
    dm.setup()
    index = {m: k for k, m in enumerate(dm.test_set.mat_ids)}
    batch = dm.test_set.collate([index[r["mat_id"]] for r in chosen])
    preds = {}
    for s, run in pick.items():
        ckpt = run["metrics"].get("best_checkpoint")
        if not ckpt:
            raise FileNotFoundError(f"run {run['dir']} has no checkpoint to predict with")
        module = SpectraModule.load_from_checkpoint(ckpt, weights_only=False).eval()
        with torch.no_grad():
            preds[s] = module(batch).float().numpy()

    fig, axes = plt.subplots(3, 3, figsize=(12, 9), sharex=True)
    for k, (ax, q, r) in enumerate(zip(axes.flat, QUANTILES, chosen)):
        ax.plot(ENERGY_GRID, batch.y[k].numpy(), "k", lw=1.5, label="RPA (DFT)")
        ax.plot(ENERGY_GRID, batch.ipa[k].numpy(), color="tab:gray", ls="--", lw=1, label="IPA (DFT)")
        ax.plot(ENERGY_GRID, preds["tl"][k], color="tab:blue", lw=1.2, label="TL")
        ax.plot(ENERGY_GRID, preds["dl"][k], color="tab:orange", lw=1.2, label="DL")
        ax.set_title(f"{r['formula']} ({int(q * 100)}%, SC_TL={r['sc']:.3f})", fontsize=9)
    axes.flat[0].legend(fontsize=8)
    save_png_pdf(fig, out, f"spectra_{size}", _source(runs))
    df = pd.DataFrame([{"quantile": q, "mat_id": r["mat_id"], "formula": r["formula"], "sc_tl": r["sc"]}
                       for q, r in zip(QUANTILES, chosen)])
    write_table(df, out, f"spectra_{size}")
    return df


# -- studies 4 and 5: the SC[RPA;IPA] predictor and its latent space -------------------------

def sc_predictor(run_dir: str | Path, out: str | Path) -> pd.DataFrame:
    """Parity plot of predicted vs true SC[RPA;IPA] and mean/median absolute error (Fig. 6)."""
    (run,), out = load_runs(run_dir)[:1], Path(out)
    per = pd.read_csv(run["dir"] / "test_results.csv")
    df = pd.DataFrame([{"n_test": len(per), "mean_abs_error": per.abs_error.mean(),
                        "median_abs_error": per.abs_error.median()}])
    source = _source([run])
    write_table(df, out, "sc_predictor", PUBLISHED.format(source=source))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(per.true, per.pred, s=6, alpha=0.6)
    lo, hi = min(per.true.min(), per.pred.min()), max(per.true.max(), per.pred.max())
    ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    ax.set(xlabel="SC[RPA; IPA] (DFT)", ylabel="SC[RPA; IPA] (predicted)",
           title=f"MAE {df.mean_abs_error[0]:.3f}, median AE {df.median_abs_error[0]:.3f}")
    save_png_pdf(fig, out, "sc_parity", source)
    return df


def latent(run_dir: str | Path, out: str | Path, n_neighbors: int = 30, min_dist: float = 0.1) -> pd.DataFrame:
    """UMAP of the SC model's pooled latents of the test set, coloured by true SC (Fig. 7); PNG + HTML."""
    import hydra.utils
    import torch

    from ..models import SpectraModule

    (run,), out = load_runs(run_dir)[:1], Path(out)
    module = SpectraModule.load_from_checkpoint(run["metrics"]["best_checkpoint"], weights_only=False).eval()
    dm = hydra.utils.instantiate(run["cfg"].data, _convert_="all")
    dm.setup()
    ds = dm.test_set
    with torch.no_grad():
        z = torch.cat([module.model.latents(ds.collate(range(i, min(len(ds), i + 256))))
                       for i in range(0, len(ds), 256)]).numpy()
    import umap

    emb = umap.UMAP(n_neighbors=min(n_neighbors, len(ds) - 1), min_dist=min_dist, random_state=0).fit_transform(z)
    df = pd.DataFrame({"mat_id": ds.mat_ids, "formula": [ds.store.formula[i] for i in ds.rows.tolist()],
                       "sc_true": ds.y[ds.rows].reshape(-1).numpy(), "umap_1": emb[:, 0], "umap_2": emb[:, 1]})
    source = _source([run])
    write_table(df, out, "latent_umap")
    fig, ax = plt.subplots(figsize=(6, 5))
    sc = ax.scatter(df.umap_1, df.umap_2, c=df.sc_true, s=8, cmap="viridis")
    fig.colorbar(sc, label="SC[RPA; IPA]")
    ax.set(xlabel="UMAP 1", ylabel="UMAP 2", title=f"SC model latents ({z.shape[1]}-d), test set")
    save_png_pdf(fig, out, "latent_umap", source)
    import plotly.express as px

    html = px.scatter(df, x="umap_1", y="umap_2", color="sc_true", hover_data=["formula", "mat_id"],
                      title=f"SC model latent space ({source} data)")
    atomic_write_text(html.to_html(include_plotlyjs=True), out / "latent_umap.html")
    return df


STUDIES = {"efficiency": efficiency, "small_cells": small_cells, "correlations": correlations,
           "spectra": spectra, "sc_predictor": sc_predictor, "latent": latent}


def main(argv: list[str] | None = None) -> None:
    """Command line of the report steps."""
    p = argparse.ArgumentParser(description="Turn study runs into tables and figures.")
    p.add_argument("study", choices=sorted(STUDIES))
    p.add_argument("runs", help="the study's run directory (multirun sweep dir, or the single run)")
    p.add_argument("--out", default=None, help="output folder (default: the runs' parent)")
    p.add_argument("--size", type=int, default=None, help="training size for the spectra study")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else Path(args.runs).parent
    kwargs = {"size": args.size} if args.study == "spectra" else {}
    df = STUDIES[args.study](args.runs, out, **kwargs)
    print(df.to_string(index=False))
    print(f"wrote tables and figures to {out}")
