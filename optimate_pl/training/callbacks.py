"""Lightning callbacks of a run: no work lost to Ctrl-C or SIGTERM, readable logs in batch jobs, and
checkpoints written atomically (a full disk or a crash never leaves a truncated ``.ckpt``)."""
from __future__ import annotations

import contextvars
import logging
import os
import shlex
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ..utils.atomic import atomic_torch_save

log = logging.getLogger("optimate_pl")

#: True while a TL run (or ``strategy=mf_ipa``) pretrains its own IPA model (``checkpoint``/``init`` auto,
#: training.pretrain): an interruption is then resumed by running the command again (the pretraining picks up its
#: last.ckpt), not by adding ``ckpt_path`` (the IPA checkpoint does not fit the run).
AUTOMATIC_PRETRAINING: contextvars.ContextVar[bool] = contextvars.ContextVar("automatic_pretraining", default=False)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, through :func:`~optimate_pl.utils.atomic.atomic_torch_save`: a checkpoint is
    complete or absent, and a full disk is a :class:`~optimate_pl.utils.atomic.DiskFullError` naming the folder."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        if storage_options is not None:
            return super().save_checkpoint(checkpoint, path, storage_options)
        atomic_torch_save(checkpoint, path)


class SaveOnInterrupt(pl.Callback):
    """On Ctrl-C or SIGTERM (a SLURM pre-emption), write a resumable ``last.ckpt`` and say how to resume.

    The checkpoint is Lightning's own (weights, optimiser, loops, and the checkpoint callback's
    state), so a resumed run continues from the epoch reached and keeps its best-checkpoint tracking.

    Args:
        path: where to write the checkpoint (the run's ``checkpoints/last.ckpt``).
        command: the command line that started the run; the resume hint adds ``ckpt_path=`` to it.
    """

    def __init__(self, path: str | Path, command: list[str] | None = None) -> None:
        self.path = Path(path)
        self.command = list(command or [])
        self.saved: Path | None = None

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        # Every checkpoint of a SLURM job names the job, so that the job requeued finds its own (requeued_checkpoint).
        if slurm_job():
            checkpoint["slurm_job"] = slurm_job()
        # torch's random state (the training set's shuffle): resumed at an epoch boundary, a run then draws the
        # same batches as one never interrupted, and ends with the same numbers.
        checkpoint["torch_rng_state"] = torch.get_rng_state()

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict) -> None:
        if isinstance(checkpoint.get("torch_rng_state"), torch.Tensor):
            torch.set_rng_state(checkpoint["torch_rng_state"])

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)):
            return
        what = "SIGTERM" if isinstance(exception, SIGTERMException) else "Ctrl-C"
        if trainer.world_size > 1 and isinstance(exception, KeyboardInterrupt):
            # Ctrl-C reaches one rank only: a collective save would wait for the others forever.
            log.warning("%s under DDP: no checkpoint written (resume from the last one saved)", what)
            return
        trainer.save_checkpoint(self.path)
        self.saved = self.path
        if trainer.is_global_zero:
            args = [a for a in self.command if not a.startswith(("ckpt_path=", "hydra.run.dir="))]
            if AUTOMATIC_PRETRAINING.get():
                resume = (shlex.join(["python", "-m", "optimate_pl", *args]) if self.command else "the same call") + \
                    "   (the same command: its IPA pretraining goes on from this checkpoint)"
                what += " during the automatic IPA pretraining"
            else:
                resume = shlex.join(["python", "-m", "optimate_pl", *args, f"ckpt_path={self.path}",
                                     f"hydra.run.dir={self.path.parent.parent}"])
            log.warning("%s at epoch %d (step %d): wrote the resumable checkpoint %s\nresume with: %s", what,
                        trainer.current_epoch, trainer.global_step, self.path, resume)
            if slurm_job():
                log.warning("SLURM job %s: if SLURM requeues it (pre-emption, scontrol requeue), it resumes from this "
                            "checkpoint by itself", slurm_job())


def slurm_job() -> str | None:
    """This process's SLURM job, ``<cluster>:<job id>`` (``<array job>_<task>`` in an array); None outside SLURM."""
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    if os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID"):
        job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return f"{os.environ.get('SLURM_CLUSTER_NAME', '')}:{job}"


def requeued_job(cfg) -> bool:
    """Whether SLURM restarted this job (``SLURM_RESTART_COUNT`` >= 1) and no ``ckpt_path`` was given."""
    return bool(int(os.environ.get("SLURM_RESTART_COUNT") or 0) and slurm_job() and not cfg.get("ckpt_path"))


def requeued_checkpoint(cfg) -> Path | None:
    """The ``last.ckpt`` to resume when SLURM restarted this job (pre-emption, ``scontrol requeue``, node failure).

    A requeued job runs its script again from the start, with the same job id and ``SLURM_RESTART_COUNT`` >= 1.
    Without an explicit ``ckpt_path``, the newest ``last.ckpt`` written by this very job is resumed: the run's
    own (``hydra.run.dir`` fixed, or a sweep's job folder), else one under ``outputs/<task>/`` (the default run
    folder is named by the start time, which changed). None outside SLURM, on a first start, or when the job
    wrote no checkpoint before it was stopped (then it starts anew, logged).
    """
    if not requeued_job(cfg):
        return None
    restarts, job = int(os.environ["SLURM_RESTART_COUNT"]), slurm_job()
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    others = sorted(Path(cfg.paths.root_dir, "outputs", cfg.task_name).glob("*/checkpoints/last.ckpt"),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for path in [own, *[p for p in others if p != own]]:
        try:  # mmap: only the small metadata is read, not the weights
            saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception:  # absent, partial, or not ours: not this job's checkpoint
            continue
        if isinstance(saved, dict) and saved.get("slurm_job") == job:
            log.warning("SLURM job %s was requeued (restart %d): resuming from its checkpoint %s", job, restarts, path)
            return path
    log.warning("SLURM job %s was requeued (restart %d) before it wrote a checkpoint: starting anew", job, restarts)
    return None


class EpochLog(pl.Callback):
    """One log line per validation: epoch, losses, median SC (or |ΔSC|), and the time per epoch.

    For runs without a terminal (SLURM, nohup), where progress bars show only their final state.
    """

    def __init__(self) -> None:
        self._last = 0.0
        self._last_epoch = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._last, self._last_epoch = time.perf_counter(), trainer.current_epoch

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or trainer.state.fn != "fit":
            return
        now = time.perf_counter()
        m = trainer.callback_metrics
        parts = [f"{k} {float(m[k]):.4f}" for k in ("train/loss", "val/loss", "val/sc_median", "val/mse_median",
                                                    "val/ae_median") if k in m]
        epochs = trainer.current_epoch + 1 - self._last_epoch
        timing = f"{(now - self._last) / epochs:.1f} s/epoch" if epochs > 0 else \
            f"{now - self._last:.1f} s since the last validation"
        where = f"step {trainer.global_step}/{trainer.max_steps}" if trainer.max_steps and trainer.max_steps > 0 \
            else f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        log.info("%s: %s (%s)", where, ", ".join(parts), timing)
        self._last, self._last_epoch = now, trainer.current_epoch + 1
