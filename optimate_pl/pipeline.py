"""The stages of one command: the IPA weights a TL run starts from, then the run itself.

``run(cfg)`` is what ``python -m optimate_pl`` executes: for ``strategy=tl`` it first makes sure the
IPA checkpoint exists (``strategy.checkpoint=auto`` pretrains it with the TL run's own data and
trainer settings, once, under a lock: :mod:`optimate_pl.pretrain`), then calls
:func:`~optimate_pl.train.train` for the one run (or an ensemble, or an active-learning campaign).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, open_dict

from .config import ConfigError, check_config, resolve_model, writable_problem
from .data.cache import default_cache_dir
from .pretrain import ensure_ipa_checkpoint, ipa_checkpoint_path


def run(cfg: DictConfig) -> dict[str, Any]:
    """One command: the IPA pretraining stage when a TL run needs it, then :func:`train`.

    Every folder the run will write is checked first, and the weights a TL run starts from (they must
    predict the run's target), so that either is a one-line error before any expensive work.
    """
    from .callbacks import requeued_checkpoint
    from .models.weights import read_weights
    from .train import check_start_weights, train

    check_config(cfg)
    check_writable(cfg)
    if not cfg.get("active_learning") and int(cfg.get("ensemble", {}).get("size", 1)) <= 1:
        requeued = requeued_checkpoint(cfg)  # a SLURM job restarted after a pre-emption resumes by itself
        if requeued:
            with open_dict(cfg):
                cfg.ckpt_path = str(requeued)
    init = None
    if cfg.strategy.name == "tl":
        ckpt = str(cfg.strategy.checkpoint)
        if ckpt != "auto":
            init = read_weights(Path(ckpt).expanduser())
            check_start_weights(cfg, init)
        elif not cfg.get("ckpt_path"):
            init = ensure_ipa_checkpoint(cfg)
        else:  # resuming: the IPA checkpoint only names the architecture, when it is there
            resolve_model(cfg)
            path = ipa_checkpoint_path(cfg)
            init = path if path.is_file() else None
    if cfg.get("active_learning"):
        from .active_learning import run_campaign

        return run_campaign(cfg)
    if int(cfg.get("ensemble", {}).get("size", 1)) > 1:
        from .ensemble import train_ensemble

        return train_ensemble(cfg, init)
    return train(cfg, init_weights=init)


def check_writable(cfg: DictConfig) -> None:
    """The run's output folder, the data cache and (for TL's automatic pretraining) the checkpoint folder."""

    places = [("paths.output_dir", cfg.paths.output_dir, "the run's output folder"),
              ("data.cache_dir", cfg.data.get("cache_dir") or default_cache_dir(), "the data cache")]
    if cfg.strategy.name == "tl" and str(cfg.strategy.get("checkpoint")) == "auto":
        places.append(("paths.checkpoint_dir", cfg.paths.checkpoint_dir, "the folder of automatic IPA checkpoints"))
    for key, path, what in places:
        problem = writable_problem(path)
        if problem:
            raise ConfigError(f"cannot write {what} {path}: {problem}; choose another with {key}=...")
