"""One training run: ``train(cfg)`` instantiates data, model and trainer, fits, tests, writes the outputs.

A plain function that tests and users call as a library; the command line (:mod:`optimate_pl.cli`)
adds the process-wide settings and the stages before it (:mod:`optimate_pl.pipeline`).
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from .atomic import atomic_write_text
from .callbacks import AtomicCheckpointIO, EpochLog, SaveOnInterrupt
from .config import ConfigError, check_config, ensure_final_validation, resolve_model, resolve_precision
from .models.card import make_card, write_card
from .models.module import SpectraModule
from .models.weights import CheckpointError, Weights, load_network_weights, read_weights, safe_load
from .outputs import write_run_outputs

log = logging.getLogger("optimate_pl")
ARCHITECTURE_KEYS = ("node_widths", "gat_layers", "out_widths", "out_dim")


# -- the run ----------------------------------------------------------------------------------

def build_callbacks_and_loggers(cfg: DictConfig) -> tuple[list, list]:
    """Instantiate the ``callbacks`` and ``logger`` groups (each a dict of ``_target_`` entries), plus ours.

    Every run gets :class:`SaveOnInterrupt`. Without a terminal (SLURM, nohup) progress bars are
    dropped (they would show only their final state) and :class:`EpochLog` writes a line per validation.
    """
    from lightning.pytorch.callbacks import ProgressBar

    callbacks = [hydra.utils.instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c]
    if not sys.stderr.isatty():
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    if not any(isinstance(c, ProgressBar) for c in callbacks):
        callbacks.append(EpochLog())
    callbacks.append(SaveOnInterrupt(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt", command_line()))
    loggers = [hydra.utils.instantiate(c) for c in (cfg.get("logger") or {}).values() if c]
    return callbacks, loggers


def command_line() -> list[str]:
    """The overrides this run was started with on the command line (empty when called as a library)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def prepare_wandb(cfg: DictConfig) -> None:
    """W&B never blocks on the network: without an API key it runs offline."""
    if "wandb" in (cfg.get("logger") or {}) and not os.environ.get("WANDB_API_KEY") \
            and os.environ.get("WANDB_MODE") not in ("offline", "disabled"):
        log.info("logger=wandb: no WANDB_API_KEY, logging offline (sync later with `wandb sync`)")
        os.environ["WANDB_MODE"] = "offline"


#: What a resumed checkpoint must share with the run resuming it (from the saved hyperparameters).
RESUME_DATA_KEYS = ("kind", "source", "fingerprint", "cutoff", "split", "subset", "max_sites", "seed", "train_on",
                    "train_ids")


def resume_mismatches(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The settings that shape the model or the data and differ between a checkpoint and this run."""
    diffs = []
    net_saved, net_now = saved.get("net") or {}, now.get("net") or {}
    diffs += [f"model.net.{k} (checkpoint {net_saved.get(k)}, now {net_now.get(k)})" for k in ARCHITECTURE_KEYS
              if net_saved.get(k) != net_now.get(k)]
    if saved.get("target", "eps_imag") != now.get("target"):
        diffs.append(f"data.target (checkpoint {saved.get('target')}, now {now.get('target')})")
    data_saved, data_now = saved.get("data") or {}, now.get("data") or {}
    diffs += [f"data.{k} (checkpoint {data_saved.get(k)}, now {data_now.get(k)})" for k in RESUME_DATA_KEYS
              if data_saved.get(k) != data_now.get(k)]
    for key in ("optimizer", "scheduler"):
        if (saved.get(key) or None) != (now.get(key) or None):
            diffs.append(f"{key} (checkpoint {saved.get(key)}, now {now.get(key)})")
    return diffs


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
                                  f"strategy.checkpoint={path}")
        diffs = resume_mismatches(saved["hyper_parameters"], dict(module.hparams))
        if not diffs:
            log.info("resuming from %s (epoch %d, step %d)", path, saved.get("epoch", -1), saved.get("global_step", -1))
            return str(path)
        first_refusal = first_refusal or (path, diffs)
    path, diffs = first_refusal
    raise ConfigError(f"ckpt_path={ckpt}: {path} was written by a run with another configuration: "
                      f"{'; '.join(diffs)}. Resume with that run's settings, or start anew without ckpt_path")


def compile_network(model: torch.nn.Module) -> None:
    """``torch.compile`` the network in place (dynamic shapes: every batch has other node/edge counts).

    ``nn.Module.compile`` keeps the parameter names, so checkpoints stay loadable without it. The
    first steps pay the compilation (tens of seconds on a CPU); it pays off over long runs.
    """
    log.info("compile=true: torch.compile(dynamic=True) the network; the first steps compile")
    model.compile(dynamic=True)


@torch.no_grad()
def evaluate_medians(module: SpectraModule, dataset, prefix: str, batch_size: int = 256) -> dict[str, float]:
    """Medians of the target's scores of ``module`` (eval mode, fp32) on ``dataset``: ``<prefix>/<key>_median``.

    The paper's SI puts the training-set medians next to the test-set ones (does a model underfit?).
    """
    from .metrics import median

    was_training = module.training
    module.eval()
    scores: dict[str, list] = {s.key: [] for s in module.spec.scores}
    for batch in dataset.batches(batch_size):
        batch = batch.to(module.device)
        with torch.autocast(module.device.type, enabled=False):
            pred = module(batch).float()
        for score in module.spec.scores:
            scores[score.key].append(module.test_metrics[score.key].per_sample(pred, batch.y).cpu())
    module.train(was_training)
    return {f"{prefix}/{k}_median": float(median(torch.cat(v))) for k, v in scores.items() if v}


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


def describe_target(name: str, out_dim: int) -> str:
    """What a network predicts, in words: a spectrum model, an SC[RPA;IPA] model, or its output count."""
    if name == "eps_imag" and out_dim == 2001:
        return "a spectrum model (Im ε on 2001 points per material, target eps_imag)"
    if name == "sc_rpa_ipa" and out_dim == 1:
        return "an SC[RPA;IPA] model (one number per material, target sc_rpa_ipa)"
    return f"a model of {out_dim} outputs per material (target {name})"


def check_start_weights(cfg: DictConfig, weights: Weights, key: str = "strategy.checkpoint") -> None:
    """A run starts only from weights that predict its own target (spectrum or SC), else a one-line error.

    Transferring an SC[RPA;IPA] model (one output) into a spectrum run would replace the 2001 outputs
    by one and train on a broadcast, meaningless target; the reverse likewise.
    """
    from .models.targets import target

    wanted = target(cfg.data.target)
    have = weights.hparams.get("target") or ("sc_rpa_ipa" if weights.out_dim == 1 else "eps_imag")
    if have == wanted.name and weights.out_dim == wanted.out_dim:
        return
    fix = ("give IPA or spectrum weights (eps_*.pt, tl*.pt, dl*.pt, or a checkpoint of strategy=ipa/tl/dl) or "
           "strategy.checkpoint=auto" if wanted.name == "eps_imag" else
           "give the weights of an SC model (a strategy=sc checkpoint), or train one with strategy=sc")
    raise ConfigError(f"{key}={weights.path} is {describe_target(have, weights.out_dim)}; this run (strategy="
                      f"{cfg.strategy.name}, data.target={cfg.data.target}) needs "
                      f"{describe_target(wanted.name, wanted.out_dim)}: {fix}")


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
    resuming = bool(cfg.get("ckpt_path"))
    if cfg.strategy.name == "tl" and init_weights is None and not resuming:
        raise ConfigError("strategy=tl starts from IPA weights: pass train(cfg, init_weights=...), or call "
                          "optimate_pl.pipeline.run(cfg), which loads or pretrains strategy.checkpoint first")
    if init_weights is not None:
        # The initial weights set the architecture; a resumed run then restores its own weights.
        weights = init_weights if isinstance(init_weights, Weights) else read_weights(init_weights)
        check_start_weights(cfg, weights)
        use_checkpoint_architecture(cfg, weights)
    changed = ensure_final_validation(cfg)
    if changed:
        log.info("%s, so that it ends with a validation", changed)
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
    if weights is not None and not resuming:
        load_network_weights(module.model, weights)
        log.info("loaded initial weights from %s (%s layout); retraining all parameters", weights.path,
                 weights.layout)
    if cfg.get("compile"):
        compile_network(module.model)
    elif cfg.get("compile_edges"):
        log.info("compile_edges=true: torch.compile the GATv2 edge work; the first steps compile")
        module.model.compile_edges()

    callbacks, loggers = build_callbacks_and_loggers(cfg)
    # Without a progress-bar callback Lightning would add its own: EpochLog writes the lines instead.
    bar = any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks)
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False,
                                                  enable_progress_bar=bar, plugins=[AtomicCheckpointIO()])
    for lg in loggers:
        lg.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    if trainer.is_global_zero:
        atomic_write_text(OmegaConf.to_yaml(cfg, resolve=True), out / "config.yaml")

    trainer.fit(module, datamodule=datamodule, ckpt_path=resolve_ckpt_path(cfg, module))
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
    finish_loggers(loggers)
    objective = cfg.get("optimized_metric")
    metrics["objective"] = metrics.get(objective) if objective else None
    return metrics
