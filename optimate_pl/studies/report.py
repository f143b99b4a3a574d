"""The paper's studies as reports: runs -> tables (CSV + Markdown) and figures (PNG + PDF), one command each.

    python -m optimate_pl.studies efficiency        # Fig. 3 top/middle (+ small cells), SI tables and periodic tables
    python -m optimate_pl.studies small_cells       # Fig. 3 bottom, the small-cell table
    python -m optimate_pl.studies correlations      # Fig. 4 and its SI companion, Fig. 5, SI QW parity
    python -m optimate_pl.studies example_spectra   # Fig. 2
    python -m optimate_pl.studies sc_predictor      # Fig. 6
    python -m optimate_pl.studies latent_map        # Fig. 7 (PNG/PDF and interactive HTML)
    python -m optimate_pl.studies active_learning   # beyond the paper: the acquisition functions' curves
    python -m optimate_pl.studies gpaw_ladder       # the built-in GPAW ladder: SC[RPA;IPA] by chemistry, cost
    python -m optimate_pl.studies backbones         # beyond the paper: backbone x strategy x size over seeds
    python -m optimate_pl.uncertainty.next_rpa --model ENSEMBLE --acquisition disagreement   # the next RPA runs

Each reads the runs of its experiment preset (``experiments/<study>/runs`` by default) and writes into
``experiments/<study>/results``. Every table and figure states its data: SYNTHETIC, or the database
path and fingerprint; on real data the paper's numbers stand beside ours, with the difference.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..data.cache import source_label
from ..utils.atomic import atomic_write_text
from ..utils.plots import QUANTILES, plt
from . import figures, published
from .output import save, write_table
from .runs import (SYNTHETIC_STATEMENT, Run, StudyInputError, data_statement, is_real, load_runs, pick, predict,
                   split_arrays)


def _sizes(runs: list[Run], strategy: str) -> list[int]:
    return sorted({r.n_train for r in runs if r.strategy == strategy and not r.max_sites})


def _two_sizes(runs: list[Run]) -> list[int]:
    """The paper's 300 and 4610 where both DL and TL ran them, else the smallest and largest shared sizes."""
    shared = sorted(set(_sizes(runs, "dl")) & set(_sizes(runs, "tl")))
    if not shared:
        raise StudyInputError("no training-set size with both a DL and a TL run (python -m optimate_pl "
                              "experiment=efficiency)")
    wanted = [s for s in (300, 4610) if s in shared]
    return wanted if len(wanted) == 2 else sorted({shared[0], shared[-1]})


# -- the studies -------------------------------------------------------------------------------------------

def efficiency_table(runs: list[Run]) -> pd.DataFrame:
    """Test and training-set medians of every DL/TL run (the paper's Fig. 3 values and SI table)."""
    rows = []
    for r in runs:
        if r.strategy not in ("dl", "tl") or r.max_sites:
            continue
        m = r.metrics
        rows.append({"strategy": r.strategy, "train_size": r.n_train, "sc_median": m.get("test/sc_median"),
                     "mse_median": m.get("test/mse_median"), "mae_median": m.get("test/mae_median"),
                     "train_sc_median": m.get("train_eval/sc_median"), "train_mse_median": m.get("train_eval/mse_median"),
                     "train_mae_median": m.get("train_eval/mae_median"), "time_s": m.get("time_s")})
    df = pd.DataFrame(rows).sort_values(["strategy", "train_size"]).reset_index(drop=True)
    if is_real(runs):
        for key in ("sc", "mse"):
            df[f"paper_{key}"] = [published.EFFICIENCY.get(n, {}).get(s, {}).get(key) for s, n in
                                  zip(df.strategy, df.train_size)]
            df[f"diff_{key}"] = df[f"{key}_median"] - df[f"paper_{key}"]
    return df


def small_cells_table(runs: list[Run]) -> pd.DataFrame:
    rows = [{"max_sites": int(r.max_sites), "train_size": r.n_train, "sc_median": r.metrics.get("test/sc_median"),
             "mse_median": r.metrics.get("test/mse_median")} for r in runs if r.max_sites]
    if not rows:
        raise StudyInputError("no TL run on small cells (python -m optimate_pl experiment=small_cells)")
    df = pd.DataFrame(rows).sort_values("max_sites").reset_index(drop=True)
    if is_real(runs):
        for key in ("n_train", "sc", "mse"):
            df[f"paper_{key}"] = [published.SMALL_CELLS.get(k, {}).get(key) for k in df.max_sites]
        df["diff_sc"], df["diff_mse"] = df.sc_median - df.paper_sc, df.mse_median - df.paper_mse
    return df


def _baseline(runs: list[Run]) -> dict[str, float]:
    m = next(r.metrics for r in runs if "test/ipa_sc_median" in r.metrics)
    return {"sc": m["test/ipa_sc_median"], "mse": m["test/ipa_mse_median"]}


def _by_sites(small_runs: list[Run]) -> tuple[np.ndarray, np.ndarray] | None:
    """SC by the test material's site count, of the TL model trained on cells of at most 4 sites (or the nearest)."""
    candidates = [r for r in small_runs if r.max_sites]
    if not candidates:
        return None
    run = min(candidates, key=lambda r: abs(int(r.max_sites) - 4))
    return run.results.nsites.to_numpy(), run.results.sc.to_numpy()


def _published_curves() -> dict[str, pd.DataFrame]:
    return {s: pd.DataFrame([{"train_size": n, **v[s]} for n, v in published.EFFICIENCY.items()]) for s in ("dl", "tl")}


def efficiency(runs_dir: Path, out: Path, small_cells_dir: Path | None = None) -> list[Path]:
    """Fig. 3 (with the small-cell curve and bottom panel when those runs exist), the table of test and
    training-set medians, and the elements of the training and test sets on the periodic table."""
    from .periodic_table import draw_periodic_table, element_table

    runs = load_runs(runs_dir, "efficiency")
    statement = data_statement(runs)
    table = efficiency_table(runs)
    if table.empty:
        raise StudyInputError(f"no DL/TL run below {runs_dir} (python -m optimate_pl experiment=efficiency)")
    baseline = _baseline(runs)
    note = (f"IPA baseline: median SC {baseline['sc']:.4f}, MSE {baseline['mse']:.4f}"
            + (f" (paper: {published.IPA_BASELINE['sc']}, {published.IPA_BASELINE['mse']})." if is_real(runs) else "."))
    written = write_table(table, out, "efficiency", statement, note)
    small_runs = load_runs(small_cells_dir) if small_cells_dir and small_cells_dir.is_dir() and \
        list(small_cells_dir.rglob("metrics.json")) else []
    small = small_cells_table(small_runs) if small_runs else None
    fig = figures.efficiency(table, baseline, small, _by_sites(small_runs),
                             _published_curves() if is_real(runs) else None)
    written += save(fig, out, "efficiency", statement)
    # Elements of the training and test sets, and the median test SC of the largest TL model per element.
    largest = max((r for r in runs if r.strategy == "tl"), key=lambda r: r.n_train, default=None)
    if largest is not None:
        dm = largest.datamodule()
        train, test = split_arrays(dm.train_set), split_arrays(dm.test_set)
        fig, axes = plt.subplots(2, 1, figsize=(8, 6.5))
        for ax, (label, arrays) in zip(axes, ((f"training set ({len(train['formula'])})", train),
                                              (f"test set ({len(test['formula'])})", test))):
            draw_periodic_table(ax, element_table(arrays["formula"]), f"materials containing it, {label}")
        written += save(fig, out, "elements", statement)
        res = largest.results
        err = element_table(res.formula, res.sc, how="median")
        counts = element_table(res.formula)
        written += write_table(pd.DataFrame({"element": list(err), "n_test": [int(counts[e]) for e in err],
                                             "median_sc": list(err.values())}).sort_values("median_sc"),
                               out, "element_error", statement, f"TL model of {largest.n_train} materials.")
        fig, ax = plt.subplots(figsize=(8, 3.4))
        draw_periodic_table(ax, err, f"median test SC, TL {largest.n_train}", cmap="RdYlGn", fmt="{:.2f}")
        written += save(fig, out, "element_error", statement)
    return written


def small_cells(runs_dir: Path, out: Path) -> list[Path]:
    """The small-cell table (paper values beside on real data) and Fig. 3's bottom panel on its own."""
    runs = load_runs(runs_dir, "small_cells")
    statement = data_statement(runs)
    table = small_cells_table(runs)
    written = write_table(table, out, "small_cells", statement, "TL trained on cells of at most N sites; validation "
                                                                 "and test sets complete.")
    nsites, sc = _by_sites(runs)
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    hist = ax.twinx()
    sizes = sorted(set(int(n) for n in nsites))
    ax.set_zorder(1)
    ax.patch.set_alpha(0)
    ax.boxplot([sc[nsites == n] for n in sizes], positions=sizes, showfliers=False)
    hist.hist(nsites, bins=np.arange(0.5, max(sizes) + 1.5), color=figures.SMALL, alpha=0.5)
    hist.set_ylabel("occurrence in test set")
    ax.set(xlabel="Atoms per unit cell", ylabel="SC (TL, cells ≤ 4 sites)")
    fig.tight_layout()
    written += save(fig, out, "sc_by_sites", statement)
    return written


def _ipa_ml(tl_run: Run, dm) -> np.ndarray | None:
    """SC[IPA_ML; IPA_DFT] on the RPA test set: the IPA model the TL run started from, against the IPA spectra."""
    import torch

    from ..spectra.metrics import similarity_coefficient

    try:
        ipa_model = tl_run.initial_model()
    except StudyInputError:
        return None
    arrays = split_arrays(dm.test_set)
    pred = predict(ipa_model, dm.test_set)
    return similarity_coefficient(torch.from_numpy(pred), torch.from_numpy(arrays["ipa"])).numpy()


def correlations(runs_dir: Path, out: Path) -> list[Path]:
    """Fig. 4 (the smaller size) and its SI companion (the larger), Fig. 5, SI QW parity, and a table."""
    runs = load_runs(runs_dir, "efficiency")
    statement = data_statement(runs)
    sizes = _two_sizes(runs)
    written, rows, pairs, qw = [], [], {}, {}
    dm = pick(runs, "tl", sizes[0]).datamodule()
    test = split_arrays(dm.test_set)
    energy_step = 0.01  # eV: QW = ∫ Im ε dω as the authors integrate it
    for size in sizes:
        tl_run, dl_run = pick(runs, "tl", size), pick(runs, "dl", size)
        tl, dl = tl_run.results.set_index("mat_id"), dl_run.results.set_index("mat_id")
        order = test["mat_id"]
        sc_tl, sc_dl = tl.loc[order, "sc"].to_numpy(), dl.loc[order, "sc"].to_numpy()
        ipa_dft = tl.loc[order, "ipa_sc"].to_numpy()
        ipa_ml = _ipa_ml(tl_run, dm)
        fig = figures.correlations(sc_dl, sc_tl, ipa_dft, ipa_ml)
        written += save(fig, out, f"correlations_{size}", statement)
        pairs[size] = (sc_dl, sc_tl)
        qw_dft = np.trapezoid(test["y"], dx=energy_step, axis=1)
        for name, run in (("TL", tl_run), ("DL", dl_run)):
            qw[f"{name}: {size}"] = (qw_dft, np.trapezoid(predict(run.model(), dm.test_set), dx=energy_step, axis=1))
        row = {"train_size": size, "pearson_tl_dl": np.corrcoef(sc_tl, sc_dl)[0, 1],
               "pearson_tl_ipa_dft": np.corrcoef(sc_tl, ipa_dft)[0, 1],
               "tl_better_than_dl": float(np.mean(sc_tl > sc_dl)), "tl_better_than_ipa": float(np.mean(sc_tl > ipa_dft))}
        if ipa_ml is not None:
            row["pearson_tl_ipa_ml"] = np.corrcoef(sc_tl, ipa_ml)[0, 1]
            row["median_sc_ipa_ml"] = float(np.median(ipa_ml))
        for name in ("TL", "DL"):
            dft, ml = qw[f"{name}: {size}"]
            row[f"qw_median_rel_error_{name.lower()}"] = float(np.median(np.abs(ml - dft) / np.maximum(dft, 1e-9)))
        rows.append(row)
    written += save(figures.dl_vs_tl(pairs), out, "dl_vs_tl", statement)
    written += save(figures.qw_parity(qw), out, "qw_parity", statement)
    written += write_table(pd.DataFrame(rows), out, "correlations", statement,
                           "Per-material SC of the test set; QW = ∫ Im ε dω (dω = 0.01 eV).")
    return written


def example_spectra(runs_dir: Path, out: Path) -> list[Path]:
    """Fig. 2: the test materials at the 10 %, 20 %, ... 90 % quantiles of the IPA baseline SC[IPA;RPA]."""
    from ..spectra.grid import ENERGY_GRID

    runs = load_runs(runs_dir, "efficiency")
    statement = data_statement(runs)
    small, large = _two_sizes(runs)
    dm = pick(runs, "tl", small).datamodule()
    test = split_arrays(dm.test_set)
    baseline = pick(runs, "tl", small).results.set_index("mat_id").loc[test["mat_id"], "ipa_sc"].to_numpy()
    order = np.argsort(baseline, kind="stable")
    # As the authors pick them: sorted by SC[IPA;RPA], the item at int(q * n + 1).
    chosen = [int(order[min(len(order) - 1, int(q * len(order) + 1))]) for q in QUANTILES]
    models = {f"{s.upper()} (N={n})": pick(runs, s, n) for s in ("dl", "tl") for n in (small, large)}
    preds = {label: predict(run.model(), dm.test_set, chosen) for label, run in models.items()}
    # Four line styles that differ without colour (print, colour blindness): dotted/dash-dot DL, dashed/solid TL.
    styles = {"IPA (DFT)": ("0.55", "-", 0.8), "RPA (DFT)": ("k", "-", 1.5)}
    styles.update({label: (figures.DL if label.startswith("DL") else figures.TL,
                           {("dl", True): ":", ("dl", False): "-.", ("tl", True): "--", ("tl", False): "-"}[
                               (label[:2].lower(), f"N={small})" in label)], 1.0) for label in models})
    panels, rows = [], []
    for j, (q, k) in enumerate(zip(QUANTILES, chosen)):
        curves = {"IPA (DFT)": test["ipa"][k], "RPA (DFT)": test["y"][k], **{lab: p[j] for lab, p in preds.items()}}
        scores = {lab: float(run.results.set_index("mat_id").loc[test["mat_id"][k], "sc"]) for lab, run in models.items()}
        panels.append({"quantile": q, "formula": test["formula"][k], "mat_id": test["mat_id"][k],
                       "baseline": float(baseline[k]), "sc": scores, "curves": curves})
        rows.append({"quantile": q, "mat_id": test["mat_id"][k], "formula": test["formula"][k],
                     "sc_ipa_rpa": baseline[k], **{f"sc {lab}": float(run.results.set_index("mat_id").loc[
                         test["mat_id"][k], "sc"]) for lab, run in models.items()}})
    written = save(figures.example_spectra(ENERGY_GRID, panels, styles), out, "example_spectra", statement)
    written += write_table(pd.DataFrame(rows), out, "example_spectra", statement,
                           "Test materials at the quantiles of the IPA baseline SC[IPA;RPA].")
    return written


def sc_predictor(runs_dir: Path, out: Path) -> list[Path]:
    """Fig. 6: the SC[RPA;IPA] predictor (trained on the training split) on the test set."""
    runs = load_runs(runs_dir, "sc_predictor")
    run = pick(runs, "sc", train_on="train") or pick(runs, "sc")
    if run is None:
        raise StudyInputError(f"no SC-predictor run below {runs_dir} (python -m optimate_pl experiment=sc_predictor)")
    statement = data_statement([run])
    res = run.results
    table = pd.DataFrame([{"n_test": len(res), "mean_abs_error": res.abs_error.mean(),
                           "median_abs_error": res.abs_error.median()}])
    if is_real([run]):
        for key, value in published.SC_PREDICTOR.items():
            table[f"paper_{key}"] = value
            table[f"diff_{key}"] = table[key] - value
    written = write_table(table, out, "sc_predictor", statement, "SC[RPA;IPA] with IPA as the reference.")
    written += save(figures.sc_parity(res.true.to_numpy(), res.pred.to_numpy()), out, "sc_predictor", statement)
    return written


def latent_map(runs_dir: Path, out: Path, n_neighbors: int = 30, min_dist: float = 0.1,
               random_state: int = 1) -> list[Path]:
    """Fig. 7: UMAP of the pooled latents of the SC model trained on all materials, every material
    embedded (n_neighbors 30, min_dist 0.1, random_state 1, as the authors); PNG/PDF and an interactive HTML."""
    import torch
    import umap

    from ..data.store import GraphDataset

    runs = load_runs(runs_dir, "sc_predictor")
    run = pick(runs, "sc", train_on="all")
    note = "SC model trained on all materials, as in the paper."
    if run is None:
        run = pick(runs, "sc")
        note = "No run with data.train_on=all: the SC model trained on the training split is mapped instead."
    if run is None:
        raise StudyInputError(f"no SC-model run below {runs_dir} (python -m optimate_pl experiment=sc_predictor)")
    statement = data_statement([run])
    model, dm = run.model(), run.datamodule()
    every = GraphDataset(dm.store, range(len(dm.store)), "sc_rpa_ipa")
    with torch.no_grad():
        z = torch.cat([model.net.latents(b) for b in every.batches()]).numpy()
    emb = umap.UMAP(n_neighbors=min(n_neighbors, len(every) - 1), min_dist=min_dist,
                    random_state=random_state).fit_transform(z)
    sc = every.targets.reshape(-1).numpy()
    df = pd.DataFrame({"mat_id": every.mat_ids, "formula": [dm.store.formula[i] for i in every.rows.tolist()],
                       "sc_rpa_ipa": sc, "umap_1": emb[:, 0], "umap_2": emb[:, 1]})
    written = write_table(df, out, "latent_map", statement, f"{note} {z.shape[1]}-d latents of {len(df)} materials.")
    written += save(figures.latent_map(emb, sc), out, "latent_map", statement)
    import plotly.express as px

    html = px.scatter(df, x="umap_1", y="umap_2", color="sc_rpa_ipa", hover_data=["formula", "mat_id", "sc_rpa_ipa"],
                      color_continuous_scale="Jet", title=f"SC model latent space — {statement}")
    written.append(atomic_write_text(html.to_html(include_plotlyjs=True), out / "latent_map.html"))
    return written


def active_learning(runs_dir: Path, out: Path, efficiency_dir: Path | None = None) -> list[Path]:
    """The campaign's curves: median test SC and MSE against the number of RPA materials per acquisition
    function (mean and min-max over repetitions), the paper's random-subset TL curve on real data, and how
    many RPA calculations each function needs to reach the accuracy of TL on the whole training set."""
    import json

    from ..uncertainty.active_learning import beats_random, curves, needed_to_reach

    table_path = runs_dir / "campaign.csv"
    if not table_path.is_file():
        raise StudyInputError(f"no campaign.csv in {runs_dir} (make it with: python -m optimate_pl "
                              f"experiment=active_learning)")
    table = pd.read_csv(table_path)
    meta = json.loads((runs_dir / "campaign.json").read_text()) if (runs_dir / "campaign.json").is_file() else {}
    source = meta.get("source")
    # A campaign on the GPAW ladder is real physics too (it was labelled SYNTHETIC before).
    statement = SYNTHETIC_STATEMENT if source in (None, "synthetic") else source_label(source)
    curve = curves(table)
    reference = None
    if efficiency_dir is not None and efficiency_dir.is_dir() and list(efficiency_dir.rglob("metrics.json")):
        runs = load_runs(efficiency_dir)
        full = max((r for r in runs if r.strategy == "tl" and not r.max_sites), key=lambda r: r.n_train, default=None)
        if full is not None:
            reference = (full.n_train, full.metrics.get("test/sc_median"))
    fig, axes = plt.subplots(1, 2, figsize=(8.5, 3.4))
    for ax, key, label in ((axes[0], "sc", "median test SC"), (axes[1], "mse", "median test MSE")):
        for name, sub in curve.groupby("acquisition"):
            line = ax.plot(sub.n_rpa, sub[key], "o-", label=name)[0]
            ax.fill_between(sub.n_rpa, sub[f"{key}_min"], sub[f"{key}_max"], color=line.get_color(), alpha=0.2)
        if source == "figshare":  # the paper's curve only beside the authors' own databases
            pub = pd.DataFrame([{"n": n, **v["tl"]} for n, v in published.EFFICIENCY.items()])
            ax.plot(pub.n, pub[key], "k:", label="paper: TL on random subsets")
        if reference is not None and key == "sc":
            ax.axhline(reference[1], color="k", ls="--", lw=0.8, label=f"TL on {reference[0]} (efficiency study)")
        ax.set(xlabel="RPA materials computed", ylabel=label)
    axes[1].set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    written = save(fig, out, "active_learning", statement)
    lines = [f"- {name}: {verdict}" for name, verdict in beats_random(curve).items()]
    if reference is not None and reference[1] is not None:
        needed = needed_to_reach(curve, reference[1])
        lines += [f"- to reach the median SC {reference[1]:.4f} of TL on {reference[0]} materials: " + ", ".join(
            f"{name} {n if n is not None else f'not within {int(curve.n_rpa.max())}'}" for name, n in needed.items())]
    written += write_table(curve, out, "active_learning", statement,
                           f"{int(table.repetition.nunique())} repetitions.\n\n" + "\n".join(lines))
    return written


#: report -> (function, the experiment folder its runs come from, the preset that makes them)
STUDIES: dict[str, tuple[Any, str]] = {
    "efficiency": (efficiency, "efficiency"), "small_cells": (small_cells, "small_cells"),
    "correlations": (correlations, "efficiency"), "example_spectra": (example_spectra, "efficiency"),
    "sc_predictor": (sc_predictor, "sc_predictor"), "latent_map": (latent_map, "sc_predictor"),
    "active_learning": (active_learning, "active_learning"),
    "gpaw_ladder": (lambda runs, out: _gpaw_ladder(runs, out), "gpaw_ladder"),
    "backbones": (lambda runs, out: _backbones(runs, out), "backbones"),
}


def _backbones(runs: Path | list[Path], out: Path) -> list[Path]:
    from .backbones import backbones

    return backbones(runs, out)


def _gpaw_ladder(runs: Path, out: Path) -> list[Path]:
    from .ladder import gpaw_ladder

    return gpaw_ladder(runs, out)


def main(argv: list[str] | None = None) -> None:
    """``python -m optimate_pl.studies <study> [--runs DIR] [--out DIR] [--root DIR]``."""
    from ..utils.tool import run_tool, tool_parser

    p = tool_parser("python -m optimate_pl.studies", "Turn an experiment's runs into the paper's tables and figures.")
    p.add_argument("study", choices=sorted(STUDIES), help="the report")
    p.add_argument("--root", default=".", help="the folder holding experiments/ (default: here)")
    p.add_argument("--runs", nargs="+", default=None,
                   help="the runs (default: experiments/<preset>/runs); backbones pools several folders, or single "
                        "runs, into one report")
    p.add_argument("--out", default=None, help="where to write (default: experiments/<study>/results)")
    args = p.parse_args(argv)
    fn, preset = STUDIES[args.study]
    root = Path(args.root)
    folders = [Path(r) for r in args.runs] if args.runs else [root / "experiments" / preset / "runs"]
    runs = folders if args.study == "backbones" else folders[0]
    out = Path(args.out) if args.out else root / "experiments" / args.study / "results"
    def check_paths() -> None:
        from ..utils.atomic import writable_problem

        if len(folders) > 1 and args.study != "backbones":
            raise StudyInputError(f"--runs: {args.study} reads one folder (only backbones pools several)")
        for folder in folders if args.runs else []:
            if not folder.exists():
                raise StudyInputError(f"--runs {folder}: no such folder")
        if args.study == "gpaw_ladder" and args.runs and not (runs / "materials.json.gz").is_file():
            raise StudyInputError(f"--runs {runs}: not a packed dataset folder (no materials.json.gz; "
                                  f"python -m optimate_pl.data.ladder pack makes one)")
        problem = writable_problem(out)
        if problem:
            raise StudyInputError(f"--out {out}: cannot write there ({problem})")

    run_tool(check_paths, args, errors=(StudyInputError,))
    kwargs = {"small_cells_dir": root / "experiments" / "small_cells" / "runs"} if args.study == "efficiency" else \
        {"efficiency_dir": root / "experiments" / "efficiency" / "runs"} if args.study == "active_learning" else {}
    written = run_tool(lambda: fn(runs, out, **kwargs), args, errors=(StudyInputError,))
    print(f"{args.study}: wrote {len(written)} files to {out}")
    for path in written:
        print(f"  {path}")
