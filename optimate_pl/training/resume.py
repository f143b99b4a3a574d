"""Resuming a run (``ckpt_path``): only from a checkpoint written with the same model and data settings."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, debug_mode, start_checkpoint
from ..models.backbones import architecture
from ..models.card import card_path
from ..models.module import SpectraModule
from ..models.weights import CheckpointError, safe_load

log = logging.getLogger("optimate_pl")


#: What a resumed checkpoint must share with the run resuming it (from the saved hyperparameters).
RESUME_DATA_KEYS = ("kind", "source", "fingerprint", "cutoff", "split", "subset", "max_sites", "seed", "train_on",
                    "train_ids")


def resume_mismatches(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings that shape the model or the data and differ between a checkpoint and this run."""
    diffs = []
    net_saved, net_now = saved.get("net") or {}, now.get("net") or {}
    arch_saved, arch_now = architecture(net_saved), architecture(net_now)
    diffs += [f"model.net.{k} (checkpoint {arch_saved.get(k)}, now {arch_now.get(k)})"
              for k in sorted(set(arch_saved) | set(arch_now)) if arch_saved.get(k) != arch_now.get(k)]
    if saved.get("target", "eps_imag") != now.get("target"):
        diffs.append(f"data.target (checkpoint {saved.get('target')}, now {now.get('target')})")
    data_saved, data_now = saved.get("data") or {}, now.get("data") or {}
    diffs += [f"data.{k} (checkpoint {data_saved.get(k)}, now {data_now.get(k)})" for k in RESUME_DATA_KEYS
              if data_saved.get(k) != data_now.get(k)]
    for key in ("optimizer", "scheduler"):
        if (saved.get(key) or None) != (now.get(key) or None):
            diffs.append(f"{key} (checkpoint {saved.get(key)}, now {now.get(key)})")
    if bool(saved.get("multi_fidelity")) != bool(now.get("multi_fidelity")):
        diffs.append(f"model.multi_fidelity (checkpoint {bool(saved.get('multi_fidelity'))}, now "
                     f"{bool(now.get('multi_fidelity'))})")
    return diffs


def start_mismatch(saved: dict[str, Any], cfg: DictConfig) -> list[str]:
    """MF from scratch and MF from IPA weights (``strategy.init``) share their task and settings: a checkpoint of
    one never resumes the other (TL always has a start, the other strategies never)."""
    if not saved.get("multi_fidelity"):
        return []
    started = (saved.get("data") or {}).get("initial_weights") is not None
    wants = start_checkpoint(cfg) is not None
    if started == wants:
        return []
    return [f"strategy.init (the checkpoint's run started from {'IPA weights' if started else 'scratch'}, this one "
            f"{'from ' + str(start_checkpoint(cfg)) if wants else 'from scratch'})"]


def _warn_on_precision(saved: str | None, now: str, path: Path) -> None:
    """Another precision is allowed (a job pre-empted on a GPU may resume on a CPU), but it is said.
    ``now``: the resolved ``trainer.precision``, under the full name the trainer reports (config.resolve)."""
    if saved and saved != now:
        log.warning("%s was trained in %s; this run goes on in %s (trainer.precision): the result will not be "
                    "the uninterrupted run's. Add trainer.precision=%s to resume as it started", path, saved, now,
                    saved)


def _run_config(ckpt: Path) -> DictConfig | None:
    """The config of the run that wrote ``ckpt`` (its folder's config.yaml), None if unknown."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.load(ckpt.parent.parent / "config.yaml")
    except Exception:  # noqa: BLE001 - no or unreadable config: the hyperparameter comparison still decides
        return None


def _run_debug_mode(ckpt: Path) -> tuple | None:
    """The debugging settings of the run that wrote ``ckpt``, None if unknown."""
    config = _run_config(ckpt)
    return None if config is None else debug_mode(config.get("trainer"))


def _last_candidates(cfg: DictConfig) -> list[Path]:
    """``ckpt_path=last``: this task's ``last.ckpt`` files that may be this run's, newest first, the interrupted ones
    (no metrics.json yet) before the finished ones (which a run with more epochs may continue). A run of another
    seed is never taken (the saved hyperparameters hold the split's seed, not the run's), nor a debugging run for a
    real one or the reverse."""
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    found = sorted(Path(cfg.paths.root_dir, "outputs", cfg.task_name).glob("*/checkpoints/last.ckpt"),
                   key=lambda p: p.stat().st_mtime, reverse=True)
    candidates = ([own] if own.is_file() else []) + [p for p in found if p != own]
    if not candidates:
        raise ConfigError(f"ckpt_path=last: no last.ckpt found for task {cfg.task_name} under "
                          f"{Path(cfg.paths.root_dir, 'outputs', cfg.task_name)}; give the path explicitly")
    seeds = {p: (_run_config(p) or {}).get("seed") for p in candidates}
    same_seed = [p for p in candidates if seeds[p] in (None, cfg.get("seed"))]
    if not same_seed:
        raise ConfigError(f"ckpt_path=last: the last.ckpt files of task {cfg.task_name} are of runs with another seed "
                          f"(the newest, {candidates[0]}, seed={seeds[candidates[0]]}; this run seed={cfg.get('seed')}): "
                          f"give the path explicitly to resume it anyway")
    mode = debug_mode(cfg.trainer)
    other = [p for p in same_seed if _run_debug_mode(p) not in (None, mode)]
    if len(other) == len(same_seed):
        raise ConfigError(f"ckpt_path=last: the newest last.ckpt of task {cfg.task_name}, {other[0]}, is a "
                          f"{'debugging' if _run_debug_mode(other[0]) else 'real'} run's and this run is "
                          f"{'one' if mode else 'not'}: give the path explicitly to resume it anyway")
    usable = [p for p in same_seed if p not in other]
    return sorted(usable, key=lambda p: (p.parent.parent / "metrics.json").is_file())  # stable: newest first in each


def adopt_checkpoint(path: Path, saved: dict[str, Any], dirpath: Path) -> Path:
    """A checkpoint of another run folder, made this run's: its best checkpoint copied into ``dirpath`` and the
    ModelCheckpoint state pointed at the copy, written as ``dirpath/resumed-<run>.ckpt``. Lightning keeps only the
    best checkpoint's path when the folder changed, so the first validation after the resume would become the
    "best" model that the run tests and reports, however much worse than the best before the interruption."""
    import os
    import shutil
    import socket

    import torch

    # Lightning compares the folder with symlinks resolved (ModelCheckpoint keeps os.path.realpath of it).
    dirpath = Path(os.path.realpath(os.path.expanduser(str(dirpath))))
    if path.parent.resolve() == dirpath:
        return path
    dirpath.mkdir(parents=True, exist_ok=True)
    # Every DDP rank adopts too (on every node): temporary files of its own, then atomic renames.
    mine = f"{socket.gethostname()}.{os.getpid()}"

    def moved(p: str | None) -> str | None:
        """The copy in ``dirpath`` of a checkpoint the state names (looked for where it was written, then beside the
        interrupted checkpoint: a folder moved since); None where it is in neither place."""
        if not p:
            return None
        found = next((c for c in (Path(p), path.parent / Path(p).name) if c.is_file()), None)
        if found is None:
            return None
        dst = dirpath / found.name
        for src, to in ((found, dst), (card_path(found), card_path(dst))):  # the model card travels with it
            if src.is_file() and not to.is_file():
                tmp = to.with_name(f"{to.name}.{mine}.copying")
                shutil.copy2(src, tmp)
                os.replace(tmp, to)
        return str(dst)

    for key, state in (saved.get("callbacks") or {}).items():
        if not (key.startswith("ModelCheckpoint") and isinstance(state, dict)):
            continue
        best = moved(state.get("best_model_path"))
        if best is None:  # gone: Lightning's own way for another folder (its first validation becomes the best)
            log.warning("%s: its best checkpoint %s is gone: the resumed run's best is chosen among its own epochs",
                        path, state.get("best_model_path"))
            state["best_model_path"] = ""
            continue
        kept = {moved(k): v for k, v in (state.get("best_k_models") or {}).items()}
        kept.pop(None, None)
        state["best_k_models"] = kept
        state["best_model_path"] = best
        state["kth_best_model_path"] = moved(state.get("kth_best_model_path")) or best
        state["last_model_path"] = ""
        state["dirpath"] = str(dirpath)
    out = dirpath / f"{ADOPTED_PREFIX}{path.parent.parent.name}.ckpt"
    tmp = out.with_name(f"{out.name}.{mine}.writing")
    torch.save(saved, tmp)
    os.replace(tmp, out)
    log.info("the best checkpoint of %s is copied into %s: this run goes on comparing with it", path.parent.parent,
             dirpath)
    return out


#: The name of a checkpoint of another run folder made this run's (:func:`adopt_checkpoint`), removed after the fit.
ADOPTED_PREFIX = "resumed-"


def resolve_ckpt_path(cfg: DictConfig, module: SpectraModule) -> str | None:
    """The checkpoint to resume (``ckpt_path``): a path, or ``last`` (this task's newest ``last.ckpt``).

    Only a checkpoint whose saved hyperparameters match this run on everything that shapes the model
    and the data is resumed; otherwise a :class:`ConfigError` names it and the differing settings.
    """
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        return None
    if ckpt == "last":
        candidates = _last_candidates(cfg)
    else:
        candidates = [Path(ckpt).expanduser()]
    first_refusal = None
    for path in candidates:
        saved = safe_load(path)
        if not isinstance(saved, dict) or "hyper_parameters" not in saved:
            raise CheckpointError(f"ckpt_path={ckpt}: {path} is not a Lightning checkpoint of optimate_pl "
                                  f"(no saved hyperparameters); to start from its weights use strategy=tl "
                                  f"strategy.checkpoint={path} (or strategy=mf_ipa strategy.init={path})")
        diffs = resume_mismatches(saved["hyper_parameters"], dict(module.hparams)) + \
            start_mismatch(saved["hyper_parameters"], cfg)
        if not diffs:
            log.log(logging.WARNING if ckpt == "last" else logging.INFO, "resuming from %s (epoch %d, step %d)%s",
                    path, saved.get("epoch", -1), saved.get("global_step", -1),
                    f": ckpt_path=last took the run in {path.parent.parent}" if ckpt == "last" else "")
            _warn_on_precision(saved.get("precision"), str(cfg.trainer.get("precision")), path)
            dirpath = OmegaConf.select(cfg, "callbacks.model_checkpoint.dirpath", default=None)
            return str(adopt_checkpoint(path, saved, Path(dirpath)) if dirpath else path)
        first_refusal = first_refusal or (path, diffs)
    path, diffs = first_refusal
    raise ConfigError(f"ckpt_path={ckpt}: {path} was written by a run with another configuration: "
                      f"{'; '.join(diffs)}. Resume with that run's settings, or start anew without ckpt_path")
