"""Screening: Im ε(ω) (or SC[RPA;IPA]) and derived optical properties for many new structures, into files.

(One model in Python: :mod:`optimate_pl.inference.predictor`.) Command line (a Hydra app, ``conf/predict.yaml``; :mod:`optimate_pl.cli.predict`)::

    optimate-pl-predict checkpoint=PATH input=PATH [output=DIR] [rank_by=alpha_visible_mean top=20]

``run_prediction`` streams any input (:mod:`optimate_pl.data.inputs`) through ``trainer.predict`` and
writes shards (:mod:`optimate_pl.inference.stream`), then, on rank 0, the merged tables: ``materials.parquet``
and ``.csv`` (one row a material: ``id``, ``source``, formula, sites, predicted scalars),
``spectra/`` (a Parquet dataset: ``id``, ``source``, the spectra), ``energy.csv`` (the grid, once),
``spectra.csv`` for small runs (``format=csv``: one row a material, one column an energy),
``errors.csv`` (what was skipped and why), ``summary.json``, ``predictions.png`` and the ranking.
"""
from __future__ import annotations

import contextlib
import json
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data.featurize import MIN_DISTANCE
from ..models.card import ENSEMBLE_CARD, resolve_checkpoint
from ..spectra.grid import ENERGY_GRID
from ..utils.atomic import LockedError, atomic_open, atomic_write_text, file_lock
from ..utils.parallel import secondary_rank
from ..data.inputs import INCOMPLETE
from .predictor import Predictor, load_model

log = logging.getLogger("optimate_pl")
#: Spectra a prediction can keep in ``spectra/`` (Im ε and what :mod:`optimate_pl.spectra.optics` derives from it).
SPECTRA = ("eps_imag", "eps_real", "n", "k", "alpha", "reflectivity")
#: ``format=csv`` writes ``spectra.csv`` (one column an energy) up to this many materials.
CSV_SPECTRA_LIMIT = 100_000


# -- the command's pipeline ---------------------------------------------------------------------------

def _run_fingerprint(checkpoint: Path, input: Path, settings: dict[str, Any]) -> dict[str, Any]:
    st = (checkpoint / ENSEMBLE_CARD if checkpoint.is_dir() else checkpoint).stat()
    return {"checkpoint": str(checkpoint.resolve()), "checkpoint_size": st.st_size, "checkpoint_mtime": st.st_mtime_ns,
            "input": str(input.resolve()), "input_files": input_signature(input, bool(settings.get("recursive"))),
            **settings}


def input_signature(path: Path, recursive: bool) -> str:
    """What the input holds, cheaply: the names, sizes and modification times of the files it reads, hashed. A
    resumed prediction skips finished chunks by their number, so an input fixed (a truncated download fetched again)
    or grown since must not be taken for the same one; other files beside them (logs, OUTCARs) do not count."""
    import hashlib

    from ..data.inputs import input_files

    digest = hashlib.sha1()
    files = [path] if path.is_file() else input_files(path, recursive)  # what is read: not logs, OUTCARs, ...
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(path) if f != path else f.name}\0{st.st_size}\0{st.st_mtime_ns}\n"
                      .encode("utf-8", "surrogateescape"))
    return f"{len(files)} files, sha1 {digest.hexdigest()[:16]}"


def _prepare_output(output: Path, run: dict[str, Any], resume: bool) -> None:
    """A new output folder, or the resumable state of the same prediction (else an error, nothing touched)."""
    from ..data.inputs import InputError

    saved = output / "run.json"
    if saved.is_file():
        previous = json.loads(saved.read_text())
        if previous == run and resume:
            return
        if resume and (output / "shards").is_dir():
            differ = sorted(k for k in set(run) | set(previous) if run.get(k) != previous.get(k))
            if differ == ["input_files"] and "input_files" not in previous:
                log.warning("%s: a prediction of an earlier version, which did not record its input's files: resumed "
                            "as the same input", output)
                return
            why = (" (the input changed since: a file fetched again, added or edited)"
                   if differ == ["input_files"] else "")
            raise InputError(f"{output} holds the shards of another prediction ({', '.join(differ)} differ{why}): "
                             f"choose another output, or resume=false to start it anew")
    for stale in ("shards", "spectra"):
        shutil.rmtree(output / stale, ignore_errors=True)
    atomic_write_text(json.dumps(run, indent=2), saved)


@dataclass(frozen=True)
class PredictSettings:
    """How a prediction runs and what it writes (the settings of ``conf/predict.yaml`` besides the paths)."""

    format: str = "csv"
    plot: int = 6
    batch_size: int = 256
    chunk_size: int = 10_000
    workers: int | None = None
    recursive: bool = False
    min_distance: float = MIN_DISTANCE
    spectra: tuple[str, ...] = ("eps_imag",)
    rank_by: str | None = None
    top: int = 20
    rank_ascending: bool = False
    resume: bool = True
    compile_edges: Any = "auto"
    trainer: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Any) -> "PredictSettings":
        """The settings of a composed ``predict`` config (a DictConfig or a dict)."""
        from omegaconf import OmegaConf

        values = OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else dict(cfg)
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    def __post_init__(self) -> None:
        object.__setattr__(self, "spectra", tuple(self.spectra))
        object.__setattr__(self, "trainer", dict(self.trainer or {}))
        from ..config import check_compile_edges

        check_compile_edges(self.compile_edges)  # a typo fails before the output folder is touched
        if self.format not in ("csv", "parquet"):
            raise ValueError(f"format={self.format}: use csv (Parquet plus CSV tables) or parquet")
        unknown = set(self.spectra) - set(SPECTRA)
        if unknown:
            raise ValueError(f"spectra={list(self.spectra)}: unknown {sorted(unknown)}; choose from {', '.join(SPECTRA)}")


def run_prediction(checkpoint: str | Path, input: str | Path, output: str | Path = "predictions",
                   settings: PredictSettings | None = None, **overrides: Any) -> dict[str, Any]:
    """Predict for every structure of ``input`` and write the tables, figures and summary into ``output``.

    ``settings`` (default :class:`PredictSettings`), with ``overrides`` of its fields (``format="parquet"``, ...).
    Bad inputs are skipped with their reason into ``errors.csv`` and never stop the run; a run
    killed midway and started again with the same arguments skips the finished chunks.
    Returns the summary (also in ``summary.json``). One prediction writes into ``output`` at a time
    (a lock file there): a second one into the same folder is an error naming it.
    """
    from ..data.inputs import InputError, iter_inputs

    s = replace(settings or PredictSettings(), **overrides)
    checkpoint, input, output = resolve_checkpoint(checkpoint), Path(input).expanduser(), Path(output).expanduser()
    try:
        next(iter(iter_inputs(input, s.recursive)))  # a missing or empty input is an error before any file is written
    except StopIteration:
        raise InputError(f"no structure found in {input}") from None
    t0 = time.perf_counter()
    predictor = load_model(checkpoint)  # a bad weight file is an error before the output folder is touched
    if s.rank_by and s.rank_by not in rankable_columns(predictor):  # said before hours of predicting, not after
        raise ValueError(f"rank_by={s.rank_by}: not a column of this model's materials table; rank by one of "
                         f"{', '.join(rankable_columns(predictor))}")
    output.mkdir(parents=True, exist_ok=True)
    try:  # rank 0 of a multi-device prediction holds the folder's lock
        with contextlib.nullcontext() if secondary_rank() else file_lock(output / OUTPUT_LOCK, blocking=False,
                                                                             what=f"the output folder {output}"):
            return _predict(predictor, t0, checkpoint, input, output, s)
    except LockedError as err:
        raise InputError(f"{err}: another prediction is writing there; wait for it to finish or choose another "
                         f"output=...") from None


#: The lock file of a prediction folder: one prediction writes into a folder at a time.
OUTPUT_LOCK = ".optimate-pl-predict.lock"


#: Materials after which ``compile_edges=auto`` compiles the GATv2 edge work of a CPU prediction. On real
#: Alexandria entries (2-core CPU, `make bench`) the compiled run screened 1164 instead of 813 structures/s
#: (0.37 ms saved a material) for 3.2 s more start-up with Inductor's cache warm (5.9 s on one busy thread):
#: repaid after ~9,000-16,000 materials. So a small prediction never compiles, and a large one does (during
#: its second chunk at the default chunk_size). A compilation failing at its first forward falls back to PyG.
COMPILE_AFTER = 10_000


def compile_edges_after(setting: Any, on_cpu: bool) -> int | None:
    """After how many materials a prediction compiles the edge work (0: from the start), or ``None``: never.
    ``setting``: true, false or ``auto`` (:data:`COMPILE_AFTER` on a CPU with a C++ compiler)."""
    from ..config import check_compile_edges
    from ..models.optimate import cxx_compiler

    check_compile_edges(setting)
    if setting == "auto":
        return COMPILE_AFTER if on_cpu and cxx_compiler() else None
    return 0 if setting else None


def _predict(predictor: Predictor, t0: float, checkpoint: Path, input: Path, output: Path,
             s: PredictSettings) -> dict[str, Any]:
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader

    from .stream import PredictionModule, ShardWriter, StructureStream

    predictor.batch_size = s.batch_size
    info = predictor.info
    if info["synthetic"]:
        log.warning("this model was trained on SYNTHETIC data (generated, not physics): its predictions are not "
                    "physical spectra")
    store = () if predictor.is_sc_model else tuple(s.spectra)
    if predictor.calibration is not None and "eps_imag" in store:  # an ensemble's band goes with its mean
        store += ("eps_imag_lower", "eps_imag_upper")
    settings = {"recursive": s.recursive, "cutoff": predictor.cutoff, "min_distance": s.min_distance,
                "chunk_size": s.chunk_size, "spectra": list(store), "target": info["target"]}
    _prepare_output(output, _run_fingerprint(checkpoint, input, settings), s.resume)
    metadata = {"optimate_pl.model": json.dumps({k: info[k] for k in ("checkpoint", "target", "trained_on",
                                                                       "data_source", "cutoff")}),
                "optimate_pl.energy_eV": "linspace(0, 20, 2001)"}
    writer = ShardWriter(output, store, metadata)
    kwargs = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_checkpointing": False,
              "enable_model_summary": False, "enable_progress_bar": sys.stderr.isatty(), **s.trainer}
    pl_trainer = pl.Trainer(callbacks=[writer], **kwargs)
    stream = StructureStream(input, output, predictor.cutoff, s.min_distance, s.batch_size, s.chunk_size, s.workers,
                             s.recursive, forward_on_cpu=pl_trainer.strategy.root_device.type == "cpu")
    module = PredictionModule(predictor, store, compile_edges_after(s.compile_edges, stream.forward_on_cpu)
                              if all(hasattr(n, "compile_edges") for n in predictor.nets) else None)
    # On a GPU the featurised batches come through pinned memory, so their copies overlap the forward of the last.
    pl_trainer.predict(module, dataloaders=DataLoader(stream, batch_size=None, pin_memory=not stream.forward_on_cpu),
                       return_predictions=False)
    pl_trainer.strategy.barrier()
    if not pl_trainer.is_global_zero:
        return {}
    return finalize(output, info, s, seconds=time.perf_counter() - t0, input=input)


def finalize(output: Path, info: dict[str, Any], s: PredictSettings | None = None, seconds: float = 0.0,
             input: Path | None = None) -> dict[str, Any]:
    """Merge the shards into the output tables, write the figures, the ranking and ``summary.json``."""
    s = s or PredictSettings()
    format, plot, rank_by, top = s.format, s.plot, s.rank_by, s.top
    import pandas as pd

    shards = sorted((output / "shards").glob("materials-*.parquet"))
    materials = pd.concat([pd.read_parquet(p) for p in shards], ignore_index=True) if shards else pd.DataFrame()
    if len(materials):
        materials.insert(4, "model_trained_on", "SYNTHETIC" if info["synthetic"] else info["data_source"])
        materials.insert(5, "outside_domain", _outside_domain(materials, info.get("domain")))
    if len(materials):
        with atomic_open(output / "materials.parquet", "wb") as fh:
            materials.to_parquet(fh, index=False)
    errors = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False)
                        for p in sorted((output / "shards").glob("errors-*.csv"))], ignore_index=True)
    markers = [json.loads(p.read_text()) for p in sorted((output / "shards").glob("done-*.json"))]
    reasons = Counter()
    for m in markers:
        reasons.update(m["reasons"])
    written = []
    atomic_write_text(errors.to_csv(index=False), output / "errors.csv")
    written.append(output / "errors.csv")
    atomic_write_text(pd.DataFrame({"energy_eV": ENERGY_GRID}).to_csv(index=False), output / "energy.csv")
    if len(materials):
        written.append(output / "materials.parquet")
        if format == "csv":
            atomic_write_text(materials.to_csv(index=False, float_format="%.6g"), output / "materials.csv")
            written.append(output / "materials.csv")
    parts = sorted((output / "spectra").glob("part-*.parquet"))
    # spectra.csv and the figures show Im ε: kept unless spectra= leaves it out (an SC model keeps no spectra)
    has_eps = bool(parts) and "eps_imag" in s.spectra
    if has_eps and format == "csv" and 0 < len(materials) <= CSV_SPECTRA_LIMIT:
        written.append(write_spectra_csv(parts, output / "spectra.csv"))
    if has_eps and plot and len(materials):
        written.append(plot_predictions(output, materials.id.head(plot).tolist(), output / "predictions.png", info))
    if rank_by and len(materials):
        written += write_ranking(output, materials, rank_by, top, info, ascending=s.rank_ascending, figure=has_eps)
    # Files that end early are rows of errors.csv, but not materials: the counts are of materials read.
    cut = errors[errors.reason == INCOMPLETE] if len(errors) else errors
    reasons.pop(INCOMPLETE, None)
    n_items = sum(m["n_items"] for m in markers) - len(cut)
    summary = {"input": str(input) if input else None, "complete": not len(cut), "n_inputs": n_items,
               "n_predicted": int(len(materials)), "n_skipped": int(len(errors) - len(cut)),
               "skipped_by_reason": dict(reasons), "seconds": round(seconds, 2),
               "materials_per_second": round(n_items / seconds, 1) if seconds else None, "model": info,
               "files": [str(p) for p in written]}
    if len(cut):
        summary["incomplete_inputs"] = dict(zip(cut.source, cut.detail))
        for detail in cut.detail:
            log.warning("not everything was read: %s", detail)
    if info.get("domain") and len(materials):
        flagged = materials[materials.outside_domain != ""]
        summary["outside_domain"] = {"count": int(len(flagged)), "domain": info["domain"],
                                     "examples": dict(zip(flagged.id.head(5), flagged.outside_domain.head(5)))}
        if len(flagged):
            log.warning("%d of %d structures lie outside what the model was trained on (column outside_domain; e.g. "
                        "%s: %s): read their predictions with care", len(flagged), len(materials), flagged.id.iloc[0],
                        flagged.outside_domain.iloc[0])
    elif len(materials):
        summary["outside_domain"] = None  # a weight file without a recorded domain (e.g. the authors' published ones)
    duplicated = int(materials.id.duplicated().sum()) if len(materials) else 0
    if duplicated:
        summary["duplicate_ids"] = duplicated
        log.warning("%d ids occur more than once (the same material in several input files); `source` tells them "
                    "apart", duplicated)
    atomic_write_text(json.dumps(summary, indent=2, default=str), output / "summary.json")
    print_summary(summary)
    return summary


def _outside_domain(materials, domain: dict | None) -> list[str]:
    """Per material, how it lies outside the model's training domain ("" inside; all "" without a domain)."""
    from ..data.domain import outside

    volumes = materials["volume_per_site"] if "volume_per_site" in materials else [None] * len(materials)
    return [outside(domain, f, int(n), v) for f, n, v in zip(materials.formula, materials.nsites, volumes)]


def write_spectra_csv(parts: Sequence[Path], path: Path, spectrum: str = "eps_imag") -> Path:
    """``spectra.csv`` from the spectra shards: one row a material (``id``, then one column an energy).

    The bytes of ``DataFrame.to_csv(index=False, float_format="%.6g")`` of that table (the ids quoted as
    its ``csv`` writer quotes them, a missing value as an empty field), written a row at a time with one
    ``%`` format per row: pandas formats every value through several Python calls, about 10x slower.
    """
    import csv
    import io
    import math

    import pyarrow.parquet as pq

    row_format = ",".join(["%.6g"] * len(ENERGY_GRID))
    quoted = io.StringIO()
    quoter = csv.writer(quoted, lineterminator="\n")  # pandas' writer: QUOTE_MINIMAL, '"', ','

    def cell(text: str) -> str:  # one field as the csv writer writes it among others
        quoted.seek(0)
        quoted.truncate()
        quoter.writerow([text, ""])
        return quoted.getvalue()[:-1]  # "<field>," without the line end

    with atomic_open(path, "w") as fh:
        fh.write(",".join(["id", *(f"{e:.2f}" for e in ENERGY_GRID)]) + "\n")
        for part in parts:
            table = pq.read_table(part, columns=["id", spectrum])
            column = table.column(spectrum).combine_chunks()
            values = column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), column.type.list_size)
            for mid, row in zip(table.column("id").to_pylist(), values):
                if np.isnan(row).any():  # as pandas: a missing value is an empty field
                    text = ",".join("" if math.isnan(v) else "%.6g" % v for v in row.tolist())
                else:
                    text = row_format % tuple(row.tolist())
                fh.write(cell(mid) + text + "\n")
    return path


def print_summary(summary: dict[str, Any]) -> None:
    """What was predicted, what was skipped and why, which model and how fast."""
    from rich.console import Console
    from rich.table import Table

    console = Console(stderr=True)
    model = summary["model"]
    console.print(f"model {Path(model['checkpoint']).name} ({model['target']}), trained on {model['trained_on']}; "
                  f"{summary['materials_per_second']} materials/s")
    table = Table()
    table.add_column("materials")
    table.add_column("count", justify="right")
    table.add_row("read", str(summary["n_inputs"]))
    table.add_row("predicted", str(summary["n_predicted"]))
    if (summary.get("outside_domain") or {}).get("count"):
        table.add_row("predicted, outside the training domain", str(summary["outside_domain"]["count"]))
    for reason, n in sorted(summary["skipped_by_reason"].items(), key=lambda kv: -kv[1]):
        table.add_row(f"skipped: {reason.replace('_', ' ')}", str(n))
    if summary.get("incomplete_inputs"):
        table.add_row("input files that end early", str(len(summary["incomplete_inputs"])))
    console.print(table)


def load_predictions(output: str | Path, spectrum: str = "eps_imag") -> tuple[Any, np.ndarray, np.ndarray]:
    """``(materials DataFrame, energy [2001], spectra [n, 2001])`` of a prediction folder, rows aligned."""
    import pandas as pd
    import pyarrow.parquet as pq

    output = Path(output)
    materials = pd.read_parquet(output / "materials.parquet")
    parts = sorted((output / "spectra").glob("part-*.parquet"))
    table = pd.concat([pq.read_table(p, columns=["source", spectrum]).to_pandas() for p in parts], ignore_index=True)
    by_source = dict(zip(table.source, table[spectrum]))
    return materials, ENERGY_GRID, np.stack([by_source[s] for s in materials.source]).astype(np.float32)


def _spectra_of(output: Path, sources: list[str], spectrum: str = "eps_imag") -> dict[str, np.ndarray]:
    import pyarrow.dataset as ds

    dataset = ds.dataset(output / "spectra", format="parquet")
    table = dataset.to_table(columns=["source", spectrum], filter=ds.field("source").isin(sources))
    return {s: np.asarray(v, dtype=np.float32) for s, v in zip(table.column("source").to_pylist(),
                                                                 table.column(spectrum).to_pylist())}


def plot_predictions(output: Path, ids: Sequence[str], path: Path, info: dict[str, Any],
                     sources: Sequence[str] | None = None, title: str = "") -> Path:
    """Predicted Im ε for a handful of materials; a model trained on SYNTHETIC data says so."""
    import pandas as pd

    from ..utils.plots import plt, save_figure

    if sources is None:
        materials = pd.read_parquet(output / "materials.parquet", columns=["id", "source"])
        sources = materials.set_index("id").loc[list(ids), "source"].tolist()
    spectra = _spectra_of(output, list(sources))
    bands = None
    if info.get("ensemble"):
        lower, upper = _spectra_of(output, list(sources), "eps_imag_lower"), _spectra_of(output, list(sources),
                                                                                          "eps_imag_upper")
        bands = (lower, upper)
    fig, ax = plt.subplots(figsize=(7, 4))
    for mid, src in zip(ids, sources):
        line = ax.plot(ENERGY_GRID, spectra[src], label=mid, lw=1.2)[0]
        if bands is not None:  # the ensemble's calibrated band, shaded
            ax.fill_between(ENERGY_GRID, bands[0][src], bands[1][src], color=line.get_color(), alpha=0.25, lw=0)
    ax.set(xlabel="photon energy (eV)", ylabel="predicted Im ε(ω)", xlim=(0, 20), title=title)
    ax.legend(fontsize=8)
    if bands is not None:
        ax.annotate(f"shaded: the ensemble's calibrated {int(round(100 * info.get('level', 0.9)))} % band",
                    xy=(0.01, 0.97), xycoords="axes fraction", va="top", fontsize=7)
    if info.get("synthetic"):
        fig.suptitle("a model trained on SYNTHETIC data (generated, not physics)", color="tab:red")
    return save_figure(fig, path)


def rankable_columns(predictor: Predictor) -> list[str]:
    """The numeric per-material columns a prediction by ``predictor`` writes (``rank_by`` may name one)."""
    from ..spectra.optics import SCALARS

    if predictor.is_sc_model:
        columns = ["sc_rpa_ipa"]
    else:
        columns = list(SCALARS)
        if predictor.is_ensemble:
            columns += [f"{k}_std" for k in SCALARS] + ["onset_fraction"]
        if predictor.calibration is not None:
            columns.append("expected_sc_error")
    return columns + ["nsites", "volume_per_site"]


def write_ranking(output: Path, materials, rank_by: str, top: int, info: dict[str, Any], ascending: bool = False,
                  figure: bool = True) -> list[Path]:
    """``top_<N>_<rank_by>.csv`` (highest first; lowest with ``ascending``) and a figure of their spectra."""
    if rank_by not in materials.columns:
        numeric = [c for c in materials.columns if materials[c].dtype.kind == "f"]
        raise ValueError(f"rank_by={rank_by}: no such column; rank by one of {', '.join(numeric)}")
    best = materials.sort_values(rank_by, ascending=ascending).head(top)
    csv_path = atomic_write_text(best.to_csv(index=False, float_format="%.6g"), output / f"top_{top}_{rank_by}.csv")
    if not figure:
        return [csv_path]
    png = plot_predictions(output, best.id.tolist(), output / f"top_{top}_{rank_by}.png", info,
                           sources=best.source.tolist(),
                           title=f"{'lowest' if ascending else 'top'} {len(best)} by {rank_by}")
    return [csv_path, png]


if __name__ == "__main__":  # the command lives in cli.py (a library module must not import its entry point)
    raise SystemExit("error: run predictions with `optimate-pl-predict checkpoint=... input=...` "
                     "(`python -m optimate_pl.inference.screening` was the entry of earlier versions)")
