"""The stages before training: the config resolved once, the folders checked, the weights a run starts from.

:func:`prepare` is what every training command does first: it resolves the config (one-line errors
before any expensive work), checks every folder the run will write, picks up a SIGTERM-requeued SLURM
job's checkpoint, and for ``strategy=tl`` (and ``mf_ipa``) makes sure the IPA weights exist (``strategy.checkpoint=auto``
pretrains them with the TL run's own data and trainer settings, once, under a lock:
:mod:`optimate_pl.training.pretrain`). :func:`run` is one run: ``prepare`` then
:func:`~optimate_pl.training.train.train`. (The command, :func:`optimate_pl.cli.train.run`, also
dispatches to an ensemble or an active-learning campaign.)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..config import ConfigError, derive_config, resolve_config, start_checkpoint
from ..data.cache import default_cache_dir
from ..models.weights import Weights
from ..utils.atomic import writable_problem
from .pretrain import checkpoint_problem, ensure_ipa_checkpoint, ipa_checkpoint_path


def prepare(cfg: DictConfig) -> tuple[DictConfig, Weights | Path | None]:
    """The resolved config of the command and the initial weights of its run(s) (``None``: random)."""
    from ..models.weights import read_weights
    from .callbacks import requeued_checkpoint, requeued_job

    # TL (or MF) from a weight file: read it once, here; resolution takes its architecture from it (a missing file
    # is left to resolve_config's one-line error).
    ckpt = start_checkpoint(cfg)
    path = Path(ckpt or "auto").expanduser()
    given = read_weights(path) if ckpt not in (None, "auto") and path.is_file() else None
    cfg = resolve_config(cfg, given)
    check_writable(cfg)
    ensemble = int(cfg.get("ensemble", {}).get("size", 1)) > 1
    if not cfg.get("active_learning") and not ensemble:
        requeued = requeued_checkpoint(cfg)  # a SLURM job restarted after a pre-emption resumes by itself
        if requeued:
            cfg = derive_config(cfg, {"ckpt_path": str(requeued)})
    elif ensemble and requeued_job(cfg):
        # An ensemble requeued by SLURM: its finished members are kept, each other one resumes its own last.ckpt
        cfg = derive_config(cfg, {"ckpt_path": "last"})
    init: Weights | Path | None = None
    if start_checkpoint(cfg) is not None:  # TL, or MF from the IPA model (strategy=mf_ipa)
        if given is not None:
            init = given  # its target and architecture were checked by resolve
        elif not cfg.get("ckpt_path") or ensemble:  # an ensemble's members that have no last.ckpt start from it
            if checkpoint_problem(ipa_checkpoint_path(cfg)) is not None:
                check_training_data(cfg)  # a data mistake is said before minutes of pretraining, not after
            init = ensure_ipa_checkpoint(cfg)
        else:  # resuming: the IPA checkpoint only names the architecture, when it is there
            path = ipa_checkpoint_path(cfg)
            init = path if path.is_file() else None
    return cfg, init


def run(cfg: DictConfig) -> dict[str, Any]:
    """One training run: :func:`prepare`, then :func:`~optimate_pl.training.train.train`; returns its metrics."""
    from .train import train

    if cfg.get("active_learning") or int(cfg.get("ensemble", {}).get("size", 1)) > 1:
        raise ConfigError("this config is an ensemble or an active-learning campaign, not one run: call "
                          "optimate_pl.cli.train.run(cfg), what `python -m optimate_pl` does")
    cfg, init = prepare(cfg)
    return train(cfg, init_weights=init)


def check_training_data(cfg: DictConfig) -> None:
    """Set up the run's data module (the cache built once, reused by the run): a subset larger than the training
    set, an empty filter or a missing file then fails in one line before any pretraining."""
    import hydra

    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()
    datamodule.setup()


def check_writable(cfg: DictConfig) -> None:
    """The run's output folder, the data cache and (for TL's automatic pretraining) the checkpoint folder."""
    places = [("paths.output_dir", cfg.paths.output_dir, "the run's output folder"),
              ("data.cache_dir", cfg.data.get("cache_dir") or default_cache_dir(), "the data cache")]
    if start_checkpoint(cfg) == "auto":
        places.append(("paths.checkpoint_dir", cfg.paths.checkpoint_dir, "the folder of automatic IPA checkpoints"))
    for key, path, what in places:
        problem = writable_problem(path)
        if problem:
            raise ConfigError(f"cannot write {what} {path}: {problem}; choose another with {key}=...")
