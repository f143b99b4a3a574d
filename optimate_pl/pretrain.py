"""TL's IPA pretraining stage: the IPA run derived from a TL run's own config, and its checkpoint.

``ensure_ipa_checkpoint(cfg)`` is what ``strategy=tl strategy.checkpoint=auto`` needs: the IPA
checkpoint named by everything that shapes that model, pretrained once (under a lock) when missing,
and again when the file was damaged since (its checksum sidecar says so; logged).
:func:`derived_config` derives a run of another strategy from a run's own nodes (also used by the
active-learning campaign).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from .atomic import atomic_open, checksum_path, file_lock, record_checksum, remove_with_checksum, verify_file
from .config import load_group_config, resolve_model, resolve_precision
from .data.cache import fingerprint
from .models.card import read_card, write_card

log = logging.getLogger("optimate_pl")

#: Trainer keys that set a run's budget or debugging mode: the pretraining has its own.
BUDGET_KEYS = ("max_epochs", "max_steps", "val_check_interval", "check_val_every_n_epoch", "fast_dev_run",
               "overfit_batches", "limit_train_batches", "limit_val_batches", "limit_test_batches")
#: Data keys that do not change what a model learns (where files live, how they are loaded).
DATA_KEYS_WITHOUT_EFFECT = ("cache_dir", "num_workers", "eval_batch_size")


def derived_config(cfg: DictConfig, strategy: str, model: str | None = None, keep_budget: bool = False,
                   **data: Any) -> DictConfig:
    """A run of another ``strategy`` derived from ``cfg``'s own nodes: the same data settings (with ``data``
    overrides), paths, accelerator, devices, precision and seed; the strategy's optimiser, batch size and
    target; its model config ``model`` (default: ``cfg``'s); its epochs, unless ``keep_budget`` keeps
    ``cfg``'s training budget; a CSV logger only.
    """
    group = load_group_config("strategy", strategy)
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    with open_dict(out):
        out.strategy = group.strategy
        out.optimizer, out.scheduler = group.optimizer, group.scheduler
        out.task_name = strategy
        out.data.update(**group.get("data", {}), **data)
        if model is not None:
            out.model = load_group_config("model", model)
        if not keep_budget:
            for key in BUDGET_KEYS:
                out.trainer.pop(key, None)
            out.trainer.max_epochs = "${strategy.epochs.${data.source}}"
            out.trainer.check_val_every_n_epoch = "${strategy.check_val_every_n_epoch.${data.source}}"
        out.logger = {"csv": load_group_config("logger", "csv").csv}
        out.ckpt_path = None
        out.pop("active_learning", None)
        out.ensemble = {"size": 1, "member": None}
    return out


def ipa_pretraining_config(cfg: DictConfig) -> DictConfig:
    """The ``strategy=ipa`` run a TL run starts from, derived from the TL run's own config nodes.

    Same data settings (source, split, cutoff, seeds, synthetic sizes; the IPA database at
    ``data.ipa_root``), the TL network (the TL model is the IPA model), the same accelerator,
    devices and precision; the IPA strategy's optimiser, batch size and epochs
    (``strategy.pretrain_epochs`` overrides the epochs); no test.
    """
    out = derived_config(cfg, "ipa", _target_=load_group_config("data", "ipa")._target_,
                         root=cfg.data.get("ipa_root"), subset=None, max_sites=None, target="eps_imag",
                         train_on="train", train_ids=None)
    epochs = cfg.strategy.get("pretrain_epochs")
    with open_dict(out):
        if epochs:  # a short pretraining still validates, so that it has a best checkpoint
            out.trainer.max_epochs = int(epochs)
            out.trainer.check_val_every_n_epoch = min(int(epochs), int(out.strategy.check_val_every_n_epoch[
                cfg.data.source]))
        out.test, out.compile = False, cfg.get("compile", False)
        out.compile_edges = cfg.get("compile_edges", False)
    resolve_precision(out)  # the checkpoint's name then says which precision trained it
    return out


def ipa_checkpoint_path(cfg: DictConfig, ipa_cfg: DictConfig | None = None) -> Path:
    """Where the automatic IPA checkpoint of this TL run lives: named by everything that shapes that model."""
    ipa_cfg = ipa_cfg if ipa_cfg is not None else ipa_pretraining_config(cfg)
    data = _resolved(ipa_cfg.data, skip=DATA_KEYS_WITHOUT_EFFECT)
    trainer = _resolved(ipa_cfg.trainer, skip=("default_root_dir",))
    monitor = OmegaConf.select(ipa_cfg, "callbacks.model_checkpoint", default=None)
    key = fingerprint({"data": data, "net": OmegaConf.to_container(ipa_cfg.model.net, resolve=True),
                       "optimizer": OmegaConf.to_container(ipa_cfg.optimizer, resolve=True),
                       "scheduler": OmegaConf.to_container(ipa_cfg.scheduler, resolve=True) if ipa_cfg.scheduler
                       else None, "trainer": trainer, "seed": ipa_cfg.seed,
                       "monitor": [monitor.get("monitor"), monitor.get("mode")] if monitor else None})
    return Path(cfg.paths.checkpoint_dir) / f"ipa-{cfg.data.source}-{key[:16]}.ckpt"


def _resolved(node: DictConfig, skip: tuple[str, ...]) -> dict[str, Any]:
    """A node's values, resolved one by one, leaving out ``skip`` (they may point at Hydra's run dir)."""
    out = {}
    for key in node:
        if key not in skip:
            value = node[key]
            out[key] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    return out


def ensure_ipa_checkpoint(cfg: DictConfig) -> Path:
    """The IPA checkpoint of ``strategy.checkpoint=auto``: reused when present, else pretrained now.

    Two runs that need the same checkpoint pretrain it once: the second waits on a lock. The file is
    verified against its checksum sidecar before reuse; a damaged one is pretrained again (logged).
    """
    from .train import train

    resolve_model(cfg)
    ipa_cfg = ipa_pretraining_config(cfg)
    target = ipa_checkpoint_path(cfg, ipa_cfg)
    with file_lock(target.with_suffix(".lock")):
        problem = _checkpoint_problem(target)
        if problem is None:
            log.info("strategy=tl: starting from the IPA checkpoint %s", target)
            return target
        if problem != "missing":
            log.warning("the automatic IPA checkpoint %s cannot be trusted (%s): pretraining it again", target,
                        problem)
            remove_with_checksum(target)
        with open_dict(ipa_cfg):
            ipa_cfg.paths.output_dir = str(target.parent / f"{target.stem}-run")
        log.info("strategy=tl checkpoint=auto: no IPA checkpoint at %s yet -> pretraining on IPA first "
                 "(%s epochs, output in %s)", target, OmegaConf.select(ipa_cfg, "trainer.max_epochs"),
                 ipa_cfg.paths.output_dir)
        result = train(ipa_cfg)
        best = result.get("best_checkpoint")
        if not best:
            raise RuntimeError("IPA pretraining produced no checkpoint")
        with open(best, "rb") as src, atomic_open(target, "wb", checksum=True,
                                                  size_hint=Path(best).stat().st_size) as dst:
            shutil.copyfileobj(src, dst)  # a crash never leaves a half-copied checkpoint at target
        card = read_card(best)
        if card is not None:
            write_card(target, card)
    log.info("IPA checkpoint ready: %s", target)
    return target


def _checkpoint_problem(path: Path) -> str | None:
    """Why the automatic checkpoint at ``path`` cannot be reused, or ``None``.

    Its checksum sidecar decides; a checkpoint of an earlier version (no sidecar) is adopted when it
    loads completely and holds finite weights, and gets its sidecar then.
    """
    from .models.weights import CheckpointError, read_weights

    problem = verify_file(path)
    if problem is None or problem == "missing" or checksum_path(path).exists():
        return problem
    try:
        read_weights(path)
    except CheckpointError as err:
        return str(err)
    record_checksum(path)
    log.info("recorded the checksum of %s (written by an earlier version; it loads completely)", path)
    return None
