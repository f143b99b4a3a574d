"""The Lightning ``Trainer`` of a run and what it carries: the ``callbacks`` and ``logger`` groups (W&B offline
without an API key), our own callbacks, atomic checkpoint writes, and ``torch.compile`` of the network."""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig

from .callbacks import AtomicCheckpointIO, EpochLog, SaveOnInterrupt

log = logging.getLogger("optimate_pl")


def build_trainer(cfg: DictConfig) -> tuple[pl.Trainer, list]:
    """The run's trainer (``cfg.trainer``) with its callbacks and loggers; returns it and the loggers."""
    prepare_wandb(cfg)
    callbacks, loggers = build_callbacks_and_loggers(cfg)
    # Without a progress-bar callback Lightning would add its own: EpochLog writes the lines instead.
    bar = any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                                  enable_progress_bar=bar, plugins=[AtomicCheckpointIO()])
    return trainer, loggers


def build_callbacks_and_loggers(cfg: DictConfig) -> tuple[list, list]:
    """Instantiate the ``callbacks`` and ``logger`` groups (each a dict of ``_target_`` entries), plus ours.

    Every run gets :class:`SaveOnInterrupt`. Without a terminal (SLURM, nohup) progress bars are
    dropped (they would show only their final state) and :class:`EpochLog` writes a line per validation.
    """
    from lightning.pytorch.callbacks import ProgressBar

    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not sys.stderr.isatty():
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(EpochLog())
    callbacks.append(SaveOnInterrupt(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", command_line()))
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    if loggers and not any(isinstance(c, pl.callbacks.LearningRateMonitor) for c in callbacks):
        # The plateau scheduler lowers the learning rate: dashboards show when (Lightning refuses it without a logger).
        callbacks.append(pl.callbacks.LearningRateMonitor(logging_interval="epoch"))
    return callbacks, loggers


def command_line() -> list[str]:
    """The overrides this run was started with on the command line (empty when called as a library)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def prepare_wandb(cfg: DictConfig) -> None:
    """W&B never blocks on the network: without an API key (``WANDB_API_KEY``, or the one ``wandb login`` keeps in
    ~/.netrc) it runs offline. A ``WANDB_MODE`` that is set is the user's choice and kept."""
    if "wandb" in (cfg.get("logger") or {}) and not os.environ.get("WANDB_MODE") and not wandb_key_known():
        log.info("logger=wandb: no W&B API key (WANDB_API_KEY or `wandb login`), logging offline (sync later with "
                 "`wandb sync`)")
        os.environ["WANDB_MODE"] = "offline"


def wandb_key_known() -> bool:
    """Whether W&B has an API key here without asking: the environment's, or ~/.netrc's for its host (where
    `wandb login` writes it). Read from the file, not by wandb: that may prompt or reach the network."""
    import netrc
    from urllib.parse import urlparse

    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    try:
        return bool((netrc.netrc().authenticators(host) or (None, None, None))[2])
    except (OSError, netrc.NetrcParseError):
        return False


def log_best_model(loggers: list, checkpoint: str | None, card: dict | None) -> None:
    """The best checkpoint (and its model card) as a W&B artifact ``model-<run id>`` with the alias ``best``.
    Offline it is kept in the run's folder and uploaded by ``wandb sync``; a failure is a warning, never an error."""
    from lightning.pytorch.loggers import WandbLogger

    runs = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    if not runs or not checkpoint or not Path(checkpoint).is_file():
        return
    try:
        import wandb

        run = runs[0].experiment
        artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=card or {})
        artifact.add_file(str(checkpoint), name="best.ckpt")
        card_file = Path(str(checkpoint) + ".card.json")
        if card_file.is_file():
            artifact.add_file(str(card_file), name="best.ckpt.card.json")
        run.log_artifact(artifact, aliases=["best"])
    except Exception as err:  # noqa: BLE001 - a dashboard extra must never fail a finished run
        log.warning("could not log the best model to W&B (%s: %s)", type(err).__name__, err)


def finish_loggers(loggers: list) -> None:
    """One W&B run per Hydra job, also in a multirun."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def compile_network(model: torch.nn.Module, static_shapes: bool = False, device_type: str = "cpu") -> None:
    """``torch.compile`` the network in place, with dynamic shapes (every batch has other node/edge counts).

    On a GPU with ``static_shapes`` (``data.static_shapes=true``: batches padded to a few bucket sizes) it
    uses ``mode="reduce-overhead"``: the compiled step is recorded as a CUDA graph once per bucket shape and
    then replayed, instead of launching its hundreds of small kernels one by one. ``nn.Module.compile``
    keeps the parameter names, so checkpoints stay loadable without it. The first steps pay the compilation
    (tens of seconds on a CPU); it pays off over long runs.
    """
    mode = "reduce-overhead" if static_shapes and device_type == "cuda" else None
    log.info("compile=true: torch.compile(dynamic=True%s) the network; the first steps compile",
             f", mode={mode}" if mode else "")
    model.compile(dynamic=True, mode=mode)
