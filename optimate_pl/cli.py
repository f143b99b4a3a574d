"""The command lines: training (``python -m optimate_pl ...`` / ``optimate-pl``) and ``optimate-pl-predict``.

Process-wide settings (allocator, matmul precision, warnings, logging handlers) belong here, not
in :func:`~optimate_pl.train.train`, which tests and users call as a library. Configuration
mistakes end in one line and exit code 2.
"""
from __future__ import annotations

import logging
import re
import sys
import warnings

import hydra
import torch
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from .allocator import keep_freed_memory
from .config import ConfigError
from .models.weights import CheckpointError

#: Overrides whose values are file paths: quoted before Hydra parses them, so that a path may hold
#: characters of Hydra's grammar (Lightning's ``epoch=3-step=70.ckpt``, commas, spaces, quotes).
PATH_KEYS = ("checkpoint", "input", "output", "strategy.checkpoint", "ckpt_path", "data.root", "data.ipa_root",
             "data.split", "data.cache_dir", "paths.root_dir", "paths.output_dir", "paths.checkpoint_dir",
             "hydra.run.dir", "hydra.sweep.dir")
SPECIAL = set("=,[]{}()'\" \t$")


def quote_path_overrides(argv: list[str]) -> list[str]:
    """``key=value`` -> ``key='value'`` for path keys whose value holds characters of Hydra's grammar."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+~") in PATH_KEYS and value[:1] not in ("'", '"') and SPECIAL & set(value):
            # Hydra's quoted strings: backslashes are literal except before a quote (or the closing one).
            value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
            arg = f"{key}='" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value) + "'"
        out.append(arg)
    return out


#: Errors that are the user's to fix: shown in one line unless ``verbose_errors=true``.
USER_ERRORS = (ConfigError, CheckpointError, FloatingPointError, FileNotFoundError, ValueError, MissingMandatoryValue)


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
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    _train_app()


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="predict")
def _predict_app(cfg: DictConfig) -> None:
    from .predict import run_prediction

    configure_process(cfg)
    try:
        result = run_prediction(cfg.checkpoint, cfg.input, cfg.output, format=cfg.format, plot=int(cfg.plot),
                                batch_size=int(cfg.batch_size), device=str(cfg.device))
    except USER_ERRORS as err:
        fail(err, bool(cfg.get("verbose_errors")))
        return
    print(f"predicted {result['n_predicted']} materials -> {', '.join(result['files'])}"
          + (f"; {len(result['errors'])} inputs skipped (see errors.txt)" if result["errors"] else ""))


def predict_main() -> None:
    """Console entry point of prediction (``optimate-pl-predict``)."""
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    _predict_app()
