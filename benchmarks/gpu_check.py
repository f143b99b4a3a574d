"""GPU check (issue #23): the checklist for a lent GPU in one run, one table per device.

    python benchmarks/gpu_check.py [check] [--cpu] [--steps 1,2,...] [--out-dir benchmarks/gpu] [--work DIR]
    python benchmarks/gpu_check.py wheels  [--dir .gpu-wheels]   # here (network): the wheels the GPU machine lacks
    python benchmarks/gpu_check.py verify  [--dir .gpu-wheels]   # is that wheel set complete for its Python 3.12?
    python benchmarks/gpu_check.py install [--dir .gpu-wheels]   # there (no network): install them, then the project

``make gpu-check`` runs ``install`` then ``check``; ``make gpu-wheels`` runs ``wheels``. The checklist:

1. training throughput at the authors' batch sizes (IPA/TL architecture batch 128, DL-300 batch 20):
   our paths (DataLoader, device-resident batches, torch.compile) against the reference-style loop of
   ``make bench`` (the functions of ``benchmarks/bench.py``); goal >= 3x the reference at batch 128;
2. evaluation (batched forward vs one material at a time) and screening (``optimate-pl-predict`` on a
   JSON.bz2 written here vs ``benchmarks/reference_screen.py``, batch 1); goal >= 10x the reference;
3. bf16-mixed vs fp32: a short TL run (with its IPA pretraining) both ways from the same seed;
4. ``trainer=ddp trainer.devices=1`` (the DDP code path: NCCL on a GPU, gloo on a CPU) and
   ``trainer=gpu`` (``trainer=cpu`` on a CPU) both finish a short run;
5. the main command ``python -m optimate_pl strategy=tl data.subset=300`` (pretraining included) on its
   default data, the built-in GPAW ladder (real physics);
6. a torch profiler summary of 20 TL training steps, written beside the table.

On a GPU the check is sized to take under 8 minutes on one H100/H200. Without one (or with ``--cpu``)
every step runs a tiny CPU version (tiny synthetic databases or the small GPAW ladder, an epoch or two, ``torch.compile`` with
the eager backend) in about a minute on 2 cores: a smoke test of every step, not a measurement. A step
that fails is recorded as FAILED with its one-line error, the others still run, and the exit code is 1.
The table goes to ``<out-dir>/<device>.md`` and the profile to ``<out-dir>/<device>-profile.txt``.
Steps 1-4 and 6 run on SYNTHETIC data (paper-sized databases); step 5 on the GPAW ladder. Tooling, not part of the package: everything beyond the standard
library is imported inside the functions, so ``install`` runs before the project's dependencies exist.
"""
from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GPU_DIR = HERE / "gpu"
#: What the lent GPU machines' Python already holds (benchmarks/gpu/preinstalled.txt, from KINDS.md).
PREINSTALLED = GPU_DIR / "preinstalled.txt"
WHEELS = ROOT / ".gpu-wheels"
#: What travels to the device machine (working tree plus carried paths) may not exceed this.
TRAVEL_LIMIT_MIB = 64

TRAIN_GOAL = 3.0    # ours vs the reference loop, IPA/TL architecture at batch 128
DL_TRAIN_GOAL = 2.0  # and DL-300 at batch 20 (issue #36)
EVAL_GOAL = 10.0    # batched prediction vs the batch-1 reference
SC_TOLERANCE = 0.02  # |test SC median (bf16-mixed) - test SC median (fp32)|


# -- the checklist --------------------------------------------------------------------------------------

@dataclass
class Settings:
    """How big each step is: the GPU sizes aim at < 8 minutes on one H100; the CPU ones at a minute."""

    mode: str                      # "gpu" or "cpu"
    graphs: int                    # training graphs of the throughput runs (step 1)
    epochs: int                    # timed epochs after one warm-up epoch (step 1)
    fresh: bool                    # every throughput run in a fresh process (as make bench)
    screen: int                    # structures of the screening inputs (step 2; and twice that on a GPU)
    tl_subset: int                 # step 3
    tl_epochs: int
    pretrain_epochs: int
    short_subset: int              # step 4
    short_epochs: int
    main_overrides: list[str]      # step 5: added to `strategy=tl data.subset=300` (the GPAW ladder, as the README's)
    profile_steps: int = 20        # step 6
    profile_batch: int = 128       # step 6: TL's batch size
    compile: bool = False          # step 1: the whole-network torch.compile rows (--compile; on the H200
                                   # 2026-11-27 0.93x/0.32x the reference after 50-70 s of compilation)
    timeout: int = 420             # seconds for one subprocess
    sizes: dict[str, list[int]] | None = None  # synthetic database sizes (None: the full default)

    def data_overrides(self) -> list[str]:
        """Steps 1-4 and 6: the synthetic databases (the command's default data is the GPAW ladder)."""
        if not self.sizes:
            return ["data.source=synthetic"]
        return ["data.source=synthetic", *(f"data.synthetic_sizes.{kind}=[{','.join(map(str, self.sizes[kind]))}]"
                                           for kind in ("ipa", "rpa"))]

    @property
    def accelerator(self) -> str:
        return "gpu" if self.mode == "gpu" else "cpu"

    @property
    def precision(self) -> str:  # step 1's and 6's: bf16-mixed on a GPU; fp32 in the CPU smoke, whatever the CPU
        return "bf16-mixed" if self.mode == "gpu" else "32-true"


def settings_for(mode: str) -> Settings:
    if mode == "gpu":
        return Settings(mode, graphs=4096, epochs=3, fresh=True, screen=500, tl_subset=300, tl_epochs=40,
                        pretrain_epochs=10, short_subset=1024, short_epochs=2, main_overrides=[], timeout=420)
    # Tiny: 480 IPA / 320 RPA training materials (enough for data.subset=300), an epoch or two.
    return Settings(mode, graphs=64, epochs=1, fresh=False, screen=8, tl_subset=64, tl_epochs=2, pretrain_epochs=1,
                    short_subset=64, short_epochs=1, profile_batch=32,
                    # One batch per stage: the wiring of the main command (pretraining, checkpoint, test); the real
                    # command's numbers are tests/cli/test_train.py's (41 s of this smoke's 168 s before).
                    main_overrides=["debug=fast"], timeout=300,
                    sizes={"ipa": [480, 60, 60], "rpa": [320, 40, 40]})


@dataclass
class Row:
    """One step of the table: what it measured (``result``), its goal, wall seconds and ok/FAILED."""

    number: int
    title: str
    result: str = ""
    goal: str = ""
    seconds: float = 0.0
    status: str = "ok"
    details: list[tuple[str, str, str]] = field(default_factory=list)  # (measurement, value, note)

    @property
    def failed(self) -> bool:
        return self.status.startswith("FAILED")


@dataclass
class Context:
    s: Settings
    work: Path
    cache: Path
    out_dir: Path
    device_label: str
    profile_path: Path | None = None

    def python(self, *args: str) -> list[str]:
        return [sys.executable, *args]


def one_line(err: BaseException) -> str:
    """An exception as one line: its type and the first line of its message (or the last of a log)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".strip().rstrip(":")[:300]


def run_step(number: int, title: str, fn: Callable[[Context, Row], None], ctx: Context) -> Row:
    """Run one step, timed; an exception makes it FAILED with its one-line error (the others still run)."""
    row = Row(number, title)
    print(f"\n== step {number}: {title}", flush=True)
    t0 = time.perf_counter()
    try:
        fn(ctx, row)
    except Exception as err:  # noqa: BLE001 - any failure of a step is recorded, the check goes on
        row.status = f"FAILED: {one_line(err)}"
    row.seconds = time.perf_counter() - t0
    print(f"-- step {number}: {row.status} in {row.seconds:.1f} s; {row.result}", flush=True)
    return row


def run_command(cmd: list[str], log: Path, timeout: int, env: dict[str, str] | None = None) -> float:
    """Run ``cmd`` to completion (output into ``log``); its wall seconds. A non-zero exit raises with the
    last line of its output."""
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        try:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout, cwd=ROOT,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"{' '.join(cmd[:4])} ... ran over {timeout} s (log {log})") from None
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
        raise RuntimeError(f"exit {proc.returncode}: {lines[-1] if lines else '(no output)'} (log {log})")
    return seconds


def _bench():
    sys.path.insert(0, str(HERE))
    import bench

    return bench


def _cpu_settings(sizes: dict[str, list[int]] | None, eager_compile: bool) -> None:
    """In this process: the tiny synthetic sizes as the data modules' default, torch.compile's eager backend."""
    if sizes:
        from optimate_pl.data import synthetic

        synthetic.IPA_SIZES, synthetic.RPA_SIZES = tuple(sizes["ipa"]), tuple(sizes["rpa"])
    if eager_compile:
        bench = _bench()
        # Dynamo's graph capture of the network, without inductor's code generation (~35 s cold on a CPU).
        bench.compile_network = lambda model, static_shapes=False, device_type="cpu": model.compile(
            dynamic=True, backend="eager")
        from optimate_pl.models import optimate

        # compile_edges with the eager edge function: the same code path, no C++ compilation in the smoke test.
        optimate._compiled_gatv2_edges = lambda: optimate.gatv2_edges


def train_run(kind: str, cache: str, graphs: int, model: str, batch_size: int, epochs: int, accelerator: str,
              precision: str, drop_last: bool, sizes: dict[str, list[int]] | None, eager_compile: bool) -> dict:
    """``bench.train_throughput`` (one training run of ``make bench``) with this check's data sizes."""
    _cpu_settings(sizes, eager_compile)
    return _bench().train_throughput(kind, cache, graphs, model, batch_size, epochs, accelerator, precision,
                                     drop_last)


KINDS = {"reference": "reference loop", "ours": "ours (DataLoader)", "ours-resident": "ours (device-resident)",
         "ours-edges-resident": "ours (device-resident) + compile_edges", "ours-compiled": "ours + torch.compile",
         "ours-static": "ours (device-resident, static shapes)",
         "ours-static-compiled": "ours (device-resident, static shapes) + torch.compile reduce-overhead (CUDA graphs)"}


def step_training(ctx: Context, row: Row) -> None:
    s, bench = ctx.s, _bench()
    summary, problems = [], []
    for label, model, bs, drop in (("IPA/TL b128", "ipa", 128, False), ("DL-300 b20", "dl_300", 20, True)):
        speed = {}
        order = list(KINDS) if model == "ipa" else list(KINDS)[::-1]  # alternate, as make bench does
        for kind in order:
            if kind == "ours-compiled" and not s.compile:
                continue
            args = (kind, str(ctx.cache), s.graphs, model, bs, s.epochs, s.accelerator, s.precision, drop,
                    s.sizes, s.mode == "cpu")
            try:
                r = bench._fresh(train_run, *args) if s.fresh else train_run(*args)
            except Exception as err:  # noqa: BLE001 - the other paths still run
                problems.append(f"{label} {kind}: {one_line(err)}")
                row.details.append((f"train {label}: {KINDS[kind]}", "FAILED", one_line(err)))
                continue
            speed[kind] = r["graphs"] / r["seconds"]
            note = f"warm-up epoch {r['warmup']:.1f} s; peak RSS {r['rss_mib']:.0f} MiB"
            if r["gpu_mib"]:
                note += f", GPU {r['gpu_mib']:.0f} MiB"
            if kind in ("ours-compiled", "ours-static-compiled") and s.mode == "cpu":
                note += "; CPU smoke: backend=eager"
            row.details.append((f"train {label}: {KINDS[kind]}", f"{speed[kind]:.0f} graphs/s", note))
        if "reference" not in speed or len(speed) < 2:
            continue
        best = max((k for k in speed if k != "reference"), key=speed.get)
        ratio = speed[best] / speed["reference"]
        for i, d in enumerate(row.details):
            k = next((k for k, v in KINDS.items() if d[0] == f"train {label}: {v}"), None)
            if k in speed:
                row.details[i] = (d[0], f"{d[1]} ({speed[k] / speed['reference']:.2f}x)", d[2])
        summary.append(f"{label}: reference {speed['reference']:.0f} graphs/s, best ours {speed[best]:.0f} "
                       f"({KINDS[best]}) = {ratio:.2f}x")
        goal, at = (TRAIN_GOAL, "b128") if model == "ipa" else (DL_TRAIN_GOAL, "b20")
        row.goal = "; ".join(filter(None, [row.goal, f">= {goal:.0f}x at {at}: {ratio:.2f}x, "
                                                     f"{'met' if ratio >= goal else 'NOT met'}"]))
    row.result = "; ".join(summary)
    if problems:
        raise RuntimeError("; ".join(problems))


def step_eval_screen(ctx: Context, row: Row) -> None:
    import torch

    from optimate_pl.config import model_net
    from optimate_pl.data.datamodule import IPADataModule
    from optimate_pl.models import Optimate

    s, bench = ctx.s, _bench()
    device = torch.device("cuda" if s.mode == "gpu" else "cpu")
    dm = IPADataModule(source="synthetic", cache_dir=str(ctx.cache), subset=s.graphs, eval_batch_size=256,
                       synthetic_sizes=s.sizes)
    dm.setup()
    net = model_net("ipa")
    one = bench.eval_throughput(dm, net, device, batched=False)
    batched = bench.eval_throughput(dm, net, device, batched=True)
    eval_ratio = batched / one
    row.details += [("evaluate IPA architecture: one material at a time", f"{one:.0f} graphs/s (1.00x)",
                     f"{len(dm.test_set)} test graphs on {device.type}"),
                    ("evaluate IPA architecture: batched (256)", f"{batched:.0f} graphs/s ({eval_ratio:.2f}x)", "")]

    folder = ctx.work / "screen"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    weights = folder / "eps_ipa.pt"
    torch.save(Optimate().state_dict(), weights)
    n = s.screen
    sizes = [n, 2 * n] if s.mode == "gpu" else [n]
    inputs = bench.screening_inputs(folder, sizes)
    times: dict[str, dict[int, float]] = {"ours": {}, "reference": {}}
    for size in sizes:
        times["ours"][size] = run_command(ctx.python(
            "-c", bench.PREDICT, f"checkpoint={weights}", f"input={inputs[size]}", f"output={folder / f'ours_{size}'}",
            "format=parquet", "plot=0", f"chunk_size={max(1, n // 2)}", f"trainer.accelerator={s.accelerator}",
            "resume=false"), folder / f"ours_{size}.log", s.timeout)
        times["reference"][size] = run_command(ctx.python(
            str(HERE / "reference_screen.py"), str(weights), str(inputs[size]), str(size),
            str(folder / f"reference_{size}.npz")), folder / f"reference_{size}.log", s.timeout)
    if s.mode == "gpu":  # steady state: n / (t(2n) - t(n)), start-up not counted
        rate = {k: n / (v[2 * n] - v[n]) for k, v in times.items()}
        how = f"steady state from {n} and {2 * n} structures"
    else:
        rate = {k: n / v[n] for k, v in times.items()}
        how = f"{n} structures, start-up included (CPU smoke)"
    screen_ratio = rate["ours"] / rate["reference"]
    row.details += [("screen files to spectra + derived: reference (batch 1, CPU)",
                     f"{rate['reference']:.4g} structures/s (1.00x)", how),
                    (f"screen files to spectra + derived: optimate-pl-predict trainer.accelerator={s.accelerator}",
                     f"{rate['ours']:.4g} structures/s ({screen_ratio:.2f}x)", how)]
    row.result = (f"evaluate: {batched:.4g} vs {one:.4g} graphs/s = {eval_ratio:.2f}x; screen: {rate['ours']:.4g} "
                  f"vs {rate['reference']:.4g} structures/s = {screen_ratio:.2f}x")
    met = lambda r: "met" if r >= EVAL_GOAL else "NOT met"  # noqa: E731
    row.goal = f">= {EVAL_GOAL:.0f}x: evaluate {met(eval_ratio)}, screen {met(screen_ratio)}"


def _compose(ctx: Context, name: str, *overrides: str):
    """The training config as the command line composes it, with this check's folders and sizes."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("optimate_pl.conf", version_base="1.3"):
        return compose("train", overrides=[
            f"paths.root_dir={ctx.work / name}", f"paths.output_dir={ctx.work / 'runs' / name}",
            "callbacks.progress_bar=null", "callbacks.model_summary=null", *ctx.s.data_overrides(), *overrides])


def _run_in_process(ctx: Context, name: str, *overrides: str) -> tuple[dict, float]:
    """One run of ``python -m optimate_pl`` in this process (the pipeline, with the CLI's process settings)."""
    import torch

    from optimate_pl.cli.common import configure_process
    from optimate_pl.training.stages import run

    cfg = _compose(ctx, name, *overrides)
    configure_process(cfg)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    metrics = run(cfg)
    return metrics, time.perf_counter() - t0


def step_precision(ctx: Context, row: Row) -> None:
    s = ctx.s
    medians, secs = {}, {}
    for precision in ("bf16-mixed", "32-true"):
        metrics, secs[precision] = _run_in_process(
            ctx, f"precision-{precision}", "strategy=tl", f"data.subset={s.tl_subset}", "seed=0",
            f"trainer.accelerator={s.accelerator}", f"trainer.precision={precision}",
            f"strategy.epochs.synthetic={s.tl_epochs}", f"strategy.pretrain_epochs={s.pretrain_epochs}",
            "evaluate_train=false")
        medians[precision] = float(metrics["test/sc_median"])
        row.details.append((f"TL {s.tl_subset} materials, {s.tl_epochs} epochs (IPA pretraining {s.pretrain_epochs}), "
                            f"{precision}", f"test SC median {medians[precision]:.4f}",
                            f"{secs[precision]:.1f} s with pretraining"))
    diff = abs(medians["bf16-mixed"] - medians["32-true"])
    # fp32 = trainer.precision=32-true with the command line's process settings (matmuls in TF32 on a GPU).
    row.result = (f"test SC median bf16-mixed {medians['bf16-mixed']:.4f} vs fp32 {medians['32-true']:.4f} "
                  f"(difference {diff:.4f}); {secs['bf16-mixed']:.1f} s vs {secs['32-true']:.1f} s")
    row.goal = f"difference <= {SC_TOLERANCE}: {'met' if diff <= SC_TOLERANCE else 'NOT met'}"


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def step_ddp(ctx: Context, row: Row) -> None:
    s = ctx.s
    common = ["strategy=ipa", f"data.subset={s.short_subset}", f"trainer.max_epochs={s.short_epochs}",
              "trainer.check_val_every_n_epoch=1", "seed=0", "evaluate_train=false"]
    run_dir = ctx.work / "runs" / "ddp"
    cmd = ctx.python("-m", "optimate_pl", *common, *s.data_overrides(), "trainer=ddp", "trainer.devices=1",
                     *(["trainer.accelerator=cpu"] if s.mode == "cpu" else []), f"hydra.run.dir={run_dir}",
                     f"paths.root_dir={ctx.work / 'ddp'}", "callbacks.progress_bar=null")
    results, problems = {}, []
    backend = "NCCL" if s.mode == "gpu" else "gloo"
    try:
        t = run_command(cmd, ctx.work / "ddp.log", s.timeout)
        results["ddp"] = (t, float(_metrics(run_dir)["test/sc_median"]))
        row.details.append((f"trainer=ddp trainer.devices=1 ({backend}), IPA {s.short_subset} materials, "
                            f"{s.short_epochs} epochs", f"test SC median {results['ddp'][1]:.4f}",
                            f"{t:.1f} s (a process of its own)"))
    except Exception as err:  # noqa: BLE001
        problems.append(f"ddp: {one_line(err)}")
        row.details.append(("trainer=ddp trainer.devices=1", "FAILED", one_line(err)))
    preset = "gpu" if s.mode == "gpu" else "cpu"
    try:
        metrics, t = _run_in_process(ctx, f"trainer-{preset}", *common, f"trainer={preset}")
        results[preset] = (t, float(metrics["test/sc_median"]))
        row.details.append((f"trainer={preset}, IPA {s.short_subset} materials, {s.short_epochs} epochs",
                            f"test SC median {results[preset][1]:.4f}", f"{t:.1f} s (in this process)"))
    except Exception as err:  # noqa: BLE001
        problems.append(f"trainer={preset}: {one_line(err)}")
        row.details.append((f"trainer={preset}", "FAILED", one_line(err)))
    row.result = "; ".join(f"{'trainer=ddp devices=1' if k == 'ddp' else 'trainer=' + k}: {t:.1f} s, "
                           f"test SC median {m:.4f}" for k, (t, m) in results.items())
    if problems:
        raise RuntimeError("; ".join(problems))


def step_main_command(ctx: Context, row: Row) -> None:
    s = ctx.s
    run_dir = ctx.work / "runs" / "main"
    root = ctx.work / "main"
    args = ["strategy=tl", "data.subset=300", *s.main_overrides, f"hydra.run.dir={run_dir}", f"paths.root_dir={root}"]
    t = run_command(ctx.python("-m", "optimate_pl", *args), ctx.work / "main.log", s.timeout)
    metrics = _metrics(run_dir)
    pretrained = sorted((root / "checkpoints").glob("ipa-*.ckpt"))
    if not pretrained:
        raise RuntimeError("no automatic IPA checkpoint was written: the run did not pretrain")
    extra = f" ({' '.join(s.main_overrides)})" if s.main_overrides else ""
    row.result = (f"{t:.1f} s wall with IPA pretraining; GPAW ladder: test SC median {metrics['test/sc_median']:.3f}, "
                  f"IPA baseline {metrics.get('test/ipa_sc_median', float('nan')):.3f}")
    row.details.append((f"python -m optimate_pl strategy=tl data.subset=300{extra}", f"{t:.1f} s",
                        "the built-in GPAW ladder (the default data); fresh checkpoint folder: pretraining "
                        "included; a process of its own"))


def step_profile(ctx: Context, row: Row) -> None:
    import lightning.pytorch as pl
    import torch
    from omegaconf import OmegaConf
    from torch.profiler import ProfilerActivity, profile, schedule

    from optimate_pl.config import load_group_config, model_net
    from optimate_pl.data import RPADataModule
    from optimate_pl.models import SpectraModule

    s, gpu = ctx.s, ctx.s.mode == "gpu"
    warmup, active = 3, s.profile_steps
    tl_optimizer = load_group_config("optimizer", "adam_rpa")  # strategy=tl's
    dm = RPADataModule(source="synthetic", cache_dir=str(ctx.cache), subset=300, batch_size=s.profile_batch, synthetic_sizes=s.sizes,
                       device_resident="auto")
    module = SpectraModule(net=model_net("ipa"),
                           optimizer=OmegaConf.to_container(tl_optimizer))
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    marks: dict[str, float] = {}

    def sync() -> None:
        if gpu:
            torch.cuda.synchronize()

    class Step(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if trainer.global_step == warmup:
                sync()
                marks["t0"] = time.perf_counter()

        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            if trainer.global_step == warmup + active:
                sync()
                marks["t1"] = time.perf_counter()
            prof.step()

    trainer = pl.Trainer(accelerator=s.accelerator, devices=1, precision=s.precision, max_steps=warmup + active,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, callbacks=[Step()])
    with profile(activities=activities, schedule=schedule(wait=0, warmup=warmup, active=active, repeat=1),
                 record_shapes=False) as prof:
        trainer.fit(module, datamodule=dm)
    wall = marks["t1"] - marks["t0"]
    events = prof.key_averages()

    def dev(e) -> float:  # self device time (µs) across torch versions
        return float(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0.0)) or 0.0)

    sort = "self_device_time_total" if gpu else "self_cpu_time_total"
    try:
        top = events.table(sort_by=sort, row_limit=25)
    except (AttributeError, KeyError, ValueError):
        top = events.table(sort_by="self_cuda_time_total" if gpu else "self_cpu_time_total", row_limit=25)
    lines = [f"torch profiler: {active} TL training steps (IPA architecture, batch {s.profile_batch}, RPA subset 300, "
             f"{s.precision}, {'device-resident batches' if gpu else 'DataLoader'}) after {warmup} warm-up steps, "
             f"{ctx.device_label}, {datetime.datetime.now().isoformat(timespec='seconds')}", ""]
    copies = [e for e in events if "memcpy" in e.key.lower()]
    h2d = [e for e in copies if "htod" in e.key.lower().replace(" ", "")]
    syncs = [e for e in events if e.key in ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize",
                                           "cudaDeviceSynchronize")]
    per_step = wall / active * 1e3
    if gpu:
        # Kernels and copies only: the profiler also shows ranges (ProfilerStep#, Optimizer.step#...) on the
        # device's timeline, and counting those called the H200's launch-bound steps "99 % busy".
        kernels = sum(dev(e) for e in events if e.device_type.name == "CUDA" and not _annotation(e)) / 1e6
        launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cuLaunchKernelEx",
                                                            "cudaLaunchKernelExC"))
        host = sum(e.self_cpu_time_total for e in events if e.device_type.name == "CPU" and not _annotation(e)) / 1e6
        busy = kernels / wall
        row.result = (f"{per_step:.1f} ms/step; GPU busy {100 * busy:.0f} % ({kernels / active * 1e3:.2f} ms of kernels "
                      f"a step), {launches / active:.0f} kernel launches and {host / active * 1e3:.1f} ms of host op "
                      f"time a step; {sum(e.count for e in h2d)} host-to-device copies")
    else:
        cpu = sum(e.self_cpu_time_total for e in events) / 1e6
        row.result = f"{per_step:.1f} ms/step; {cpu / active * 1e3:.1f} ms self CPU time of the ops/step"
    lines += [f"wall: {wall:.3f} s for {active} steps = {per_step:.1f} ms/step", row.result, "",
              "host-device copies (count, total device/self time):"]
    lines += [f"  {e.key}: {e.count}, {dev(e) / 1e3:.2f} ms device, {e.self_cpu_time_total / 1e3:.2f} ms host"
              for e in copies] or ["  none recorded (CPU run)" if not gpu else "  none"]
    lines += ["synchronisation points (count):"]
    lines += [f"  {e.key}: {e.count}" for e in syncs] or ["  none recorded"]
    lines += ["", f"top operators/kernels by self {'device' if gpu else 'CPU'} time:", top]
    if gpu:  # where the host's time goes: a launch-bound step is read off this table, not the kernels'
        lines += ["", "top operators by self host (CPU) time:", events.table(sort_by="self_cpu_time_total", row_limit=25)]
    path = ctx.profile_path
    path.write_text("\n".join(lines) + "\n")
    row.details.append((f"profile of {active} TL steps, batch {s.profile_batch}", f"{per_step:.1f} ms/step", f"written to {path.name}"))


def _annotation(event) -> bool:
    """A profiler range (``ProfilerStep#3``, ``Optimizer.step#Adam.step``, a ``record_function``), not an op."""
    return bool(getattr(event, "is_user_annotation", False)) or event.key.startswith(("ProfilerStep", "Optimizer."))


def step_syncs_overhead(ctx: Context, row: Row) -> None:
    """Issue #36: host synchronisations per training and validation step (OPTIMATE DL and TL, counted by
    ``HostSyncCounter``), and the framework's own time per step with a tiny network against the reference loop."""
    import types

    sys.path.insert(0, str(HERE))
    import host_syncs

    s, bench = ctx.s, _bench()
    per_train = {}
    for name in ("OPTIMATE DL", "OPTIMATE TL"):
        counter = host_syncs.count(host_syncs.CONFIGS[name], ctx.work / f"syncs-{name.split()[-1]}", s.accelerator)
        per = counter.per_step()
        per_train[name] = per["train"]
        row.details.append((f"host syncs per step, {name}", f"train {per['train']:.1f}, validation {per['val']:.1f}",
                            host_syncs.where(counter)))
    args = types.SimpleNamespace(graphs=max(s.graphs, 256), rounds=2 if s.fresh else 1, epochs=s.epochs)
    ratios = {}
    for measurement, value, _, note in bench.overhead(args, str(ctx.cache), s.accelerator, "32-true", fresh=s.fresh,
                                                       sizes=s.sizes):
        row.details.append((measurement, value, note))
        if measurement.endswith(": ours"):
            ratios[measurement.split("batch ")[1].split(":")[0]] = float(note.split("x")[0])
    row.result = ("host syncs per training step: " + ", ".join(f"{k.split()[-1]} {v:.1f}" for k, v in per_train.items())
                  + "; tiny-network time per step, ours / reference: "
                  + ", ".join(f"b{bs} {r:.2f}x" for bs, r in ratios.items()))
    met = all(v == 0 for v in per_train.values()) and all(r <= 1.0 for r in ratios.values())
    row.goal = f"0 syncs per step and ours <= the reference: {'met' if met else 'NOT met'}"


STEPS: dict[int, tuple[str, Callable[[Context, Row], None]]] = {
    1: ("training throughput at the authors' batch sizes (ours vs the make-bench reference loop)", step_training),
    2: ("evaluation and screening throughput (batched vs batch-1 reference)", step_eval_screen),
    3: ("bf16-mixed vs fp32: a short TL run both ways from the same seed", step_precision),
    4: ("trainer=ddp trainer.devices=1 and trainer=gpu (cpu) finish a short run", step_ddp),
    5: ("main command: python -m optimate_pl strategy=tl data.subset=300 (with pretraining)", step_main_command),
    6: ("torch profiler summary of 20 TL training steps", step_profile),
    7: ("host syncs per step and the framework's own time per step (tiny network vs the reference loop)",
        step_syncs_overhead),
}


def versions() -> dict[str, str]:
    """Device, driver, torch/CUDA and library versions, date."""
    import lightning
    import torch
    import torch_geometric

    out = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
           "python": platform.python_version(), "torch": torch.__version__,
           "CUDA (torch built with)": str(torch.version.cuda), "lightning": lightning.__version__,
           "torch_geometric": torch_geometric.__version__, "host": f"{platform.machine()}, {os.cpu_count()} CPUs"}
    if torch.cuda.is_available():
        out["device"] = torch.cuda.get_device_name()
        props = torch.cuda.get_device_properties(0)
        out["device memory"] = f"{props.total_memory / 2**30:.1f} GiB, {props.multi_processor_count} SMs"
        out["cuDNN"] = str(torch.backends.cudnn.version())
        driver = "unknown"
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, timeout=30).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.SubprocessError):
            try:
                import pynvml

                pynvml.nvmlInit()
                driver = str(pynvml.nvmlSystemGetDriverVersion())
            except Exception:  # noqa: BLE001
                pass
        out["driver"] = driver
    else:
        out["device"] = f"CPU ({torch.get_num_threads()} threads; no GPU)"
    return out


def device_slug(mode: str) -> str:
    import torch

    if mode == "cpu":
        return "cpu-smoke"
    return re.sub(r"[^a-z0-9]+", "-", torch.cuda.get_device_name().lower()).strip("-")


def render(rows: list[Row], info: dict[str, str], s: Settings, total: float, profile_name: str) -> str:
    head = "GPU check" if s.mode == "gpu" else "GPU check, CPU smoke mode (tiny sizes: not a measurement)"
    lines = [f"# {head}: {info['device']}", "",
             f"`make gpu-check` (benchmarks/gpu_check.py), steps 1-4 and 6 on SYNTHETIC data, step 5 (the main "
             f"command) on its default data, the GPAW ladder; {total:.0f} s in all. "
             f"Profile: `{profile_name}`.", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += ["", "| # | step | result | goal | time (s) | status |", "|---|---|---|---|---|---|"]
    cell = lambda text: str(text).replace("|", "\\|")  # noqa: E731 - a pipe would end the cell
    rows = sorted(rows, key=lambda r: r.number)
    lines += [f"| {r.number} | {cell(r.title)} | {cell(r.result or '-')} | {cell(r.goal or '-')} | {r.seconds:.1f} "
              f"| {cell(r.status)} |" for r in rows]
    lines += ["", "## Details", "", "| step | measurement | value | note |", "|---|---|---|---|"]
    lines += [f"| {r.number} | {cell(m)} | {cell(v)} | {cell(n)} |" for r in rows for (m, v, n) in r.details]
    lines += ["", f"Sizes: {s.graphs} training graphs x {s.epochs} timed epochs after 1 warm-up "
              f"({'each run a fresh process' if s.fresh else 'in one process'}), precision {s.precision} for "
              f"step 1; screening on {s.screen} structures; synthetic database sizes "
              f"{s.sizes or 'the default (full)'}."]
    return "\n".join(line.replace("\n", " ") for line in lines) + "\n"


def check(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py check", description="run the GPU checklist")
    p.add_argument("--cpu", action="store_true", help="the tiny CPU version even where a GPU is present")
    p.add_argument("--steps", default="6,7,5,4,3,2,1", help="which steps, in this order, e.g. 1,6")
    p.add_argument("--out-dir", default=str(GPU_DIR), help="where the table and the profile go")
    p.add_argument("--work", default=None, help="scratch folder (default: a temporary one, removed after)")
    p.add_argument("--cache", default=None, help="the data cache (default: the scratch folder's; the test suite "
                   "passes its own, so that the built-in ladder's store is built once)")
    p.add_argument("--compile", action="store_true", help="add step 1's whole-network torch.compile rows (minutes "
                   "of compilation on a GPU; slower than eager on the H200)")
    p.add_argument("--no-compile", action="store_true", help="(the default now) no whole-network torch.compile rows")
    p.add_argument("--fresh", action="store_true", help="step 1 in fresh processes also on a CPU (as on a GPU)")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    os.environ.setdefault("WANDB_MODE", "offline")
    import torch

    mode = "gpu" if torch.cuda.is_available() and not args.cpu else "cpu"
    s = settings_for(mode)
    # The CPU smoke keeps the compile rows (eager backend: seconds), so their code path stays tested.
    s.compile = (args.compile or mode == "cpu") and not args.no_compile
    s.fresh = s.fresh or args.fresh
    if mode == "cpu":
        # One thread, here and in the runs it starts: the tiny steps gain nothing from more, and on a shared
        # machine (CI, a busy workstation) two OpenMP threads wait on each other at every parallel region.
        os.environ["OMP_NUM_THREADS"] = "1"
        torch.set_num_threads(1)
    scratch = None if args.work else tempfile.TemporaryDirectory(prefix="gpu-check-")
    work = Path(args.work or scratch.name).resolve()
    work.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache).resolve() if args.cache else work / "cache"
    os.environ["OPTIMATE_PL_CACHE"] = str(cache)  # every run of the check, subprocesses included
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    slug = device_slug(mode)
    info = versions()
    print(f"GPU check in {mode.upper()} mode on {info['device']}; scratch {work}", flush=True)
    _bench()._quiet_lightning()
    ctx = Context(s, work, cache, out_dir, info["device"], profile_path=out_dir / f"{slug}-profile.txt")
    rows = []
    path = out_dir / f"{slug}.md"

    def write_table() -> float:
        """The table of the rows so far; returns the seconds since the start."""
        elapsed = time.perf_counter() - t_start
        path.write_text(render(rows, info, s, elapsed, ctx.profile_path.name))
        return elapsed

    try:
        from optimate_pl.data.build import synthetic_stores

        t0 = time.perf_counter()
        kw = {"ipa_sizes": s.sizes["ipa"], "rpa_sizes": s.sizes["rpa"]} if s.sizes else {}
        synthetic_stores(cache, **kw)
        _cpu_settings(s.sizes, eager_compile=mode == "cpu")
        print(f"synthetic databases ready in {time.perf_counter() - t0:.1f} s", flush=True)
        # In the order given (default: the quick ones first), so that a run cut off at the device's time
        # limit has measured the profile and the main command before step 1's compilation.
        for number in dict.fromkeys(int(x) for x in args.steps.split(",") if x.strip()):
            title, fn = STEPS[number]
            rows.append(run_step(number, title, fn, ctx))
            # What a step left in this process (its device-resident data, cached GPU blocks) must not weigh
            # on the next one's timings, step 1's fresh processes included.
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            write_table()  # after every step: a run cut off at the device's time limit keeps what it measured
    finally:
        total = write_table()
        if scratch is not None:
            scratch.cleanup()
    failed = [r for r in rows if r.failed]
    print("\n" + "=" * 100)
    print(f"GPU check ({mode}) on {info['device']}: {len(rows) - len(failed)}/{len(rows)} steps ok, "
          f"{total:.0f} s; table {path}")
    for r in rows:
        print(f"  {r.number}. {r.status:<8.60} {r.seconds:6.1f} s  {r.result}" + (f"  [{r.goal}]" if r.goal else ""))
    return 1 if failed else 0


# -- wheels for the GPU machine's Python ----------------------------------------------------------------

#: The GPU machine's Python (KINDS.md: Python 3.12.3 on x86-64 Linux).
TARGET = {"python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython",
          "platform_python_implementation": "CPython", "sys_platform": "linux", "platform_system": "Linux",
          "platform_machine": "x86_64", "os_name": "posix", "platform_release": "", "platform_version": "",
          "implementation_version": "3.12.3", "extra": ""}
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_26_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64", "manylinux1_x86_64"]
PIP_TARGET = ["--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp", "--abi", "cp312",
              *[a for plat in PLATFORMS for a in ("--platform", plat)]]
#: Pure-Python dependencies published only as source (hydra-core's parser runtime): built into a wheel here.
SDIST_ONLY = ["antlr4-python3-runtime==4.9.3"]
#: The project's build backend, so that `pip install --no-build-isolation` works there whatever it holds.
BUILD = ["setuptools>=68", "wheel"]
#: Left out of the wheel set (too big for the 64 MiB that travel, not needed by the check); see README.
LEFT_OUT = {"wandb": "only logger=wandb needs it (the check uses the CSV logger)"}


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def preinstalled() -> dict[str, str | None]:
    """{canonical name: version or None} of what the GPU machine's Python holds."""
    out = {}
    for line in PREINSTALLED.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            out[_canon(name)] = version.strip() or None
    return out


def project_requirements() -> list[str]:
    """The project's dependencies (pyproject.toml)."""
    import tomllib

    return list(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])


def missing_requirements() -> list[str]:
    """The project's dependencies the GPU machine does not hold, minus LEFT_OUT."""
    from packaging.requirements import Requirement

    have = preinstalled()
    return [r for r in project_requirements()
            if _canon(Requirement(r).name) not in have and _canon(Requirement(r).name) not in LEFT_OUT]


def _pip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    return subprocess.run(cmd, check=check)


def _size_mib(paths: list[Path]) -> float:
    return sum(p.stat().st_size for p in paths if p.is_file()) / 2**20


def travelling_mib(folder: Path) -> tuple[float, float]:
    """(working tree that travels: tracked + untracked-not-ignored files, the wheel folder) in MiB."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=True).stdout.decode().split("\0")
    tree = _size_mib([ROOT / f for f in out if f])
    return tree, _size_mib(list(folder.glob("*")))


def download_wheels(folder: Path) -> int:
    """Download (here, with network) every wheel the GPU machine's Python 3.12 lacks into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    have = preinstalled()
    reqs = missing_requirements()
    print(f"missing on the GPU machine: {', '.join(reqs)}; left out: {', '.join(LEFT_OUT)}")
    _pip("wheel", "-q", "--no-deps", "-w", str(folder), *SDIST_ONLY)
    # Pin what this environment holds (the versions the tests pass with) where a name is to be downloaded.
    freeze = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True).stdout.splitlines()
    pins = [ln for ln in freeze if "==" in ln and _canon(ln.split("==")[0]) not in have
            and "+" not in ln]
    with tempfile.TemporaryDirectory() as tmp:
        constraints = Path(tmp) / "constraints.txt"
        constraints.write_text("\n".join(pins) + "\n")
        report = Path(tmp) / "report.json"
        resolve = ["install", "-q", "--dry-run", "--ignore-installed", "--report", str(report), "--find-links",
                   str(folder), *PIP_TARGET, "--target", str(Path(tmp) / "t"), *reqs, *BUILD]
        if _pip(*resolve, "-c", str(constraints), check=False).returncode != 0:
            print("resolving with this environment's versions failed; resolving freely")
            _pip(*resolve)
        wanted = {}
        for item in json.loads(report.read_text())["install"]:
            name, version = item["metadata"]["name"], item["metadata"]["version"]
            if _canon(name) not in have or _canon(name) in {_canon(b.split(">")[0]) for b in BUILD}:
                wanted[_canon(name)] = f"{name}=={version}"
    sdist = {_canon(r.split("==")[0]) for r in SDIST_ONLY}
    _pip("download", "-q", "--no-deps", *PIP_TARGET, "-d", str(folder),
         *[spec for name, spec in sorted(wanted.items()) if name not in sdist])
    for wheel in folder.glob("*.whl"):  # stale versions from an earlier download
        name, version = _wheel_name_version(wheel)
        if wanted.get(name, "").split("==")[-1] != version:
            print(f"removing {wheel.name} (not in this set)")
            wheel.unlink()
    problems = verify_wheels(folder)
    tree, wheels = travelling_mib(folder)
    print(f"\n{len(list(folder.glob('*.whl')))} wheels in {folder}: {wheels:.1f} MiB; working tree that travels "
          f"{tree:.1f} MiB; together {tree + wheels:.1f} MiB of {TRAVEL_LIMIT_MIB} MiB")
    if tree + wheels > TRAVEL_LIMIT_MIB:
        problems.append(f"working tree + wheels = {tree + wheels:.1f} MiB > {TRAVEL_LIMIT_MIB} MiB")
    for problem in problems:
        print("problem:", problem)
    return 1 if problems else 0


def _wheel_name_version(path: Path) -> tuple[str, str]:
    from packaging.utils import parse_wheel_filename

    name, version, _, _ = parse_wheel_filename(path.name)
    return _canon(name), str(version)


def verify_wheels(folder: Path, have: dict[str, str | None] | None = None) -> list[str]:
    """Problems of the wheel set in ``folder`` for the GPU machine (empty: it is complete).

    Every wheel installs on CPython 3.12 manylinux x86-64, one version per name; every requirement of
    every wheel (markers evaluated for that Python, no extras) and every project dependency but
    LEFT_OUT is met by a wheel of the folder or by what the machine holds (its version checked where
    known)."""
    import zipfile

    from packaging.requirements import Requirement
    from packaging.tags import compatible_tags, cpython_tags
    from packaging.utils import parse_wheel_filename

    have = preinstalled() if have is None else have
    tags = set(cpython_tags((3, 12), abis=["cp312", "abi3", "none"], platforms=PLATFORMS))
    tags |= set(compatible_tags((3, 12), "cp312", platforms=PLATFORMS))
    problems: list[str] = []
    wheels: dict[str, tuple[str, Path]] = {}
    for path in sorted(folder.glob("*.whl")):
        name, version, _, wtags = parse_wheel_filename(path.name)
        if not wtags & tags:
            problems.append(f"{path.name} does not install on CPython 3.12 manylinux x86-64")
        if _canon(name) in wheels:
            problems.append(f"two versions of {name}: {wheels[_canon(name)][0]} and {version}")
        wheels[_canon(name)] = (str(version), path)
    if not wheels:
        return [f"no wheels in {folder}"]

    def met(req: Requirement, by: str) -> None:
        name = _canon(req.name)
        if req.marker is not None and not req.marker.evaluate(TARGET):
            return
        if name in wheels:
            if not req.specifier.contains(wheels[name][0], prereleases=True):
                problems.append(f"{by} needs {req}, the folder holds {req.name} {wheels[name][0]}")
        elif name in have:
            if have[name] and not req.specifier.contains(have[name], prereleases=True):
                problems.append(f"{by} needs {req}, the GPU machine holds {req.name} {have[name]}")
        elif name not in LEFT_OUT:
            problems.append(f"{by} needs {req}: neither in the folder nor on the GPU machine")

    for name, (version, path) in wheels.items():
        with zipfile.ZipFile(path) as zf:
            meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            text = zf.read(meta).decode("utf-8", "replace").split("\n\n", 1)[0]
        for line in text.splitlines():
            if line.startswith("Requires-Dist:"):
                met(Requirement(line.split(":", 1)[1].strip()), f"{name} {version}")
    for req in project_requirements():
        met(Requirement(req), "optimate_pl")
    return problems


def verify(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="gpu_check.py verify")
    p.add_argument("--dir", default=str(WHEELS))
    folder = Path(p.parse_args(argv).dir)
    problems = verify_wheels(folder)
    for problem in problems:
        print("problem:", problem)
    tree, wheels = travelling_mib(folder)
    print(f"{'complete' if not problems else 'INCOMPLETE'}: {len(list(folder.glob('*.whl')))} wheels, "
          f"{wheels:.1f} MiB; with the working tree {tree + wheels:.1f} MiB of {TRAVEL_LIMIT_MIB} MiB")
    return 1 if problems else 0


#: Import name of each dependency the GPU machine may lack.
IMPORTS = {"hydra-core": "hydra", "omegaconf": "omegaconf", "pymatgen": "pymatgen", "matscipy": "matscipy",
           "ijson": "ijson", "plotly": "plotly"}


def install(argv: list[str]) -> int:
    """On the GPU machine: install the carried wheels (no network) where its Python lacks them, then the project."""
    import importlib.util

    p = argparse.ArgumentParser(prog="gpu_check.py install")
    p.add_argument("--dir", default=str(WHEELS))
    folder = Path(p.parse_args(argv).dir)
    def present(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is not None
        except ImportError:  # a parent package missing, or failing to import for want of a dependency
            return False

    lacking = [name for name, module in IMPORTS.items() if not present(module)]
    if lacking:
        if not any(folder.glob("*.whl")):
            print(f"this Python lacks {', '.join(lacking)} and {folder} holds no wheels: run `make gpu-wheels` on a "
                  f"machine with network and carry {folder.name}", file=sys.stderr)
            return 2
        t0 = time.perf_counter()
        common = ["install", "-q", "--no-index", "--find-links", str(folder), "--no-cache-dir"]
        _pip(*common, *BUILD)
        _pip(*common, *missing_requirements())
        print(f"installed the carried wheels in {time.perf_counter() - t0:.0f} s")
    else:
        print("this Python holds the project's dependencies: nothing to install from wheels")
    if not present("optimate_pl.conf"):  # conf/ ships as optimate_pl.conf once installed
        _pip("install", "-q", "--no-index", "--no-deps", "--no-build-isolation", "-e", str(ROOT))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    actions = {"check": check, "wheels": None, "verify": verify, "install": install}
    action = argv.pop(0) if argv and argv[0] in actions else "check"
    if action == "wheels":
        p = argparse.ArgumentParser(prog="gpu_check.py wheels")
        p.add_argument("--dir", default=str(WHEELS))
        return download_wheels(Path(p.parse_args(argv).dir))
    return actions[action](argv)


if __name__ == "__main__":
    sys.exit(main())
