"""The main command: ``python -m optimate_pl strategy=tl data.subset=300``.

``train(cfg)`` is a plain function (tests call it directly); ``main`` wraps it with Hydra and turns
configuration mistakes into one-line errors.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

import hydra
import lightning.pytorch as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from . import resolvers  # noqa: F401  (config resolvers)
from .allocator import keep_freed_memory
from .data.cache import atomic_open, atomic_write_text, fingerprint
from .models.module import SpectraModule, summarise_rows, write_results_csv
from .models.weights import CheckpointError, load_network_weights

log = logging.getLogger("optimate_pl")
STRATEGIES = ("ipa", "dl", "tl", "sc")
DL_SIZES = (100, 300, 1000, 3000, 4610)


class ConfigError(ValueError):
    """A configuration mistake; the message says what to do."""


# -- configuration helpers --------------------------------------------------------------------

def load_group_config(group: str, name: str) -> DictConfig:
    """A YAML of the packaged config folder, e.g. ``("model", "dl_300")``."""
    path = resources.files("optimate_pl.conf").joinpath(group, f"{name}.yaml")
    if not path.is_file():
        raise ConfigError(f"no config {group}/{name}.yaml")
    return OmegaConf.create(path.read_text())


def load_train_config() -> DictConfig:
    """The packaged ``train.yaml`` as written (defaults list unresolved), for its plain settings."""
    return OmegaConf.create(resources.files("optimate_pl.conf").joinpath("train.yaml").read_text())


def dl_architecture_for(subset: int | None) -> str:
    """The DL model config tuned for the published training-set size nearest to ``subset``."""
    n = DL_SIZES[-1] if subset is None else int(subset)
    return f"dl_{min(DL_SIZES, key=lambda s: abs(s - n))}"


def check_config(cfg: DictConfig) -> None:
    """Fail early, in one line each, on configurations that cannot work."""
    name = cfg.strategy.get("name")
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; use strategy=ipa, dl, tl or sc")
    if cfg.data.source not in ("synthetic", "figshare"):
        raise ConfigError(f"unknown data.source {cfg.data.source!r}; use data.source=synthetic or data.source=figshare")
    if cfg.data.source == "figshare" and not cfg.data.root:
        raise ConfigError("data.source=figshare needs data.root=/path/to/database (folder of JSON files or .zip)")
    if name == "tl":
        ckpt = cfg.strategy.get("checkpoint")
        if not ckpt:
            raise ConfigError("strategy=tl needs strategy.checkpoint: an IPA checkpoint path, or `auto`")
        if ckpt != "auto" and not Path(str(ckpt)).expanduser().is_file():
            raise ConfigError(f"strategy.checkpoint={ckpt} does not exist; give an IPA checkpoint "
                              f"(Lightning .ckpt or published state_dict) or strategy.checkpoint=auto")
        if ckpt == "auto" and cfg.data.source == "figshare" and not cfg.data.get("ipa_root"):
            raise ConfigError("strategy.checkpoint=auto on figshare data needs data.ipa_root (the IPA database) "
                              "to pretrain on, or give strategy.checkpoint=/path/to/ipa.ckpt")
    check_ddp_multirun(cfg)


def check_ddp_multirun(cfg: DictConfig) -> None:
    """Plain DDP relaunches the whole script per rank; inside a Hydra multirun that reruns the sweep."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    devices = cfg.trainer.get("devices", 1)
    many = (isinstance(devices, int) and devices > 1) or (isinstance(devices, str) and devices not in ("1", "auto")) \
        or (not isinstance(devices, (int, str)) and len(devices) > 1)
    if strategy.startswith("ddp") and "spawn" not in strategy and many and is_multirun():
        raise ConfigError("trainer.strategy=ddp cannot run inside a Hydra multirun (-m): each rank would relaunch "
                          "the sweep. Use one device per trial (trainer.devices=1) or trainer.strategy=ddp_spawn")


def is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def resolve_model(cfg: DictConfig) -> None:
    """Replace ``model=dl_auto`` with the architecture tuned for the training-set size."""
    if cfg.model.get("name") == "dl_auto":
        choice = dl_architecture_for(cfg.data.get("subset"))
        log.info("strategy=dl: using architecture %s for data.subset=%s", choice, cfg.data.get("subset"))
        with open_dict(cfg):
            cfg.model = load_group_config("model", choice)


# -- transfer learning: where the IPA weights come from ------------------------------------------

def auto_checkpoint_path(cfg: DictConfig) -> Path:
    """Where ``strategy=tl checkpoint=auto`` keeps the IPA checkpoint for this data source."""
    d = cfg.data
    key = fingerprint({"source": d.source, "root": d.get("ipa_root"), "synthetic_seed": d.synthetic_seed,
                       "sizes": OmegaConf.to_container(d.synthetic_sizes), "seed": cfg.seed,
                       "split_dir": d.get("split_dir"), "net": OmegaConf.to_container(cfg.model.net),
                       "overrides": list(cfg.strategy.get("pretrain_overrides") or [])})
    return Path(cfg.paths.checkpoint_dir) / f"ipa-{d.source}-{key[:12]}.ckpt"


def pretrain_ipa(cfg: DictConfig, target: Path) -> Path:
    """Train ``strategy=ipa`` on the same data source and keep its best checkpoint at ``target``."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    d = cfg.data
    out_dir = target.parent / f"{target.stem}-run"
    overrides = [
        "strategy=ipa", f"data.source={d.source}", f"seed={cfg.seed}", f"data.synthetic_seed={d.synthetic_seed}",
        f"data.synthetic_sizes.ipa={list(d.synthetic_sizes.ipa)}", f"data.synthetic_sizes.rpa={list(d.synthetic_sizes.rpa)}",
        f"data.num_workers={d.num_workers}", f"paths.output_dir={out_dir}", f"paths.checkpoint_dir={cfg.paths.checkpoint_dir}",
        f"trainer.accelerator={cfg.trainer.accelerator}", f"trainer.precision={cfg.trainer.precision}", "logger=csv",
        "test=false",
    ]
    for key in ("root", "split_dir", "cache_dir"):
        value = d.get("ipa_root") if key == "root" else d.get(key)
        if value:
            overrides.append(f"data.{key}={value}")
    overrides += list(cfg.strategy.get("pretrain_overrides") or [])
    log.info("strategy=tl checkpoint=auto: no IPA checkpoint at %s yet -> pretraining on IPA first (%s)",
             target, " ".join(overrides))
    if GlobalHydra.instance().is_initialized():
        ipa_cfg = compose(config_name="train", overrides=overrides)
    else:
        with initialize_config_module("optimate_pl.conf", version_base="1.3"):
            ipa_cfg = compose(config_name="train", overrides=overrides)
    result = train(ipa_cfg)
    best = result.get("best_checkpoint")
    if not best:
        raise RuntimeError("IPA pretraining produced no checkpoint")
    with open(best, "rb") as src, atomic_open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)  # a crash never leaves a half-copied checkpoint at target
    log.info("IPA checkpoint ready: %s", target)
    return target


def tl_checkpoint(cfg: DictConfig) -> Path:
    """The IPA checkpoint that ``strategy=tl`` starts from (training it first for ``auto``)."""
    ckpt = str(cfg.strategy.checkpoint)
    if ckpt != "auto":
        return Path(ckpt).expanduser()
    target = auto_checkpoint_path(cfg)
    if target.is_file():
        log.info("strategy=tl: starting from the IPA checkpoint %s", target)
        return target
    return pretrain_ipa(cfg, target)


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


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, validate and test one configuration; returns the metrics (and the sweep objective).

    Writes into ``paths.output_dir``: ``config.yaml``, ``metrics.json``, ``test_results.csv`` and
    ``test_spectra.png`` (predicted vs DFT spectra at SC quantiles).
    """
    check_config(cfg)
    resolve_model(cfg)
    prepare_wandb(cfg)
    if cfg.get("keep_freed_memory_mb"):
        keep_freed_memory(int(cfg.keep_freed_memory_mb) * 2**20)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()

    datamodule = hydra.utils.instantiate(cfg.data, _convert_="all")
    module = SpectraModule(net=OmegaConf.to_container(cfg.model.net, resolve=True),
                           optimizer=OmegaConf.to_container(cfg.optimizer, resolve=True),
                           scheduler=OmegaConf.to_container(cfg.scheduler, resolve=True) if cfg.get("scheduler") else None,
                           target=cfg.data.target)
    if cfg.strategy.name == "tl" and not cfg.get("ckpt_path"):
        ckpt = tl_checkpoint(cfg)
        load_network_weights(module.model, ckpt)
        log.info("strategy=tl: loaded IPA weights from %s; retraining all parameters", ckpt)
        # Pretraining (when the checkpoint did not exist yet) drew from the RNG: reseed, so that
        # the TL run is the same whether or not it had to pretrain first.
        pl.seed_everything(cfg.seed, workers=True, verbose=False)
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
            write_outputs(cfg, module, datamodule, metrics, out, loggers)
    metrics["time_s"] = time.perf_counter() - t_start
    if trainer.is_global_zero:
        atomic_write_text(json.dumps(metrics, indent=2), out / "metrics.json")
    for lg in loggers:
        if lg.__class__.__name__ == "WandbLogger":
            import wandb

            wandb.finish()  # one W&B run per Hydra job, also in multirun
    objective = cfg.get("optimized_metric")
    metrics["objective"] = metrics.get(objective) if objective else None
    return metrics


def write_outputs(cfg: DictConfig, module: SpectraModule, datamodule, metrics: dict, out: Path, loggers: list) -> None:
    """Per-material CSV, summary table, spectra figure; also to W&B when it is a logger."""
    from .plots import plot_quantile_spectra
    from .summary import print_summary

    rows = module.test_rows
    csv_path = write_results_csv(rows, out / "test_results.csv")
    metrics.update({f"test_rows/{k}": v for k, v in summarise_rows(rows).items()})
    figure = None
    if module.spectral and rows:
        figure = plot_quantile_spectra(module, datamodule.test_set, rows, out / "test_spectra.png",
                                       synthetic=cfg.data.source == "synthetic")
    print_summary(cfg, metrics, len(rows))
    for lg in loggers:
        if lg.__class__.__name__ == "WandbLogger":
            import pandas as pd
            import wandb

            lg.experiment.summary.update({k: v for k, v in metrics.items() if isinstance(v, float)})
            lg.log_table(key="test/per_material", dataframe=pd.DataFrame(rows))
            if figure:
                lg.experiment.log({"test/spectra": wandb.Image(str(figure))})
    log.info("wrote %s", csv_path)


def _configure_logging(verbose: bool) -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning and our logger each attach handlers under Hydra; keep one line per message.
    for name in ("optimate_pl", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.propagate = True
        lg.handlers.clear()
    if not verbose:
        logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="train")
def _hydra_main(cfg: DictConfig) -> float | None:
    _configure_logging(cfg.get("verbose_errors", False))
    try:
        return train(cfg)["objective"]
    except (ConfigError, CheckpointError, FloatingPointError, FileNotFoundError, ValueError) as err:
        if cfg.get("verbose_errors"):
            raise
        print(f"error: {err}\n(run with verbose_errors=true for the full traceback)", file=sys.stderr)
        sys.exit(2)


def main() -> None:
    """Console entry point (``optimate-pl`` and ``python -m optimate_pl``)."""
    torch.set_float32_matmul_precision("high")
    _hydra_main()
