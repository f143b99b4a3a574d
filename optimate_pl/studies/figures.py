"""The paper's figures, drawn from plain arrays and tables (the reports gather the data).

Colours, bins and layouts follow the authors' figures: DL in green, TL in orange, TL on small cells
in blue; 2-D histograms on 50 bins over [0, 1] in blues with the diagonal dashed.
"""
from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from ..utils.plots import plt

DL, TL, SMALL = "limegreen", "tab:orange", "tab:blue"
BINS = np.linspace(0, 1, 51)
#: Fig. 3 bottom boxes cells of 3-8 sites only, as the authors' notebook (its ``list_of_lists[2..7]``);
#: the 1- and 2-site cells are given in a note on the panel.
BOXED_SITES = range(3, 9)


def subscripts(formula: str) -> str:
    """``Al2O3`` -> mathtext with subscripted counts."""
    return re.sub(r"(\d+)", r"$_{\1}$", formula)


def example_spectra(energy: np.ndarray, panels: list[dict[str, Any]], styles: dict[str, tuple[str, str, float]]) -> Any:
    """Fig. 2: test materials at the 10-90 % quantiles of SC[IPA;RPA]; IPA and RPA (DFT), DL and TL at two sizes.

    ``panels``: dicts with ``quantile``, ``formula``, ``mat_id``, ``baseline`` (the material's SC[IPA;RPA], the
    quantity of the quantiles), ``sc`` (model label -> the model's SC on it) and ``curves`` (label -> spectrum);
    ``styles``: label -> (colour, line style, line width), line styles that differ without colour too.
    Each panel names its material (formula and id: polymorphs share a formula) and prints each model's SC.
    """
    fig, axes = plt.subplots(3, 3, figsize=(10.5, 7.5), sharex=True)
    handles = {}
    window = energy <= 10.0
    for ax, panel in zip(axes.flat, panels):
        for label, curve in panel["curves"].items():
            colour, ls, lw = styles[label]
            handles[label] = ax.plot(energy, curve, color=colour, ls=ls, lw=lw, label=label)[0]
        ax.set_xlim(0, 10)
        # The y range of what is shown (0-10 eV), not of the whole window: no half-empty panels.
        top = max(float(np.max(np.asarray(c)[window])) for c in panel["curves"].values())
        ax.set_ylim(0, top * 1.35 if top > 0 else 1)
        ax.annotate(f"{subscripts(panel['formula'])}  {panel.get('mat_id', '')}", xy=(1, 1), xycoords="axes fraction",
                    xytext=(-4, -4), textcoords="offset points", ha="right", va="top", fontsize=7)
        lines = [f"$Q_{{{int(round(panel['quantile'] * 100))}\%}}$: SC[IPA;RPA] {panel['baseline']:.2f}"
                 if "baseline" in panel else f"$Q_{{{int(round(panel['quantile'] * 100))}\%}}$"]
        lines += [f"{label} {sc:.2f}" for label, sc in (panel.get("sc") or {}).items()]
        ax.text(0.03, 0.97, "\n".join(lines), transform=ax.transAxes, fontsize=6, va="top", ha="left")
    fig.supxlabel("Energy (eV)")
    fig.supylabel(r"Im $\overline{\varepsilon}$")
    fig.suptitle("Test materials at the 10-90 % quantiles of SC[IPA;RPA] (the IPA baseline); SC of each model "
                 "in each panel", fontsize=9)
    fig.legend(handles=list(handles.values()), loc="center left", bbox_to_anchor=(0.99, 0.5), frameon=False)
    fig.tight_layout()
    return fig


def efficiency(table: pd.DataFrame, baseline: dict[str, float], small: pd.DataFrame | None = None,
               by_sites: tuple[np.ndarray, np.ndarray] | None = None,
               published: dict[str, pd.DataFrame] | None = None) -> Any:
    """Fig. 3: median SC (top) and MSE (middle, log) against training-set size for DL, TL and TL on small
    cells (at their sizes, labelled by max sites), the IPA baseline as a line; bottom: SC of the TL model
    trained on cells of at most 4 sites by the test material's site count (boxes for 3-8 sites, as the
    authors drew them; 1-2 sites in a note), over the test set's histogram.

    ``published`` (real data): the paper's curves, drawn faint for comparison.
    """
    rows = 3 if by_sites is not None else 2
    fig, axes = plt.subplots(rows, 1, figsize=(4.2, 3.0 * rows))
    for ax, key, label in ((axes[0], "sc", "median SC[RPA$_{ML}$;RPA$_{DFT}$]"),
                           (axes[1], "mse", "median MSE[RPA$_{ML}$;RPA$_{DFT}$]")):
        for strategy, colour, name in (("dl", DL, "Direct learning"), ("tl", TL, "Transfer learning")):
            # Several seeds of a size: their mean, with a bar from the lowest to the highest seed.
            agg = table[table.strategy == strategy].groupby("train_size")[f"{key}_median"].agg(
                ["mean", "min", "max", "count"]).sort_index()
            seeds = int(agg["count"].max()) if len(agg) else 1
            ax.errorbar(agg.index, agg["mean"], yerr=[agg["mean"] - agg["min"], agg["max"] - agg["mean"]],
                        marker="*", color=colour, capsize=2,
                        label=name + (f" (mean of {seeds} seeds, bar: range)" if seeds > 1 else " (one seed)"))
            if published is not None:
                pub = published[strategy]
                ax.plot(pub.train_size, pub[key], ls=":", color=colour, alpha=0.5, label=f"{name} (paper)")
        if small is not None and len(small):
            s = small.sort_values("train_size")
            ax.plot(s.train_size, s[f"{key}_median"], marker="*", color=SMALL, label="TL on small cells")
            for _, r in s.iterrows():
                ax.annotate(str(int(r.max_sites)), xy=(r.train_size, r[f"{key}_median"]), fontsize=7,
                            xytext=(2, -9 if key == "sc" else 3), textcoords="offset points")
        ax.axhline(baseline[key], color="k", ls="--", label="IPA baseline")
        ax.set_xscale("log")
        ax.set(xlabel="Training set size", ylabel=label)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    if by_sites is not None:
        nsites, sc = by_sites
        ax = axes[2]
        hist = ax.twinx()
        hist.set_zorder(0)
        ax.set_zorder(1)
        ax.patch.set_alpha(0)
        present = sorted(set(int(n) for n in nsites))
        sizes = [n for n in present if n in BOXED_SITES]
        if sizes:
            ax.boxplot([sc[nsites == n] for n in sizes], positions=sizes, showfliers=False)
        hist.hist(nsites, bins=np.arange(0.5, max(present) + 1.5), color=SMALL, alpha=0.5)
        unboxed = [f"{n} site{'s' if n > 1 else ''}: median {np.median(sc[nsites == n]):.3f} (n={int((nsites == n).sum())})"
                   for n in present if n < BOXED_SITES[0]]
        if unboxed:
            ax.text(0.01, 0.02, "not boxed, as in the paper: " + "; ".join(unboxed), transform=ax.transAxes,
                    fontsize=6, va="bottom")
        hist.set_ylabel("occurrence in test set")
        ax.set(xlabel="Atoms per unit cell", ylabel="SC[RPA$_{ML}$;RPA$_{DFT}$] (TL, cells ≤ 4 sites)")
    fig.tight_layout()
    return fig


def _hist2d(ax, x: np.ndarray, y: np.ndarray) -> None:
    ax.hist2d(x, y, bins=BINS, cmap="Blues")
    ax.plot([0, 1], [0, 1], color="tab:orange", ls="--", alpha=0.7)
    outside = int(np.sum((x < 0) | (x > 1) | (y < 0) | (y > 1)))
    if outside:
        ax.annotate(f"{outside} outside [0, 1]", xy=(0.98, 0.03), xycoords="axes fraction", ha="right", fontsize=6)


def correlations(dl: np.ndarray, tl: np.ndarray, ipa_dft: np.ndarray, ipa_ml: np.ndarray | None) -> Any:
    """Fig. 4 (and its SI companion): 2-D histograms of SC[RPA_DL;RPA_DFT] and SC[RPA_TL;RPA_DFT] against
    SC[IPA_DFT;RPA_DFT] (middle row) and SC[IPA_ML;IPA_DFT] (bottom row), with marginal histograms."""
    rows = 3 if ipa_ml is not None else 2
    fig, axes = plt.subplots(rows, 3, figsize=(6.75, 6 if rows == 3 else 3.6),
                             gridspec_kw={"width_ratios": [2, 2, 0.4], "height_ratios": [0.4, 2, 2][:rows]})
    axes[0, 0].hist(dl, bins=BINS, color="tab:blue")
    axes[0, 1].hist(tl, bins=BINS, color="tab:blue")
    axes[0, 2].axis("off")
    ys = [("SC[IPA$_{DFT}$;RPA$_{DFT}$]", ipa_dft)] + ([("SC[IPA$_{ML}$;IPA$_{DFT}$]", ipa_ml)] if ipa_ml is not None
                                                      else [])
    for row, (label, y) in enumerate(ys, start=1):
        _hist2d(axes[row, 0], dl, y)
        _hist2d(axes[row, 1], tl, y)
        axes[row, 2].hist(y, bins=BINS, orientation="horizontal", color="tab:blue")
        axes[row, 2].set_ylim(0, 1)
        axes[row, 0].set_ylabel(label)
    for ax in axes[0, :2]:
        ax.set_xlim(0, 1)
    axes[-1, 0].set_xlabel("SC[RPA$_{DL}$;RPA$_{DFT}$]")
    axes[-1, 1].set_xlabel("SC[RPA$_{TL}$;RPA$_{DFT}$]")
    fig.tight_layout()
    return fig


def dl_vs_tl(pairs: dict[int, tuple[np.ndarray, np.ndarray]]) -> Any:
    """Fig. 5: SC of TL against SC of DL, per material, one panel per training-set size."""
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.4 * len(pairs), 3.2), squeeze=False)
    for ax, (size, (dl, tl)) in zip(axes[0], sorted(pairs.items())):
        _hist2d(ax, dl, tl)
        ax.set(xlabel="SC[RPA$_{DL}$;RPA$_{DFT}$]", ylabel="SC[RPA$_{TL}$;RPA$_{DFT}$]", title=f"N = {size}")
    fig.tight_layout()
    return fig


def qw_parity(panels: dict[str, tuple[np.ndarray, np.ndarray]]) -> Any:
    """SI: integrated weight QW = ∫ Im ε dω of the predictions against DFT, one panel per model."""
    n = len(panels)
    cols = 2 if n > 1 else 1
    fig, axes = plt.subplots(-(-n // cols), cols, figsize=(3.4 * cols, 3.2 * -(-n // cols)), squeeze=False)
    for ax, (title, (dft, ml)) in zip(axes.flat, panels.items()):
        ax.scatter(dft, ml, s=2, color="tab:blue")
        top = float(max(dft.max(), ml.max())) * 1.05
        ax.plot([0, top], [0, top], color="tab:orange")
        ax.set(xlim=(0, top), ylim=(0, top), xlabel="QW$_{DFT}$ (eV)", ylabel="QW$_{ML}$ (eV)", title=title)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def sc_parity(true: np.ndarray, pred: np.ndarray) -> Any:
    """Fig. 6: the SC[RPA;IPA] predictor against DFT, as a 2-D histogram, with its mean/median absolute error."""
    lo = float(min(0.18, true.min(), pred.min()))
    bins = np.linspace(lo, 1, 50)
    fig, ax = plt.subplots(figsize=(3.6, 3.4))
    ax.hist2d(true, pred, bins=bins, cmap="Blues")
    ax.plot([0, 1], [0, 1], color="tab:orange", ls="--", lw=1)
    err = np.abs(true - pred)
    ax.set(xlim=(lo, 1), ylim=(lo, 1), xlabel="SC[RPA$_{DFT}$;IPA$_{DFT}$]", ylabel="model prediction",
           title=f"mean |Δ| {err.mean():.3f}, median |Δ| {np.median(err):.3f}")
    fig.tight_layout()
    return fig


def latent_map(embedding: np.ndarray, sc: np.ndarray) -> Any:
    """Fig. 7: UMAP of the SC model's pooled latents, coloured by SC[RPA;IPA] (low SC drawn larger)."""
    fig, ax = plt.subplots(figsize=(6.75, 3.4))
    points = ax.scatter(embedding[:, 0], embedding[:, 1], c=sc, s=np.exp(5 * (1 - np.clip(sc, 0, 1))), cmap="jet")
    bar = fig.colorbar(points)
    bar.set_label("SC[RPA;IPA]", rotation=270, labelpad=15)
    ax.set(xlabel="UMAP component 1", ylabel="UMAP component 2")
    fig.tight_layout()
    return fig
