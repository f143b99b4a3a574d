"""Configs derived from a run's own: TL's IPA pretraining, the campaign's SC model, an ensemble member, an
active-learning round. One helper, :func:`derive_config`, returns each resolved."""
from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from .groups import load_group_config
from .resolve import resolve_config

#: Trainer keys that set a run's budget or debugging mode: a run of another strategy has its own.
BUDGET_KEYS = ("max_epochs", "max_steps", "val_check_interval", "check_val_every_n_epoch", "fast_dev_run",
               "overfit_batches", "limit_train_batches", "limit_val_batches", "limit_test_batches")
#: Trainer keys of a debugging run (their neutral values: unset, 0, and the float 1.0: all batches).
DEBUG_TRAINER_KEYS = ("fast_dev_run", "overfit_batches", "limit_train_batches", "limit_val_batches")
#: An override value that removes the key.
REMOVE = object()


def group_choice(group_cfg: DictConfig, group: str) -> str | None:
    """The option a packaged config selects for ``group`` in its defaults list (``override /optimizer: adam``)."""
    for entry in group_cfg.get("defaults") or []:
        if OmegaConf.is_dict(entry):
            for key, value in entry.items():
                if key.split()[-1].lstrip("/") == group:
                    return value
    return None


def derive_config(cfg: DictConfig, overrides: dict[str, Any] | None = None, *, strategy: str | None = None,
                  model: str | None = None, keep_budget: bool = True) -> DictConfig:
    """A resolved config derived from ``cfg`` (left unchanged).

    ``strategy``: a run of that strategy from ``cfg``'s own nodes: the same data settings, paths,
    accelerator, devices, precision and seed; the strategy's optimiser, scheduler, batch size and target;
    its epochs unless ``keep_budget``; a CSV logger (and W&B, as its own run in the parent's group, where the parent
    logs to W&B); no resume, ensemble or campaign.
    ``model``: that model config instead of ``cfg``'s. ``overrides``: dotted keys and their values
    (:data:`REMOVE` deletes a key), applied last.
    """
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    # W&B: a derived run (TL's IPA pretraining, a campaign's SC model) is its own run in the parent's group, named
    # after the parent; resolved here, before task_name changes under the interpolations.
    wandb = OmegaConf.select(cfg, "logger.wandb", default=None)
    wandb = OmegaConf.to_container(wandb, resolve=True) if wandb is not None else None
    with open_dict(out):
        if strategy is not None:
            group = load_group_config("strategy", strategy)
            out.strategy = group.strategy
            opt, sched = group_choice(group, "optimizer"), group_choice(group, "scheduler")
            out.optimizer = load_group_config("optimizer", opt) if opt else out.optimizer
            out.scheduler = load_group_config("scheduler", sched) if sched else None
            out.task_name = strategy
            out.data.update(group.get("data", {}))
            out.logger = {"csv": load_group_config("logger", "csv").csv}
            if wandb is not None:
                out.logger.wandb = {**wandb, "name": f"{wandb.get('name')}-{strategy}", "save_dir": "${paths.output_dir}"}
            out.ckpt_path = None
            out.pop("active_learning", None)
            out.ensemble = {"size": 1, "member": None}
            if not keep_budget:
                for key in BUDGET_KEYS:
                    out.trainer.pop(key, None)
                out.trainer.max_epochs = "${strategy.epochs.${data.source}}"
                out.trainer.check_val_every_n_epoch = "${strategy.check_val_every_n_epoch.${data.source}}"
        if model is not None:
            out.model = load_group_config("model", model)
        for key, value in (overrides or {}).items():
            if value is REMOVE:
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(out, parent) if parent else out
                if node is not None:
                    node.pop(leaf, None)
            else:
                OmegaConf.update(out, key, value, force_add=True)
    return resolve_config(out)


def debug_mode(trainer: Any) -> tuple:
    """The debugging settings of a trainer config (``debug=fast``/``overfit``, ``limit_*_batches``) as (key, value)
    pairs; () for a real run."""
    out = []
    for key in DEBUG_TRAINER_KEYS:
        value = trainer.get(key) if trainer is not None else None
        if value is None or value is False:
            continue
        # Lightning reads an int as a number of batches and a float as a fraction: limit_train_batches=1 is one
        # batch (debugging), 1.0 all of them.
        neutral = value == 0 if key in ("fast_dev_run", "overfit_batches") else \
            isinstance(value, float) and value == 1.0
        if not neutral:
            out.append((key, value))
    return tuple(out)
