"""One training run: ``train(cfg)`` instantiates data, model and trainer, fits, tests, writes the outputs.

A plain function that tests and users call as a library; the command line (:mod:`optimate_pl.cli`)
adds the process-wide settings and the stages before it (:mod:`optimate_pl.pipeline`).
"""
from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from .config import ConfigError, check_config, resolve_model, resolve_precision
from .atomic import atomic_write_text
from .models.card import make_card, write_card
from .models.module import SpectraModule
from .models.weights import Weights, load_network_weights, read_weights
from .outputs import write_run_outputs

log = logging.getLogger("optimate_pl")
ARCHITECTURE_KEYS = ("node_widths", "gat_layers", "out_widths", "out_dim")


# -- the run ----------------------------------------------------------------------------------

def build_callbacks_and_loggers(cfg: DictConfig) -> tuple[list, list]:
    """Instantiate the ``callbacks`` and ``logger`` groups (each a dict of ``_target_`` entries)."""
    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return callbacks, loggers


def prepare_wandb(cfg: DictConfig) -> None:
    """W&B never blocks on the network: without an API key it runs offline."""
    if "wandb" in (cfg.get("logger") or {}) and not os.environ.get("WANDB_API_KEY") \
            and os.environ.get("WANDB_MODE") not in ("offline", "disabled"):
        log.info("logger=wandb: no WANDB_API_KEY, logging offline (sync later with `wandb sync`)")
        os.environ["WANDB_MODE"] = "offline"


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``ckpt_path=last`` -> the newest ``last.ckpt`` under the output or run directories of this task."""
    ckpt = cfg.get("ckpt_path")
    if ckpt != "last":
        return ckpt
    own = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if own.is_file():
        return str(own)
    candidates = sorted(Path(cfg.paths.root_dir, "outputs", cfg.task_name).glob("*/checkpoints/last.ckpt"),
                        key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(f"ckpt_path=last: no last.ckpt found for task {cfg.task_name}; give the path explicitly")
    return str(candidates[-1])


def compile_network(model: torch.nn.Module) -> None:
    """``torch.compile`` the network in place (dynamic shapes: every batch has other node/edge counts).

    ``nn.Module.compile`` keeps the parameter names, so checkpoints stay loadable without it. The
    first steps pay the compilation (tens of seconds on a CPU); it pays off over long runs.
    """
    log.info("compile=true: torch.compile(dynamic=True) the network; the first steps compile")
    model.compile(dynamic=True)


def write_cards(ckpt_cb, module: SpectraModule, metrics: dict[str, Any]) -> None:
    """A model card beside the best and the last checkpoint of the run."""
    if ckpt_cb is None:
        return
    test = {k: v for k, v in metrics.items() if k.startswith("test/")}
    for path in {ckpt_cb.best_model_path, ckpt_cb.last_model_path} - {"", None}:
        if Path(path).is_file():
            write_card(path, make_card(dict(module.hparams), test, best=path == ckpt_cb.best_model_path))


def finish_loggers(loggers: list) -> None:
    """One W&B run per Hydra job, also in a multirun."""
    from lightning.pytorch.loggers import WandbLogger

    if any(isinstance(lg, WandbLogger) for lg in loggers):
        import wandb

        wandb.finish()


def use_checkpoint_architecture(cfg: DictConfig, weights: Weights) -> None:
    """The network a run starts from is the initial weights' own: set ``model.net`` to it (logged when it differs)."""
    configured = OmegaConf.to_container(cfg.model.net, resolve=True) if cfg.model.get("net") else {}
    if any(configured.get(k) != weights.net.get(k) for k in ARCHITECTURE_KEYS):
        log.warning("the initial weights %s hold the architecture %s; using it instead of the configured %s",
                    weights.path, {k: weights.net[k] for k in ARCHITECTURE_KEYS},
                    {k: configured.get(k) for k in ARCHITECTURE_KEYS})
    with open_dict(cfg):
        cfg.model.net = {**configured, **weights.net}


def train(cfg: DictConfig, init_weights: Weights | str | Path | None = None) -> dict[str, Any]:
    """Train, validate and test one configuration; returns the metrics (and the sweep objective).

    ``init_weights``: a weight file (any layout of :mod:`optimate_pl.models.weights`) to start from,
    all parameters retrained (transfer learning); the run's network is that file's architecture.
    Writes into ``paths.output_dir``: ``config.yaml``, ``metrics.json``, ``test_results.csv`` and
    ``test_spectra.png`` (predicted vs DFT spectra at SC quantiles).
    """
    check_config(cfg)
    chosen = resolve_model(cfg)
    if chosen:
        log.info("strategy=dl: using architecture %s for data.subset=%s", chosen, cfg.data.get("subset"))
    weights = None
    if cfg.strategy.name == "tl" and init_weights is None and not cfg.get("ckpt_path"):
        raise ConfigError("strategy=tl starts from IPA weights: pass train(cfg, init_weights=...), or call "
                          "optimate_pl.pipeline.run(cfg), which loads or pretrains strategy.checkpoint first")
    if init_weights is not None:
        weights = init_weights if isinstance(init_weights, Weights) else read_weights(init_weights)
        use_checkpoint_architecture(cfg, weights)
    precision = resolve_precision(cfg)
    if precision != "32-true":
        log.info("training in %s precision; the final test runs in fp32 from the best checkpoint", precision)
    prepare_wandb(cfg)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # builds the cache once (under a lock, also when DDP ranks race)
    datamodule.setup()
    module = SpectraModule(net=OmegaConf.to_container(cfg.model.net, resolve=True),
                           optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
                           scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
                           target=cfg.data.target,
                           data={**datamodule.describe(), "initial_weights": str(weights.path) if weights else None})
    if weights is not None:
        load_network_weights(module.model, weights)
        log.info("loaded initial weights from %s (%s layout); retraining all parameters", weights.path,
                 weights.layout)
    if cfg.get("compile"):
        compile_network(module.model)

    callbacks, loggers = build_callbacks_and_loggers(cfg)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), out / "config.yaml")

    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg))
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    ckpt_cb = trainer.checkpoint_callback
    # Best validation checkpoint; a run too short to validate falls back to its last checkpoint.
    best = (ckpt_cb.best_model_path or ckpt_cb.last_model_path or None) if ckpt_cb is not None else None
    metrics["best_checkpoint"] = best
    metrics["n_train"] = len(datamodule.train_set)
    if cfg.get("test"):
        trainer.test(module, datamodule=datamodule, ckpt_path=best if best else None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        if trainer.is_global_zero:
            write_run_outputs(cfg, module, datamodule, metrics, out, loggers)
    metrics["time_s"] = time.perf_counter() - t_start
    if trainer.is_global_zero:
        atomic_write_text(json.dumps(metrics, indent=2), out / "metrics.json")
        write_cards(ckpt_cb, module, metrics)
    finish_loggers(loggers)
    objective = cfg.get("optimized_metric")
    metrics["objective"] = metrics.get(objective) if objective else None
    return metrics
