"""One training run: ``train(cfg)`` instantiates data, model and trainer, fits, tests, writes the outputs.

A plain function that tests and users call as a library, on a config resolved by
:func:`optimate_pl.config.resolve_config` (an unresolved one is resolved first; ``cfg`` is never
changed). The command line (:mod:`optimate_pl.cli`) adds the process-wide settings and the stages before
it (:mod:`optimate_pl.training.stages`).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf

from ..config import ConfigError, check_compile_edges, is_resolved, resolve_config, start_checkpoint, start_key
from ..models.optimate import cxx_compiler
from ..models.card import read_card
from ..models.weights import Weights, load_network_weights, read_weights
from ..utils.atomic import atomic_write_text
from ..data.splits import write_split_files
from .outputs import evaluate_medians, write_cards, write_run_outputs
from .resume import ADOPTED_PREFIX, resolve_ckpt_path
from .trainer import build_trainer, compile_network, finish_loggers, log_best_model

log = logging.getLogger("optimate_pl")

#: Training steps from which ``compile_edges=auto`` compiles the edge work on a CPU: its compilation (~10 s)
#: is repaid after ~400 steps of the IPA network at batch 128 (~25 ms saved a step, benchmarks/cpu_2core.md).
AUTO_EDGE_STEPS = 500


def compile_edges_decision(setting: Any, trainer: pl.Trainer, datamodule) -> tuple[bool, str]:
    """Whether to compile the GATv2 edge work, and why. ``setting``: true, false or ``auto`` (on for a
    single-process CPU run of at least :data:`AUTO_EDGE_STEPS` training steps where a C++ compiler is found)."""
    check_compile_edges(setting)
    if setting != "auto":
        return bool(setting), "asked for"
    from lightning.pytorch.accelerators import CPUAccelerator

    if not isinstance(trainer.accelerator, CPUAccelerator) or trainer.world_size > 1 or trainer.fast_dev_run:
        return False, "not a single-process CPU run"
    batches = -(-len(datamodule.train_set) // datamodule.batch_size)
    steps = batches * max(int(trainer.max_epochs or 0), 0)
    if trainer.max_steps and trainer.max_steps > 0:
        steps = min(steps, trainer.max_steps) if steps > 0 else trainer.max_steps
    if steps < AUTO_EDGE_STEPS:
        return False, f"{steps} training steps < {AUTO_EDGE_STEPS}"
    if not cxx_compiler():
        return False, "no C++ compiler found"
    return True, f"{steps} training steps on a CPU"


def train(cfg: DictConfig, init_weights: Weights | str | Path | None = None) -> dict[str, Any]:
    """Train, validate and test one configuration; returns the metrics (and the sweep objective).

    ``init_weights``: a weight file (any layout of :mod:`optimate_pl.models.weights`) to start from,
    all parameters retrained (transfer learning); the run's network is that file's architecture.
    Writes into ``paths.output_dir``: ``config.yaml``, ``metrics.json``, ``test_results.csv`` and
    ``test_spectra.png`` (predicted vs DFT spectra at SC quantiles).
    """
    # The initial weights set the architecture; a resumed run then restores its own weights.
    weights = init_weights if isinstance(init_weights, Weights) or init_weights is None else read_weights(init_weights)
    if not is_resolved(cfg, weights):
        cfg = resolve_config(cfg, weights)
    resuming = bool(cfg.get("ckpt_path"))
    if start_checkpoint(cfg) is not None and weights is None and not resuming:
        raise ConfigError(f"strategy={cfg.strategy.name} with {start_key(cfg)} starts from IPA weights: pass "
                          "train(cfg, init_weights=...), or call optimate_pl.training.stages.run(cfg), which loads or "
                          "pretrains strategy.checkpoint first")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    datamodule.prepare_data()  # builds the cache once (under a lock, also when DDP ranks race)
    datamodule.setup()
    # The model group is the LightningModule (network and target); optimiser and scheduler are groups of their own.
    module = hydra.utils.instantiate(
        cfg.model, optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
        scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
        data={**datamodule.describe(), "initial_weights": str(weights.path) if weights else None},
        _recursive_=False, _convert_="all")
    if weights is not None and not resuming:
        load_network_weights(module.model, weights)
        log.info("loaded initial weights from %s (%s layout); retraining all parameters", weights.path,
                 weights.layout)
    trainer, loggers = build_trainer(cfg)
    if cfg.get("compile"):
        compile_network(module.model, bool(cfg.data.get("static_shapes")), trainer.strategy.root_device.type)
    elif hasattr(module.model, "compile_edges"):  # OPTIMATE's GATv2 layers; the other backbones have none
        edges, why = compile_edges_decision(cfg.get("compile_edges", False), trainer, datamodule)
        if edges:
            log.info("compile_edges=%s: torch.compile the GATv2 edge work (%s); the first steps compile",
                     cfg.get("compile_edges"), why)
            module.model.compile_edges()
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    resume_from = resolve_ckpt_path(cfg, module)  # a refused resume leaves the folder as it was
    if trainer.is_global_zero:
        # A run in a folder an earlier run finished in (a quick preset's, then the full study's): until this one
        # ends, the folder must not look finished with the other run's numbers.
        for stale in ("metrics.json", "test_results.csv"):
            (out / stale).unlink(missing_ok=True)
        atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), out / "config.yaml")
        if cfg.data.source == "files" or cfg.data.get("split") == "auto":
            # One's own materials have no published split: keep the one used, for data.split=<run>/split.
            write_split_files(datamodule.split_record, out / "split")
            log.info("wrote the split to %s (reuse it with data.split=%s)", out / "split", out / "split")

    trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from)
    if resume_from and Path(resume_from).name.startswith(ADOPTED_PREFIX) and trainer.is_global_zero:
        Path(resume_from).unlink(missing_ok=True)  # read at the fit's start; its best checkpoint copy stays
    metrics: dict[str, Any] = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    ckpt_cb = trainer.checkpoint_callback
    # Best validation checkpoint; a run too short to validate falls back to its last checkpoint, and one
    # that wrote none (debug=fast disables checkpointing) saves its final weights, so that every
    # finished run has a model to test, load and report on.
    best = (ckpt_cb.best_model_path or ckpt_cb.last_model_path or None) if ckpt_cb is not None else None
    if not best and trainer.state.stage is None and module.global_step > 0:
        best = str(out / "checkpoints" / "final.ckpt")
        trainer.save_checkpoint(best)
    metrics["best_checkpoint"] = best
    metrics["trained_steps"] = int(module.global_step)
    if module.global_step == 0 and weights is not None and not resuming:
        log.warning("nothing was trained (trainer.max_epochs=%s): the test metrics are those of the initial "
                    "weights %s as given", cfg.trainer.get("max_epochs"), weights.path)
    metrics["n_train"] = len(datamodule.train_set)
    # A CPU run's numbers depend on torch's thread count (it splits the reductions), and the count follows the
    # machine's load (utils.parallel.fit_threads_to_free_cores): recorded, so that a run can be repeated exactly.
    metrics["torch_threads"] = torch.get_num_threads()
    metrics["data"] = dict(module.hparams.data)
    if cfg.get("test"):
        trainer.test(module, datamodule=datamodule, ckpt_path=best if best else None, weights_only=False)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("test/")})
        if trainer.is_global_zero:
            if cfg.get("evaluate_train", True):  # the model of the test (best checkpoint) on its own training set
                metrics.update(evaluate_medians(module, datamodule.train_set, prefix="train_eval"))
            write_run_outputs(cfg, module, datamodule, metrics, out, loggers)
    metrics["time_s"] = time.perf_counter() - t_start
    if trainer.is_global_zero:
        atomic_write_text(json.dumps(metrics, indent=2), out / "metrics.json")
        write_cards(ckpt_cb, module, metrics)
        log_best_model(loggers, best, read_card(best) if best else None)
    finish_loggers(loggers)
    objective = cfg.get("optimized_metric")
    metrics["objective"] = metrics.get(objective) if objective else None
    return metrics
