"""Configuration helpers: the packaged configs, checks that fail early, and values resolved at run time."""
from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from .data.build import SOURCES

STRATEGIES = ("ipa", "dl", "tl", "sc")
#: The training-set sizes the paper tuned a DL architecture for.
DL_SIZES = (100, 300, 1000, 3000, 4610)


class ConfigError(ValueError):
    """A configuration mistake; the message says what to do."""


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


def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_config(cfg: DictConfig) -> None:
    """Fail early, in one line each, on configurations that cannot work."""
    name = cfg.strategy.get("name")
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; use strategy=ipa, dl, tl or sc")
    if cfg.data.source not in SOURCES:
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


def resolve_model(cfg: DictConfig) -> str | None:
    """Replace ``model=dl_auto`` with the architecture tuned for the training-set size; returns its name."""
    if cfg.model.get("name") != "dl_auto":
        return None
    choice = dl_architecture_for(cfg.data.get("subset"))
    with open_dict(cfg):
        cfg.model = load_group_config("model", choice)
    return choice


def gpu_training(cfg: DictConfig) -> bool:
    """Whether the trainer will run on a CUDA GPU (``accelerator`` gpu/cuda, or auto with one present)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(cfg: DictConfig) -> str:
    """``trainer.precision=auto``: ``bf16-mixed`` on a GPU, as the authors trained, else ``32-true``.

    So a GPU run trains in bf16 whichever trainer preset was chosen; an explicit precision is kept.
    """
    precision = str(cfg.trainer.get("precision", "auto"))
    if precision == "auto":
        precision = "32-true"
        if gpu_training(cfg):
            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        with open_dict(cfg):
            cfg.trainer.precision = precision
    return precision
