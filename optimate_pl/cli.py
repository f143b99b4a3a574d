"""The command line: ``python -m optimate_pl ...`` / ``optimate-pl ...``.

Process-wide settings (allocator, matmul precision, warnings, logging handlers) belong here, not
in :func:`~optimate_pl.train.train`, which tests and users call as a library. Configuration
mistakes end in one line and exit code 2.
"""
from __future__ import annotations

import logging
import sys
import warnings

import hydra
import torch
from omegaconf import DictConfig

from .allocator import keep_freed_memory
from .config import ConfigError
from .models.weights import CheckpointError

#: Errors that are the user's to fix: shown in one line unless ``verbose_errors=true``.
USER_ERRORS = (ConfigError, CheckpointError, FloatingPointError, FileNotFoundError, ValueError)


def configure_process(cfg: DictConfig) -> None:
    """Settings that last for the whole process: allocator, quiet warnings, one handler per log line."""
    if cfg.get("keep_freed_memory_mb"):
        keep_freed_memory(int(cfg.keep_freed_memory_mb) * 2**20)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning and our logger each attach handlers under Hydra; keep one line per message.
    for name in ("optimate_pl", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.propagate = True
        lg.handlers.clear()
    if not cfg.get("verbose_errors"):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


def fail(err: BaseException, verbose: bool) -> None:
    """A user's mistake: one line on stderr and exit code 2 (the traceback with ``verbose_errors=true``)."""
    if verbose:
        raise err
    print(f"error: {err}\n(run with verbose_errors=true for the full traceback)", file=sys.stderr)
    sys.exit(2)


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="train")
def _train_app(cfg: DictConfig) -> float | None:
    from .pipeline import run

    configure_process(cfg)
    try:
        return run(cfg)["objective"]
    except USER_ERRORS as err:
        fail(err, bool(cfg.get("verbose_errors")))


def main() -> None:
    """Console entry point of training (``optimate-pl`` and ``python -m optimate_pl``)."""
    torch.set_float32_matmul_precision("high")
    _train_app()
