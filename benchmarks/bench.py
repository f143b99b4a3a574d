"""Benchmark: our training/evaluation paths against a reference-style loop, measured in one run.

    python benchmarks/bench.py [--graphs 1024] [--epochs 3] [--rounds 2] [--device auto] [--no-compile] [--out bench.md]

(``make bench`` runs it; it is tooling, not part of the package.)

Reference style (as the authors' notebooks): a Python list of PyG ``Data`` objects with edge
features precomputed, PyG ``DataLoader``, a minimal LightningModule with the same network, and
evaluation one material at a time. Ours: the cached :class:`GraphStore` with our DataModule
(batches gathered from the store) and :class:`SpectraModule`, the device-resident batches, the
same with ``torch.compile``, and batched evaluation. Same data, same device, same number of timed
epochs after one warm-up epoch (which also absorbs any compilation), every run in a fresh process,
in rounds of alternating order. Numbers are on SYNTHETIC data.
"""
from __future__ import annotations

import argparse
import multiprocessing
import re
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch_geometric.data import Batch

from optimate_pl.utils.allocator import keep_freed_memory
from optimate_pl.utils.atomic import atomic_write_text
from optimate_pl.config import load_train_config, model_net
from optimate_pl.data.build import synthetic_stores
from optimate_pl.data.datamodule import IPADataModule
from optimate_pl.data.store import GraphStore
from optimate_pl.models import Optimate, SpectraModule, count_parameters
from optimate_pl.training.trainer import compile_network


class EpochTimer(pl.Callback):
    """Wall time of every training epoch (synchronised on GPU)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def _sync(self, trainer) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.synchronize()

    def on_train_epoch_start(self, trainer, module) -> None:
        self._sync(trainer)
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self._sync(trainer)
        self.times.append(time.perf_counter() - self._t0)


class ReferenceModule(pl.LightningModule):
    """The minimal module of a notebook: forward, L1 loss, Adam."""

    def __init__(self, net: dict, lr: float = 1e-3) -> None:
        super().__init__()
        self.model, self.lr = Optimate(**net), lr

    def training_step(self, batch, batch_idx):
        return F.l1_loss(self.model(batch), batch.y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def _quiet_lightning() -> None:
    # The table is the output: no "GPU available"/tip lines for each of the dozen short fits.
    import logging
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")


def _trainer(accelerator: str, epochs: int, timer: EpochTimer, precision: str) -> pl.Trainer:
    return pl.Trainer(accelerator=accelerator, devices=1, max_epochs=epochs + 1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      limit_val_batches=0, num_sanity_val_steps=0, callbacks=[timer], precision=precision)


def train_throughput(kind: str, cache_dir: str, graphs: int, model_name: str, batch_size: int, epochs: int,
                     accelerator: str, precision: str, drop_last: bool) -> dict[str, float]:
    """One training run: ``graphs`` and ``seconds`` of the timed epochs, ``warmup`` (seconds of the
    warm-up epoch), ``rss_mib`` (peak RSS of the process) and ``gpu_mib`` (peak GPU memory).

    ``kind``: ``reference`` (a plain script: list of ``Data``, PyG ``DataLoader``, minimal module,
    no process settings), ``ours`` (our DataModule and module, with the process settings that
    ``python -m optimate_pl`` applies), ``ours-resident`` (device-resident batches) or
    ``ours-compiled`` (device-resident on a GPU, our DataLoader on a CPU, plus ``torch.compile``) or
    ``ours-edges`` (our DataLoader, ``compile_edges=true``: the GATv2 edge work compiled) or
    ``ours-edges-bf16`` (the same in ``bf16-mixed``, the authors' training precision, on a CPU with bf16 units) or
    ``ours-edges-resident`` (device-resident batches with the edge work compiled: fewer kernel launches on a GPU) or
    ``ours-static`` (``data.static_shapes=true``: batches padded to bucket sizes; device-resident on a GPU) or
    ``ours-static-compiled`` (the same plus ``torch.compile``: on a GPU ``mode=reduce-overhead``, each step
    replayed as the CUDA graph recorded for its bucket shape).
    Run it in a fresh process (:func:`_fresh`): the allocator setting lasts for a process.
    """
    from torch_geometric.loader import DataLoader

    _quiet_lightning()
    dm = IPADataModule(source="synthetic", cache_dir=cache_dir, subset=graphs)
    dm.setup()
    net = TINY_NET if model_name == "tiny" else model_net(model_name)
    torch.manual_seed(0)
    timer = EpochTimer()
    trainer = _trainer(accelerator, epochs, timer, "bf16-mixed" if kind == "ours-edges-bf16" else precision)
    if kind == "reference":
        data_list = [dm.train_set[i] for i in range(len(dm.train_set))]  # a list of Data, as notebooks do
        loader = DataLoader(data_list, batch_size=batch_size, shuffle=True, drop_last=drop_last)
        trainer.fit(ReferenceModule(net), train_dataloaders=loader)
    else:
        keep_freed_memory(int(load_train_config().keep_freed_memory_mb) * 2**20)
        dm.batch_size, dm.drop_last = batch_size, drop_last
        static = kind in ("ours-static", "ours-static-compiled")
        dm.device_resident = kind in ("ours-resident", "ours-edges-resident") or \
            (kind in ("ours-compiled", "ours-static", "ours-static-compiled") and accelerator == "gpu")
        dm.static_shapes = static
        module = SpectraModule(net=net)
        if kind == "ours-compiled":
            compile_network(module.model)
        elif kind == "ours-static-compiled":
            compile_network(module.model, static_shapes=True, device_type="cuda" if accelerator == "gpu" else "cpu")
        elif kind in ("ours-edges", "ours-edges-bf16", "ours-edges-resident"):
            module.model.compile_edges()  # compile_edges=true: only the GATv2 edge work compiled
        trainer.fit(module, train_dataloaders=dm.train_dataloader())
    n = len(dm.train_set) - (len(dm.train_set) % batch_size if drop_last else 0)
    return {"graphs": n * epochs, "seconds": sum(timer.times[1:]), "warmup": timer.times[0],
            "rss_mib": peak_rss_mib(),
            "gpu_mib": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0}


def _fresh(fn, *args):
    """``fn(*args)`` in a new Python process (spawned: no state inherited from this one)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


@torch.no_grad()
def eval_throughput(dm: IPADataModule, net: dict, device: torch.device, batched: bool) -> float:
    """Test graphs per second: one material at a time (reference) or batches of 256 (ours)."""
    model = Optimate(**net).to(device).eval()
    ds = dm.test_set
    t0 = time.perf_counter()
    if batched:
        for batch in ds.batches(256):
            model(batch.to(device))
    else:
        for i in range(len(ds)):  # as the authors: one Data, collated alone
            model(Batch.from_data_list([ds[i]]).to(device))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(ds) / (time.perf_counter() - t0)


# -- screening: files -> spectra + derived properties -------------------------------------------------

PREDICT = "import sys; from optimate_pl.cli import predict_main; sys.argv[0] = 'optimate-pl-predict'; predict_main()"


def screening_inputs(folder: Path, sizes: list[int]) -> dict[int, Path]:
    """JSON.bz2 files of ``n`` ComputedStructureEntry dicts each, as Alexandria distributes its structures
    (a structure, an energy and a few metadata fields), of real-looking crystals (the synthetic
    generator's pymatgen prototypes, 1-20 sites)."""
    import bz2
    import json

    from pymatgen.entries.computed_entries import ComputedStructureEntry

    from optimate_pl.data import synthetic

    n = max(sizes)
    records = synthetic.generate(0, ipa_sizes=(int(n * 0.8) + 10, n // 10 + 5, n // 10 + 5),
                                 rpa_sizes=(10, 2, 2)).ipa
    entries = [ComputedStructureEntry(r.structure, energy=-1.0, data={"mat_id": r.mat_id, "formula": r.formula,
                                                                      "nsites": r.nsites}).as_dict()
               for r in records[:n]]
    paths = {}
    for size in sizes:
        paths[size] = folder / f"entries_{size}.json.bz2"
        with bz2.open(paths[size], "wt") as fh:
            json.dump({"entries": entries[:size]}, fh)
    return paths


#: Real structures (Alexandria, ≤ 6 sites) for the real-entry screening row; nothing is downloaded.
ALEXANDRIA = Path("/work/shared/data/alexandria_le6_structures.json.gz")


def alexandria_entry(record: dict, rng) -> dict:
    """A ``ComputedStructureEntry`` dict as Alexandria distributes it: the structure, energy, correction,
    ``entry_id`` and a ``data`` dict of ~20 fields (the record's own, plus plausible values for the rest)."""
    structure, own = record["structure"], dict(record.get("data") or {})
    nsites = len(structure["sites"])
    counts: dict[str, float] = {}
    for site in structure["sites"]:
        for sp in site["species"]:
            counts[sp["element"]] = counts.get(sp["element"], 0.0) + float(sp["occu"])
    energy = float(rng.normal(-5.5, 1.5) * nsites)
    correction = float(rng.choice([0.0, 0.0, -0.687 * nsites]))
    gap = float(own.get("band_gap_ind", abs(rng.normal(1.0, 1.0))))
    data = {"mat_id": own.get("mat_id"), "prototype_id": own.get("prototype_id", ""),
            "location": f"database/alexandria_{own.get('mat_id', '')[-3:]}.json.bz2",
            "formula": own.get("formula"), "elements": own.get("elements", sorted(counts)),
            "spg": int(own.get("spg", 1)), "nsites": nsites, "band_gap_ind": gap,
            "band_gap_dir": float(own.get("band_gap_dir", gap + abs(rng.normal(0, 0.2)))),
            "dos_ef": float(rng.normal(3.0, 2.0)), "energy_corrected": energy + correction,
            "energy_total": energy, "total_mag": float(abs(rng.normal(0, 1)) if rng.random() < 0.2 else 0.0),
            "e_form": float(own.get("e_form", rng.normal(-1, 0.8))),
            "e_above_hull": float(own.get("e_above_hull", abs(rng.normal(0.1, 0.1)))),
            "e_phase_separation": float(rng.normal(0.05, 0.05)),
            "decomposition": " ".join(f"{el}1" for el in sorted(counts)),
            "stress": rng.normal(0, 0.5, (3, 3)).round(6).tolist(),
            "energy_cutoff": 520.0, "kpoints": [int(k) for k in rng.integers(4, 12, 3)],
            "magmoms": [0.0] * nsites, "band_gap_method": "PBE"}
    return {"@module": "pymatgen.entries.computed_entries", "@class": "ComputedStructureEntry",
            "energy": energy + correction, "composition": counts, "entry_id": data["mat_id"],
            "correction": correction, "energy_adjustments": [], "parameters": {}, "data": data,
            "structure": structure}


def alexandria_inputs(folder: Path, sizes: list[int]) -> dict[int, Path] | None:
    """JSON.bz2 files ``{"entries": [...]}`` of ``n`` real Alexandria structures (:data:`ALEXANDRIA`, repeated
    in order where ``n`` exceeds them) as full ComputedStructureEntry dicts (:func:`alexandria_entry`), for
    each ``n`` of ``sizes``. ``None`` where the structures file is not on this machine (nothing is downloaded)."""
    import bz2
    import gzip
    import json
    from itertools import cycle, islice

    import numpy as np

    if not ALEXANDRIA.is_file():
        return None
    with gzip.open(ALEXANDRIA, "rt") as fh:
        records = json.load(fh)
    rng = np.random.default_rng(0)
    entries = [alexandria_entry(r, rng) for r in records]
    paths = {}
    for size in sizes:
        paths[size] = folder / f"alexandria_{size}.json.bz2"
        with bz2.open(paths[size], "wt") as fh:
            json.dump({"entries": list(islice(cycle(entries), size))}, fh)
    return paths


def peak_rss_mib(pid: int | str = "self") -> float:
    """Peak RSS (MiB) of a process's own memory (``VmHWM``; 0 where /proc is missing).

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a child at fork/exec, so every
    child of this (large) benchmark process would report at least this process's peak."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmHWM:\s+(\d+) kB", text, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else 0.0


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one command (its main process), run to completion.

    The peak is sampled from /proc every 20 ms while the command runs (see :func:`peak_rss_mib`)."""
    import subprocess

    t0 = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, peak_rss_mib(proc.pid))
        time.sleep(0.02)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark command failed ({proc.returncode}): {' '.join(command)}")
    return seconds, peak


def _screen_weights(folder: Path) -> Path:
    """The untrained IPA-architecture weight file that every screening row predicts with."""
    weights = folder / "eps_ipa.pt"
    if not weights.is_file():
        torch.manual_seed(0)
        torch.save(Optimate().state_dict(), weights)
    return weights


def steady_state(runs: dict, sizes: dict[str, list[int]], repeats: int) -> dict[str, dict]:
    """Throughput and start-up of each command from its wall times at several input sizes.

    ``runs[name](size)`` returns (wall seconds, peak RSS MiB). Every (command, size) is run ``repeats`` times,
    interleaved across commands so that a drift of the machine's speed hits all of them, and the fastest of
    each is kept (the least disturbed; a one-shot difference of two few-second runs swung the ratios 2-7x).
    A least-squares line ``t = start + size / rate`` through those minima gives the steady-state rate and the
    fixed cost (with two sizes: the line through both). Returns ``{name: {"rate", "start", "rss": {size: MiB}}}``,
    the peak RSS being the largest over the repeats of that size. Needs two sizes or more for every command."""
    import numpy as np

    best: dict[str, dict[int, tuple[float, float]]] = {name: {} for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            for size in sizes[name]:
                seconds, rss = run(size)
                old = best[name].get(size)
                best[name][size] = (min(seconds, old[0]), max(rss, old[1])) if old else (seconds, rss)
    out = {}
    for name, times in best.items():
        xs = np.array(sorted(times), dtype=float)
        if len(xs) < 2:
            raise ValueError(f"steady_state: {name} needs at least two input sizes, got {list(times)}")
        slope, start = np.polyfit(xs, [times[int(x)][0] for x in xs], 1)
        if slope <= 0:  # the larger input was not slower: the sizes are too small for this machine's noise
            raise RuntimeError(f"steady_state: {name} took no longer on {int(xs[-1])} than on {int(xs[0])} inputs; "
                               f"use a larger --screen")
        out[name] = {"rate": 1.0 / slope, "start": float(start), "rss": {k: v[1] for k, v in times.items()}}
    return out


def _rss_note(result: dict) -> str:
    """``"984 / 1078 MiB at 1000 / 4000"``: a :func:`steady_state` command's peak RSS at each input size."""
    return (" / ".join(f"{v:.0f}" for v in result["rss"].values()) + " MiB at "
            + " / ".join(str(size) for size in result["rss"]))


def screening_real(folder: Path, n: int, accelerator: str, repeats: int = 3) -> list[tuple[str, str, str, str]]:
    """Real Alexandria entries (full ``data`` dicts, :func:`alexandria_inputs`): ours with the benchmark's
    settings (``format=parquet plot=0``) and with the command's defaults (CSV tables, spectra.csv, figure)
    against the reference pipeline, in fresh processes, by :func:`steady_state` (ours on n and 4n entries, the
    slower reference on n and 2n)."""
    import sys

    inputs = alexandria_inputs(folder, [n, 2 * n, 4 * n])
    if inputs is None:
        return [("screen real Alexandria entries", "skipped",
                 f"{ALEXANDRIA} not on this machine (nothing is downloaded)", "")]
    weights = _screen_weights(folder)
    here = Path(__file__).parent

    def ours(size: int, *extra: str) -> tuple[float, float]:
        return timed([sys.executable, "-c", PREDICT, f"checkpoint={weights}", f"input={inputs[size]}",
                      f"output={folder / f'real_ours_{size}'}", f"chunk_size={max(1, n // 2)}",
                      f"trainer.accelerator={accelerator}", "resume=false", *extra])

    def reference(size: int) -> tuple[float, float]:
        return timed([sys.executable, str(here / "reference_screen.py"), str(weights), str(inputs[size]), str(size),
                      str(folder / f"real_reference_{size}.npz")])

    runs = {"ours": lambda size: ours(size, "format=parquet", "plot=0"), "reference": reference,
            "ours-defaults": ours,
            "ours-compiled": lambda size: ours(size, "format=parquet", "plot=0", "compile_edges=true")}
    sizes = {"ours": [n, 4 * n], "reference": [n, 2 * n], "ours-defaults": [n, 4 * n], "ours-compiled": [n, 4 * n]}
    res = steady_state(runs, sizes, repeats)
    labels = {"reference": "reference pipeline", "ours": "ours (optimate-pl-predict format=parquet plot=0)",
              "ours-defaults": "ours (optimate-pl-predict, defaults: CSV tables and spectra.csv, figure)",
              "ours-compiled": "ours, compiled edge work from the start (format=parquet plot=0 compile_edges=true; "
                               "what `auto` switches to after 10,000 materials)"}
    return [(f"screen real Alexandria entries (full data dicts), files to spectra + derived: {labels[k]}",
             f"{res[k]['rate']:.0f} structures/s",
             f"start-up {res[k]['start']:.1f} s; peak RSS {_rss_note(res[k])} entries; best of {repeats}",
             f"{res[k]['rate'] / res['reference']['rate']:.2f}x")
            for k in ("reference", "ours", "ours-defaults", "ours-compiled")]


def screening(folder: Path, n: int, accelerator: str, repeats: int = 3) -> list[tuple[str, str, str, str]]:
    """Ours (``optimate-pl-predict`` on a JSON.bz2) against the reference pipeline in fresh processes, by
    :func:`steady_state`: ours on n and 4n structures, the slower reference on n and 2n. Ours runs in chunks
    of n/2, so n and 4n structures are 2 and 8 chunks: its peak memory must not grow with them (the
    reference holds every graph in memory)."""
    import sys

    from pymatgen.core import Structure

    from optimate_pl.data.featurize import graph_arrays

    weights = _screen_weights(folder)
    inputs = screening_inputs(folder, [1, n, 2 * n, 4 * n])
    here = Path(__file__).parent

    def ours(size: int) -> tuple[float, float]:
        return timed([sys.executable, "-c", PREDICT, f"checkpoint={weights}", f"input={inputs[size]}",
                      f"output={folder / f'ours_{size}'}", "format=parquet", "plot=0", f"chunk_size={max(1, n // 2)}",
                      f"trainer.accelerator={accelerator}", "resume=false"])

    def reference(size: int) -> tuple[float, float]:
        return timed([sys.executable, str(here / "reference_screen.py"), str(weights), str(inputs[size]), str(size),
                      str(folder / f"reference_{size}.npz")])

    res = steady_state({"ours": ours, "reference": reference}, {"ours": [n, 4 * n], "reference": [n, 2 * n]}, repeats)
    startup_ours = min(ours(1)[0] for _ in range(repeats))
    rss = {k: _rss_note(v) for k, v in res.items()}
    rows = [("screen structures, files to spectra + derived: reference pipeline",
             f"{res['reference']['rate']:.0f} structures/s",
             f"start-up {res['reference']['start']:.1f} s; peak RSS {rss['reference']}; best of {repeats}", "1.00x"),
            ("screen structures, files to spectra + derived: ours (optimate-pl-predict)",
             f"{res['ours']['rate']:.0f} structures/s",
             f"start-up {res['ours']['start']:.1f} s (one structure: {startup_ours:.1f} s); peak RSS {rss['ours']}; "
             f"best of {repeats}", f"{res['ours']['rate'] / res['reference']['rate']:.2f}x")]
    import bz2
    import json

    from reference_screen import notebook_graph

    with bz2.open(inputs[n], "rt") as fh:
        structures = [Structure.from_dict(e["structure"]) for e in json.load(fh)["entries"]]
    speed = {}
    for name, fn in (("pymatgen get_all_neighbors, as the notebook", notebook_graph),
                     ("ours (matscipy neighbour list)", lambda s: graph_arrays(s, 5.0))):
        t0 = time.perf_counter()
        for s in structures:
            fn(s)
        speed[name] = len(structures) / (time.perf_counter() - t0)
    base = next(iter(speed.values()))
    rows += [(f"featurise {len(structures)} structures (one process): {k}", f"{v:.0f} structures/s", "",
              f"{v / base:.2f}x") for k, v in speed.items()]
    return rows


def training(args, cache: str, accelerator: str, precision: str, device: torch.device) -> list[tuple[str, str, str, str]]:
    """Dataset building, training throughput (ours vs the reference loop) and evaluation rows."""
    rows: list[tuple[str, str, str, str]] = []
    t0 = time.perf_counter()
    paths = synthetic_stores(cache)
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    n_ipa, n_rpa = len(GraphStore.load(paths["ipa"])[0]), len(GraphStore.load(paths["rpa"])[0])
    reload = time.perf_counter() - t0
    n = n_ipa + n_rpa
    rows.append((f"dataset: generate + featurise ({n_ipa} IPA + {n_rpa} RPA)", f"{n / build:.0f} mat/s",
                 f"cached reload {n / reload:.0f} mat/s", f"{build / reload:.0f}x"))
    for label, model_name, bs, drop in (("IPA/TL architecture, batch 128", "ipa", 128, False),
                                        ("DL-300 architecture, batch 20", "dl_300", 20, True)):
        kinds = {"reference": "reference loop", "ours": "ours (DataLoader)",
                 "ours-resident": "ours (device-resident)", "ours-compiled": "ours + torch.compile",
                 "ours-edges": "ours + compile_edges", "ours-static": "ours, static shapes (data.static_shapes)"}
        if accelerator == "gpu":  # CUDA graphs; on a CPU it is the ours-compiled row plus padding
            kinds["ours-static-compiled"] = "ours, static shapes + torch.compile reduce-overhead (CUDA graphs)"
        if accelerator == "cpu" and torch.ops.mkldnn._is_mkldnn_bf16_supported():  # native bf16 (AVX512-BF16, AMX)
            kinds["ours-edges-bf16"] = "ours + compile_edges + bf16-mixed (the authors' training precision)"
        if args.no_compile:
            for kind in ("ours-compiled", "ours-edges", "ours-edges-bf16", "ours-static-compiled"):
                kinds.pop(kind, None)
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
        # Every run in a fresh process, in rounds of alternating order (ABCD, DCBA, ...) so that a
        # slow or fast spell of a shared machine does not favour one path. Throughput = all timed
        # graphs / all timed seconds (time to result; epochs vary with the allocator's state).
        for r in range(args.rounds):
            for kind in (list(kinds) if r % 2 == 0 else list(kinds)[::-1]):
                run = _fresh(train_throughput, kind, cache, args.graphs, model_name, bs, args.epochs,
                             accelerator, precision, drop)
                runs[kind].append(run)
        speed = {k: sum(r["graphs"] for r in rs) / sum(r["seconds"] for r in rs) for k, rs in runs.items()}
        for kind, name in kinds.items():
            rss, gpu = max(r["rss_mib"] for r in runs[kind]), max(r["gpu_mib"] for r in runs[kind])
            mem = f"peak RSS {rss:.0f} MiB" + (f", GPU {gpu:.0f} MiB" if gpu else "")
            # The first run's warm-up includes a cold compilation (later ones hit the compile cache).
            rows.append((f"train {label}: {name}", f"{speed[kind]:.0f} graphs/s",
                         f"first warm-up epoch {runs[kind][0]['warmup']:.1f} s; {mem}",
                         f"{speed[kind] / speed['reference']:.2f}x"))
    dm = IPADataModule(source="synthetic", cache_dir=cache, subset=args.graphs, eval_batch_size=256)
    dm.setup()
    net = model_net("ipa")
    one = eval_throughput(dm, net, device, batched=False)
    batched = eval_throughput(dm, net, device, batched=True)
    rows.append(("evaluate IPA architecture: one material at a time", f"{one:.0f} graphs/s", "", "1.00x"))
    rows.append(("evaluate IPA architecture: batched (256)", f"{batched:.0f} graphs/s", "", f"{batched / one:.2f}x"))
    return rows


#: A network whose compute is negligible: its seconds per step are the framework's own (issue #36's overhead rows).
TINY_NET = {"node_widths": [8], "gat_layers": [[8, 1]], "out_widths": [8], "out_dim": 2001}


def overhead(args, cache: str, accelerator: str, precision: str, fresh: bool = True,
             sizes: dict[str, list[int]] | None = None) -> list[tuple[str, str, str, str]]:
    """Milliseconds per training step of the tiny network: ours (DataLoader, module, metrics, logging) against the
    reference loop, at the TL and DL batch sizes; a ratio below 1 means less overhead than the plain loop.
    ``fresh``: each run in a new process (the timings); ``False`` runs them here (the GPU check's CPU smoke test,
    which also passes its small synthetic ``sizes``)."""
    synthetic_stores(cache, **({"ipa_sizes": sizes["ipa"], "rpa_sizes": sizes["rpa"]} if sizes else {}))
    rows: list[tuple[str, str, str, str]] = []
    call = _fresh if fresh else (lambda fn, *a: fn(*a))
    for bs, drop in ((128, False), (20, True)):
        runs: dict[str, list[dict[str, float]]] = {"reference": [], "ours": []}
        for r in range(args.rounds):
            for kind in (("reference", "ours") if r % 2 == 0 else ("ours", "reference")):
                runs[kind].append(call(train_throughput, kind, cache, args.graphs, "tiny", bs, args.epochs,
                                       accelerator, precision, drop))
        ms = {k: 1000 * sum(r["seconds"] for r in rs) / sum(r["graphs"] for r in rs) * bs for k, rs in runs.items()}
        for kind in ("reference", "ours"):
            rows.append((f"framework overhead, tiny network, batch {bs}: {kind}", f"{ms[kind]:.2f} ms/step", "",
                         f"{ms[kind] / ms['reference']:.2f}x the reference's time"))
    return rows


#: The backbones of conf/model/ timed side by side (issue #35's "≤ 3x OPTIMATE's seconds per epoch").
BACKBONES = ("ipa", "dimenet", "visnet")


def backbones(args, cache: str, accelerator: str, precision: str) -> list[tuple[str, str, str, str]]:
    """Training throughput of every backbone through our DataLoader and module, as OPTIMATE's ratio (>1: slower)."""
    synthetic_stores(cache)
    rows: list[tuple[str, str, str, str]] = []
    for label, bs, drop in (("batch 128 (IPA/TL)", 128, False), ("batch 20 (DL)", 20, True)):
        runs: dict[str, list[dict[str, float]]] = {k: [] for k in BACKBONES}
        for r in range(args.rounds):
            for name in (BACKBONES if r % 2 == 0 else BACKBONES[::-1]):
                runs[name].append(_fresh(train_throughput, "ours", cache, args.graphs, name, bs, args.epochs,
                                         accelerator, precision, drop))
        per_epoch = {k: sum(r["seconds"] for r in rs) / (len(rs) * args.epochs) for k, rs in runs.items()}
        for name in BACKBONES:
            params = count_parameters(SpectraModule(net=model_net(name)).model)
            rows.append((f"backbone {'optimate' if name == 'ipa' else name}, {label}",
                         f"{per_epoch[name]:.2f} s/epoch ({args.graphs} graphs)", f"{params / 1e6:.2f} M parameters",
                         f"{per_epoch[name] / per_epoch['ipa']:.2f}x OPTIMATE's time"))
    return rows


def main(argv: list[str] | None = None) -> str:
    """Run every measurement and print (and optionally write) a Markdown table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--graphs", type=int, default=1024, help="training graphs for the throughput runs")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs after one warm-up epoch")
    p.add_argument("--rounds", type=int, default=2, help="repeat every training measurement, alternating the order")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows (they compile first)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--out", default=None, help="also write the table to this Markdown file")
    p.add_argument("--screen", type=int, default=1000, help="structures of the screening measurement (and 2x, 4x that)")
    p.add_argument("--only-screening", action="store_true", help="measure screening only")
    p.add_argument("--only-training", action="store_true", help="measure dataset building, training and evaluation only")
    p.add_argument("--only-backbones", action="store_true", help="measure the backbones' seconds per epoch only")
    p.add_argument("--no-backbones", action="store_true", help="skip the backbone rows")
    p.add_argument("--only-overhead", action="store_true", help="measure the framework's overhead per step only")
    p.add_argument("--no-real", action="store_true", help="skip the screening rows on real Alexandria entries")
    p.add_argument("--only-real", action="store_true", help="measure the real-entry screening rows only")
    p.add_argument("--repeats", type=int, default=3, help="runs of each screening command and size (the fastest kept)")
    args = p.parse_args(argv)
    _quiet_lightning()
    accelerator = "gpu" if args.device == "gpu" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    device = torch.device("cuda" if accelerator == "gpu" else "cpu")
    precision = "bf16-mixed" if accelerator == "gpu" else "32-true"
    rows: list[tuple[str, str, str, str]] = []
    with tempfile.TemporaryDirectory() as work:
        only = args.only_screening or args.only_real or args.only_training or args.only_backbones or args.only_overhead
        if not only or args.only_training:
            rows += training(args, work, accelerator, precision, device)
        if not only or args.only_overhead:
            rows += overhead(args, work, accelerator, precision)
        if (not only or args.only_backbones) and not args.no_backbones:
            rows += backbones(args, work, accelerator, precision)
        if not only or args.only_screening:
            rows += screening(Path(work), args.screen, accelerator, args.repeats)
        if (not only or args.only_screening or args.only_real) and not args.no_real:
            rows += screening_real(Path(work), args.screen, accelerator, args.repeats)
    rss = peak_rss_mib()
    mem = f"peak RSS of the data/evaluation process {rss:.0f} MiB"
    dev_name = torch.cuda.get_device_name() if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"Benchmark on {dev_name}, SYNTHETIC data, {args.graphs} training graphs, {args.rounds} rounds "
             f"x {args.epochs} timed epochs after 1 warm-up, precision {precision}; {mem}", "",
             "| measurement | throughput | note | ratio |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows]
    table = "\n".join(lines)
    print(table)
    if args.out:
        atomic_write_text(table + "\n", Path(args.out))
    return table


if __name__ == "__main__":
    main()
