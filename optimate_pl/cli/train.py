"""``python -m optimate_pl`` / ``optimate-pl``: one training command (a run, an ensemble, a campaign, a sweep)."""
from __future__ import annotations

import signal
import sys
from typing import Any

import hydra
from omegaconf import DictConfig

from ..config import ConfigError
from .common import (USER_ERRORS, TrialFailed, configure_process, fail, fail_if_disk_full, in_optuna_sweep,
                     precheck, quote_path_overrides)


def run(cfg: DictConfig) -> dict[str, Any]:
    """What ``python -m optimate_pl`` does with a composed config: resolve it once and find the initial weights
    (:func:`~optimate_pl.training.stages.prepare`), then train one run, an ensemble or an active-learning
    campaign. Returns the metrics (``objective``: what a sweeper optimises)."""
    from ..training.stages import prepare
    from ..training.train import train

    cfg, init = prepare(cfg)
    if cfg.get("active_learning"):
        from ..uncertainty.active_learning import run_campaign

        return run_campaign(cfg, init)
    if int(cfg.get("ensemble", {}).get("size", 1)) > 1:
        from ..uncertainty.ensemble import train_ensemble

        return train_ensemble(cfg, init)
    return train(cfg, init_weights=init)


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="train")
def _train_app(cfg: DictConfig) -> float | None:
    from ..config import check_config

    try:
        # The settings' mistakes first, in one line within a second: before torch and Lightning load (~10 s).
        check_config(cfg)
        configure_process(cfg)
        return run(cfg)["objective"]
    except USER_ERRORS as err:
        if in_optuna_sweep() and not isinstance(err, ConfigError):
            # One failed trial (a diverging sampled learning rate, ...) must not end the whole sweep:
            # the sweeper records it as failed, with this one-line reason.
            raise TrialFailed(str(err).splitlines()[0]) from None
        fail(err, bool(cfg.get("verbose_errors")))
    except SystemExit as err:
        # Lightning's SIGTERMException is a SystemExit (code 0): exit 143 as a terminated process should. Looked up
        # only where Lightning is loaded (a settings mistake exits before it is).
        exceptions = sys.modules.get("lightning.pytorch.utilities.exceptions")
        if exceptions is not None and isinstance(err, exceptions.SIGTERMException):
            sys.exit(128 + signal.SIGTERM)  # the checkpoint and the resume command are written by SaveOnInterrupt
        raise
    except Exception as err:  # a full disk: one line (a library may wrap its OSError; anything else is raised)
        fail_if_disk_full(err, cfg.paths.output_dir, bool(cfg.get("verbose_errors")))


def main() -> None:
    """Console entry point of training (``optimate-pl`` and ``python -m optimate_pl``)."""
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    precheck("train", sys.argv[1:])
    _train_app()


