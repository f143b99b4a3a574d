"""The backbones study (``experiment=backbones``): backbone x strategy x training-set size, over seeds.

Per cell: the median test SC and MSE of each seed's run, their mean and spread over the seeds, and a
paired bootstrap of the difference to OPTIMATE-TL at the same size (and, for DL and MF, to TL on the same
backbone): the test materials are resampled with replacement (the same resample for both), each material's
SC averaged over a cell's seeds, and the difference of the medians taken; the 2.5 and 97.5 % quantiles of
50,000 resamples are the interval. Both models are scored on the same materials, so the material-to-material
spread (65 materials move a median by about 0.01) cancels where the models agree.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ..config.resolve import START_KEYS
from ..data.splits import split_mode
from ..utils.plots import plt
from .output import save, write_table
from .runs import Run, StudyInputError, data_statement, load_runs

log = logging.getLogger(__name__)

#: Bootstrap resamples of the interval, and its seed (the interval is reproducible). The upper end of ViSNet-TL's
#: interval against OPTIMATE-TL at 100 (v5, 65 materials) moved over 0.041-0.054 across 20 bootstrap seeds with
#: 2,000 resamples, 0.043-0.051 with 10,000, and not in the 4th decimal with 50,000 (0.2 s a comparison).
RESAMPLES, BOOTSTRAP_SEED = 50_000, 0
#: The reference every cell is compared with: the paper's method on the authors' network.
REFERENCE = ("optimate", "tl")
#: What makes a cell's recipe beside its backbone, strategy and size: runs that differ in any of these are not seeds
#: of one cell, and the report refuses to pool them. Seeds, paths, machines and the precision (a column of its own)
#: may differ; the data by what they are (:func:`recipe`), and the test set by the materials (checked apart).
RECIPE_KEYS = ("model.net", "optimizer", "scheduler", "trainer.max_epochs", "strategy.pretrain_epochs",
               "callbacks.model_checkpoint.monitor", "data.source", "data.extra", "data.batch_size",
               "data.max_sites", "data.train_on", "data.train_ids", "data.cutoff", "data.target")
#: Bootstrap resamples drawn at once (bounds the memory: 50,000 x 639 test materials would be 250 MB).
_BLOCK = 5_000


def backbone(run: Run) -> str:
    """The backbone of a run: ``optimate``, or the lower-cased class name of another (``dimenetcrystal`` ->
    ``dimenet``)."""
    from ..models.backbones import backbone_name

    net = run.cfg.model.get("net")
    return backbone_name(dict(net) if net is not None else {})


def strategy_label(run: Run) -> str:
    """The run's strategy; MF's variants are cells of their own, never pooled with plain MF seeds: ``mf_ipa`` (MF
    started from the IPA model, ``strategy=mf_ipa``), ``mf_rN`` (each RPA spectrum N times an epoch,
    ``data.rpa_repeat=N``), ``mf_ipa_rN`` (both)."""
    from ..config.resolvers import mf_variant

    suffix = mf_variant(run.strategy, run.cfg.get("strategy", {}).get("init"),
                        run.cfg.get("data", {}).get("rpa_repeat", 1) or 1)
    return run.strategy + suffix.replace("-", "_")


def parameters(run: Run) -> float:
    """The number of weights of the run's network (``model.net`` of its saved config; an MF run's two rung
    embeddings not counted), or NaN, with a warning, where that config no longer builds a network."""
    from omegaconf import OmegaConf

    from ..models.backbones import make_network

    net = run.cfg.get("model", {}).get("net")
    try:
        network = make_network(OmegaConf.to_container(net, resolve=True) if net is not None else None)
    except Exception as err:  # noqa: BLE001 - a report of finished runs goes on without this column
        log.warning("%s: cannot rebuild its network to count its parameters (%s)", run.dir, err)
        return float("nan")
    return float(sum(p.numel() for p in network.parameters()))


def recipe(run: Run) -> dict:
    """The settings of :data:`RECIPE_KEYS` as the run resolved them, whether TL (or MF from the IPA model) started
    from the automatic IPA model or a given file, the split (its default named), and the data root (another GPAW pack
    by its digest, so the same pack under another path is the same recipe). Not the cached data's fingerprint: it
    depends on the machine's cache folder and file times."""
    from omegaconf import OmegaConf

    out: dict = {}

    def flat(key: str, value) -> None:  # dotted keys, so a difference names the setting (model.net.width)
        if isinstance(value, dict):
            for k, v in value.items():
                flat(f"{key}.{k}", v)
        else:
            out[key] = value

    for key in RECIPE_KEYS:
        value = OmegaConf.select(run.cfg, key, default=None)
        flat(key, OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value)
    uses = START_KEYS.get(str(OmegaConf.select(run.cfg, "strategy.name", default="")))
    for key in ("strategy.checkpoint", "strategy.init"):  # the automatic IPA model (by seed) or a given file
        # only the strategy's own start key: DL ignores a study's strategy.checkpoint=... for its TL jobs
        start = OmegaConf.select(run.cfg, key, default=None) if key == f"strategy.{uses}" else None
        out[key] = start if start in (None, "auto") else "a given weight file"
    source = out["data.source"]
    out["data.split"] = split_mode(OmegaConf.select(run.cfg, "data.split", default=None), source)
    root = OmegaConf.select(run.cfg, "data.root", default=None)
    recorded = (run.metrics.get("data") or {}).get("ladder")
    if source == "gpaw" and recorded:  # the pack the run learned, built in or not, as the run recorded it
        root = f"pack {recorded}"
    elif source == "gpaw" and root:  # another pack: by its content, however its path was spelt
        from ..data import ladder

        try:
            root = f"pack {ladder.digest(root)}"
        except OSError:  # moved or deleted since: its path is all there is
            pass
    elif source == "gpaw":  # runs before v6 did not record it; the built-in ladder has changed since (v5 -> v6)
        root = "the built-in ladder (version not recorded)"
    out["data.root"] = root
    if "gpaw" in [str(e) for e in (out.get("data.extra") or [])]:  # the built-in ladder mixed in: which version
        out["data.extra"] = [f"gpaw (pack {recorded or 'version not recorded'})" if str(e) == "gpaw" else e
                             for e in out["data.extra"]]
    return out


def _seed(run: Run) -> tuple:
    from omegaconf import OmegaConf

    return (OmegaConf.select(run.cfg, "seed", default=None),
            OmegaConf.select(run.cfg, "strategy.pretrain_seed", default=None))


def _check_cell(key: tuple[str, str, int], runs: list[Run]) -> None:
    """Refuse a cell whose runs are not seeds of one recipe on one test set (a clear error naming two runs)."""
    name = "-".join(map(str, key))
    first, first_recipe, first_ids = runs[0], recipe(runs[0]), set(runs[0].results.mat_id)
    seen = {_seed(first): first}
    for r in runs[1:]:
        other = recipe(r)
        differ = [k for k in sorted(set(other) | set(first_recipe)) if other.get(k) != first_recipe.get(k)]
        if differ:
            raise StudyInputError(
                f"cell {name}: {first.dir} and {r.dir} differ in {', '.join(differ)} "
                f"({', '.join(f'{first_recipe.get(k)} vs {other.get(k)}' for k in differ)}): not seeds of one recipe; "
                f"report them apart (one --runs list each)")
        if set(r.results.mat_id) != first_ids:
            raise StudyInputError(f"cell {name}: {first.dir} and {r.dir} were tested on different materials")
        if _seed(r) in seen:
            raise StudyInputError(f"cell {name}: {seen[_seed(r)].dir} and {r.dir} are the same seed "
                                  f"(seed, pretrain_seed) = {_seed(r)}; give each run once")
        seen[_seed(r)] = r


def compare_cells(cell: list[Run], ref: list[Run], what: str) -> tuple[float, float, float]:
    """:func:`paired_interval` of two cells, which must have been tested on the same materials."""
    a, b = _per_material(cell), _per_material(ref)
    if set(a.index) != set(b.index):
        raise StudyInputError(f"{cell[0].dir} and {ref[0].dir} ({what}) were tested on different materials "
                              f"({len(a)} and {len(b)}, {len(a.index.intersection(b.index))} shared): "
                              f"not a paired comparison")
    return paired_interval(a, b)


def _per_material(runs: list[Run]) -> pd.Series:
    """Each test material's SC averaged over the runs (seeds) of one cell."""
    frames = [r.results.set_index("mat_id")["sc"] for r in runs]
    return pd.concat(frames, axis=1).mean(axis=1)


def paired_interval(cell: pd.Series, ref: pd.Series, resamples: int = RESAMPLES,
                    seed: int = BOOTSTRAP_SEED) -> tuple[float, float, float]:
    """(difference of the medians, 2.5 %, 97.5 %) of ``cell - ref`` over the materials both scored."""
    common = cell.index.intersection(ref.index).sort_values()  # the materials' order must not move the interval
    a, b = cell.loc[common].to_numpy(), ref.loc[common].to_numpy()
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    for start in range(0, resamples, _BLOCK):
        idx = rng.integers(0, len(common), size=(min(_BLOCK, resamples - start), len(common)))
        diffs[start:start + len(idx)] = np.median(a[idx], axis=1) - np.median(b[idx], axis=1)
    return float(np.median(a) - np.median(b)), float(np.quantile(diffs, 0.025)), float(np.quantile(diffs, 0.975))


def _precision(runs: list[Run]) -> str:
    """The training precision(s) of a cell's runs (``trainer.precision`` as each run resolved it): a cell of runs
    from machines with and without bf16 units reads e.g. ``32-true+bf16-mixed``, so a mixed cell cannot pass unseen."""
    return "+".join(sorted({str(r.cfg.get("trainer", {}).get("precision", "?")) for r in runs}))


def _epochs(run: Run) -> int:
    return int(run.cfg.trainer.get("max_epochs") or 1)


def backbones_table(runs: list[Run]) -> pd.DataFrame:
    """One row per backbone, strategy and training-set size (see the module docstring)."""
    cells: dict[tuple[str, str, int], list[Run]] = {}
    given: set[Path] = set()
    for r in runs:
        if r.dir.resolve() in given:  # the same run named twice (a folder and a run inside it) counts once
            continue
        given.add(r.dir.resolve())
        if r.strategy not in ("dl", "tl", "mf"):
            continue
        if not (r.dir / "test_results.csv").is_file():
            log.warning("%s: no test_results.csv (trained with test=false?), left out", r.dir)
            continue
        cells.setdefault((backbone(r), strategy_label(r), r.n_train), []).append(r)
    if not cells:
        raise StudyInputError("no DL/TL/MF run with test results (python -m optimate_pl experiment=backbones)")
    for key, rs in cells.items():
        _check_cell(key, rs)
    refs = {n: rs for (b, s, n), rs in cells.items() if (b, s) == REFERENCE}
    rows = []
    for (name, strategy, n), rs in sorted(cells.items()):
        sc = np.array([r.metrics.get("test/sc_median", np.nan) for r in rs], dtype=float)
        mse = np.array([r.metrics.get("test/mse_median", np.nan) for r in rs], dtype=float)
        row = {"backbone": name, "strategy": strategy, "train_size": n, "seeds": len(rs),
               "sc_median": sc.mean(), "sc_seed_std": sc.std(ddof=1) if len(rs) > 1 else np.nan,
               "sc_seed_min": sc.min(), "sc_seed_max": sc.max(), "mse_median": mse.mean(),
               "parameters": parameters(rs[0]),
               "s_per_epoch": float(np.mean([r.metrics.get("time_s", np.nan) / _epochs(r) for r in rs])),
               "precision": _precision(rs)}
        if n in refs and (name, strategy) != REFERENCE:
            diff, lo, hi = compare_cells(rs, refs[n], "against OPTIMATE-TL")
            row.update({"vs_optimate_tl": diff, "ci_low": lo, "ci_high": hi})
        own_tl = cells.get((name, "tl", n))
        if strategy != "tl" and own_tl:  # MF or DL against TL on the same backbone (issue #35: MF >= TL at 100)
            diff, lo, hi = compare_cells(rs, own_tl, "against its own TL")
            row.update({"vs_own_tl": diff, "own_tl_ci_low": lo, "own_tl_ci_high": hi})
        rows.append(row)
    table = pd.DataFrame(rows)
    table["parameters"] = table["parameters"].round().astype("Int64")  # a count (NaN stays missing)
    return table


def backbones_figure(table: pd.DataFrame):
    """Median test SC of every cell, the seeds' range as error bars: against the training-set size (a line per
    backbone x strategy, slightly offset so that bars do not hide each other), or, for one size, a cell per column
    with its difference to OPTIMATE-TL and the bootstrap interval written above it."""
    styles = {"dl": "--", "tl": "-", "mf": ":", "mf_ipa": "-."}
    markers = {"optimate": "o", "dimenet": "s", "visnet": "^"}
    groups = list(table.groupby(["backbone", "strategy"]))
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    one_size = table.train_size.nunique() == 1
    for k, ((name, strategy), part) in enumerate(groups):
        part = part.sort_values("train_size")
        err = np.vstack([part.sc_median - part.sc_seed_min, part.sc_seed_max - part.sc_median])
        x = np.full(len(part), k) if one_size else part.train_size * (1 + 0.03 * (k - len(groups) / 2))
        lo_seeds, hi_seeds = int(part.seeds.min()), int(part.seeds.max())
        seeds = (f"{lo_seeds}-{hi_seeds} seeds" if lo_seeds != hi_seeds
                 else f"{lo_seeds} seed{'s' if lo_seeds > 1 else ''}")
        ax.errorbar(x, part.sc_median, yerr=err, ls="none" if one_size else styles.get("mf_ipa" if strategy.startswith("mf_ipa") else strategy.split("_")[0], "-"),
                    marker=markers.get(name, "D"), capsize=3, label=f"{name} {strategy.upper()} ({seeds})")
        if one_size and "vs_optimate_tl" in part and np.isfinite(part.vs_optimate_tl.iloc[0]):
            r = part.iloc[0]
            ax.annotate(f"{r.vs_optimate_tl:+.3f}\n[{r.ci_low:+.3f}, {r.ci_high:+.3f}]", (k, r.sc_seed_max),
                        textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
    if one_size:
        ax.set_xticks(range(len(groups)), [f"{n}\n{s.upper()}" for (n, s), _ in groups])
        ax.set_xlim(-0.6, len(groups) - 0.4)
        ax.set_xlabel(f"backbone and strategy, {int(table.train_size.iloc[0])} RPA training materials "
                      f"(above: difference to OPTIMATE-TL, 95 % paired bootstrap interval)")
    else:
        ax.set_xscale("log")
        ax.set_xlabel("RPA training materials")
    lo, hi = (table.sc_seed_min.min(), table.sc_seed_max.max())
    ax.set_ylim(lo - 0.01, hi + 0.015)
    ax.set_ylabel("median test SC (mean over seeds; bars: seeds' range)")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


def backbones(runs_dir: Path | list[Path], out: Path) -> list[Path]:
    """``backbones.csv/.md`` and ``backbones.png/.pdf`` from the runs of ``experiment=backbones`` (one folder, or
    several pooled: e.g. a variant's runs beside the reference cells of another folder)."""
    folders = runs_dir if isinstance(runs_dir, list) else [runs_dir]
    runs = [run for folder in folders for run in load_runs(folder, "backbones")]
    table = backbones_table(runs)
    statement = data_statement(runs)
    note = (f"Per cell the mean over seeds of each run's median test SC (spread: std, min, max over seeds); "
            f"vs_optimate_tl: difference of the median SC to OPTIMATE-TL at the same size on the same test "
            f"materials (each material averaged over seeds), with a paired bootstrap 95 % interval ({RESAMPLES} "
            f"resamples); vs_own_tl: the same against TL on the same backbone, for DL and MF (mf_ipa: MF started from the IPA "
            f"model, strategy=mf_ipa; mf_rN: MF with each RPA spectrum N times an epoch, "
            f"data.rpa_repeat=N). parameters: the network's weights. s_per_epoch: a "
            f"run's wall time over its epochs (pretraining not included; a busy "
            f"machine inflates it: benchmarks/ has the idle measurement); precision: the runs' training precision "
            f"(several joined by + where a cell mixes machines).")
    return [*write_table(table, out, "backbones", statement, note),
            *save(backbones_figure(table), out, "backbones", statement)]
