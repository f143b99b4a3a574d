"""Resuming a run (``ckpt_path``): only from a checkpoint written with the same model and data settings."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from ..config import ConfigError, debug_mode, start_checkpoint
from ..models.backbones import architecture
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


def _run_debug_mode(ckpt: Path) -> tuple | None:
    """The debugging settings of the run that wrote ``ckpt`` (from its folder's config.yaml), None if unknown."""
    from omegaconf import OmegaConf

    config = ckpt.parent.parent / "config.yaml"
    try:
        return debug_mode(OmegaConf.load(config).get("trainer"))
    except Exception:  # noqa: BLE001 - no or unreadable config: the hyperparameter comparison still decides
        return None


def resolve_ckpt_path(cfg: DictConfig, module: SpectraModule) -> str | None:
    """The checkpoint to resume (``ckpt_path``): a path, or ``last`` (this task's newest ``last.ckpt``).

    Only a checkpoint whose saved hyperparameters match this run on everything that shapes the model
    and the data is resumed; otherwise a :class:`ConfigError` names it and the differing settings.
    """
    ckpt = cfg.get("ckpt_path")
    if not ckpt:
        return None
    if ckpt == "last":
        own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
        found = sorted(Path(cfg.paths.root_dir, "outputs", cfg.task_name).glob("*/checkpoints/last.ckpt"),
                       key=lambda p: p.stat().st_mtime, reverse=True)
        candidates = ([own] if own.is_file() else []) + [p for p in found if p != own]
        # A debugging run (debug=fast/overfit, limit_*_batches) never stands in for a real one, nor the reverse.
        mode = debug_mode(cfg.trainer)
        other = [p for p in candidates if _run_debug_mode(p) not in (None, mode)]
        if other and len(other) == len(candidates):
            raise ConfigError(f"ckpt_path=last: the newest last.ckpt of task {cfg.task_name}, {other[0]}, is a "
                              f"{'debugging' if _run_debug_mode(other[0]) else 'real'} run's and this run is "
                              f"{'one' if mode else 'not'}: give the path explicitly to resume it anyway")
        candidates = [p for p in candidates if p not in other]
        if not candidates:
            raise ConfigError(f"ckpt_path=last: no last.ckpt found for task {cfg.task_name} under "
                              f"{Path(cfg.paths.root_dir, 'outputs', cfg.task_name)}; give the path explicitly")
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
            return str(path)
        first_refusal = first_refusal or (path, diffs)
    path, diffs = first_refusal
    raise ConfigError(f"ckpt_path={ckpt}: {path} was written by a run with another configuration: "
                      f"{'; '.join(diffs)}. Resume with that run's settings, or start anew without ckpt_path")
