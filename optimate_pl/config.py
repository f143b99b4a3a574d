"""Configuration helpers: the packaged configs, checks that fail early, and values resolved at run time."""
from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException

from .data.cache import SOURCES

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


# -- the schema: types of every setting a run reads, checked in one place ------------------------------
# (Optional[...] because typing's Optional is what OmegaConf's structured configs understand.)

@dataclass
class DataSchema:
    _target_: str = MISSING
    source: str = "synthetic"
    root: Optional[str] = None
    split: Optional[str] = None
    ipa_root: Optional[str] = None
    subset: Optional[int] = None
    max_sites: Optional[int] = None
    train_on: str = "train"
    train_ids: Optional[str] = None
    seed: int = 0
    batch_size: int = 128
    eval_batch_size: int = 256
    num_workers: int = 0
    drop_last: bool = False
    target: str = "eps_imag"
    cache_dir: Optional[str] = None
    strict: bool = False
    cutoff: float = 5.0
    synthetic_seed: int = 0
    device_resident: Any = "auto"
    synthetic_sizes: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class StrategySchema:
    name: str = MISSING
    epochs: dict[str, int] = field(default_factory=dict)
    check_val_every_n_epoch: dict[str, int] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    pretrain_epochs: Optional[int] = None


@dataclass
class EnsembleSchema:
    size: int = 1
    member: Optional[int] = None


@dataclass
class RunSchema:
    """Top-level settings (groups without a schema of their own are left as they are)."""

    data: DataSchema = field(default_factory=DataSchema)
    strategy: StrategySchema = field(default_factory=StrategySchema)
    ensemble: EnsembleSchema = field(default_factory=EnsembleSchema)
    task_name: str = MISSING
    seed: int = 0
    ckpt_path: Optional[str] = None
    test: bool = True
    evaluate_train: bool = True
    optimized_metric: Optional[str] = None
    keep_freed_memory_mb: int = 0
    compile: bool = False
    compile_edges: bool = False
    verbose_errors: bool = False


#: Integer trainer settings and their lower bounds.
TRAINER_NUMBERS = {"max_epochs": -1, "max_steps": -1, "check_val_every_n_epoch": 1, "devices": 1,
                   "num_sanity_val_steps": -1, "log_every_n_steps": 1}


def _key_and_reason(err: OmegaConfBaseException) -> str:
    key = getattr(err, "full_key", None) or ""
    reason = str(err).splitlines()[0]
    return f"{key}: {reason}" if key else reason


def validate_config(cfg: DictConfig) -> None:
    """Check types and ranges of a composed config; a mistake is a :class:`ConfigError` naming the key.

    Types come from the schema above (``data.subset=2.5`` -> "data.subset: Value '2.5' ... Integer");
    ranges and choices from :func:`check_values`.
    """
    schema = OmegaConf.structured(RunSchema)
    try:
        nodes = ("data", "strategy", "ensemble")
        merged = OmegaConf.merge(schema, {k: cfg[k] for k in nodes if k in cfg},
                                 {k: cfg[k] for k in RunSchema.__dataclass_fields__ if k not in nodes and k in cfg})
        OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{_key_and_reason(err)}; see `python -m optimate_pl --cfg job` for the types") from None
    with open_dict(cfg):  # the typed values (e.g. "300" -> 300) go back into the run's config
        cfg.data = merged.data
    check_values(cfg)


def _positive(value: Any, key: str, what: str, minimum: float = 1, integer: bool = True,
              exclusive: bool = False) -> None:
    """``value`` is a number (an integer when ``integer``) of at least ``minimum`` (above it when ``exclusive``)."""
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and int(value) != value):
        raise ConfigError(f"{key}={value!r}: must be {'an integer' if integer else 'a number'} ({what})")
    if value < minimum or (exclusive and value == minimum):
        bound = "positive" if exclusive and minimum == 0 else f"at least {minimum}"
        raise ConfigError(f"{key}={value}: must be {bound} ({what})")


def check_values(cfg: DictConfig) -> None:
    """Ranges and choices that types alone do not catch."""
    d = cfg.data
    _positive(d.subset, "data.subset", "a number of training materials")
    _positive(d.max_sites, "data.max_sites", "a number of sites")
    _positive(d.batch_size, "data.batch_size", "materials per training batch")
    _positive(d.eval_batch_size, "data.eval_batch_size", "materials per evaluation batch")
    _positive(d.num_workers, "data.num_workers", "DataLoader worker processes", minimum=0)
    _positive(d.cutoff, "data.cutoff", "the neighbour cutoff in Å", minimum=0, integer=False, exclusive=True)
    if "ensemble" in cfg:
        _positive(cfg.ensemble.size, "ensemble.size", "the number of members")
    if d.target not in ("eps_imag", "sc_rpa_ipa"):
        raise ConfigError(f"data.target={d.target}: use eps_imag (spectra) or sc_rpa_ipa (the SC predictor)")
    optimizer = cfg.get("optimizer") or {}
    if "lr" in optimizer:
        _positive(optimizer.lr, "optimizer.lr", "the learning rate", minimum=0, integer=False, exclusive=True)
    if "weight_decay" in optimizer:
        _positive(optimizer.weight_decay, "optimizer.weight_decay", "the weight decay", minimum=0, integer=False)
    for key, low in TRAINER_NUMBERS.items():
        value = cfg.trainer.get(key)
        if value is not None and not (key == "devices" and isinstance(value, (str, list))):
            _positive(value, f"trainer.{key}", "a count", minimum=low)
    if cfg.trainer.get("accelerator") in ("gpu", "cuda") and not _cuda():
        raise ConfigError("trainer.accelerator=gpu, but no CUDA GPU is visible on this machine: use trainer=cpu "
                          "(or the default trainer, which picks what is there)")


def check_config(cfg: DictConfig) -> None:
    """Fail early, in one line each, on configurations that cannot work."""
    validate_config(cfg)
    name = cfg.strategy.get("name")
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; use strategy=ipa, dl, tl or sc")
    if cfg.data.source not in SOURCES:
        raise ConfigError(f"unknown data.source {cfg.data.source!r}; use data.source=gpaw, synthetic or figshare")
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
    check_trains_something(cfg)
    check_ddp_multirun(cfg)


def check_trains_something(cfg: DictConfig) -> None:
    """``trainer.max_epochs=0`` (or ``max_steps=0``) trains nothing: from random weights that is refused (its
    test metrics would be noise); from given weights (TL) it evaluates them, and the run says so."""
    if cfg.strategy.get("name") == "tl" or cfg.get("ckpt_path"):
        return
    for key in ("max_epochs", "max_steps"):
        if cfg.trainer.get(key) == 0:
            raise ConfigError(f"trainer.{key}=0 trains nothing: the test metrics would be those of random weights. "
                              f"Give trainer.{key} of at least 1, or evaluate given weights with strategy=tl "
                              f"strategy.checkpoint=PATH trainer.{key}=0")


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


def _cuda() -> bool:
    import torch  # here, not at import: the command line's help and error paths stay light

    return torch.cuda.is_available()


def gpu_training(cfg: DictConfig) -> bool:
    """Whether the trainer will run on a CUDA GPU (``accelerator`` gpu/cuda, or auto with one present)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and _cuda())


def resolve_precision(cfg: DictConfig) -> str:
    """``trainer.precision=auto``: ``bf16-mixed`` on a GPU, as the authors trained, else ``32-true``.

    So a GPU run trains in bf16 whichever trainer preset was chosen; an explicit precision is kept.
    """
    precision = str(cfg.trainer.get("precision", "auto"))
    if precision == "auto":
        precision = "32-true"
        if gpu_training(cfg):
            import torch

            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        with open_dict(cfg):
            cfg.trainer.precision = precision
    return precision


def ensure_final_validation(cfg: DictConfig) -> str | None:
    """A run shorter than its validation interval still ends with a validation (so it has an objective,
    a best checkpoint and validation metrics): the interval is cut to the run's length. Returns what changed."""
    t = cfg.trainer
    every, epochs = t.get("check_val_every_n_epoch"), t.get("max_epochs")
    if every and epochs and 0 < epochs < every:
        t.check_val_every_n_epoch = epochs
        return f"trainer.check_val_every_n_epoch {every} -> {epochs}: the run has only {epochs} epochs"
    interval, steps = t.get("val_check_interval"), t.get("max_steps")
    if every is None and isinstance(interval, int) and steps and 0 < steps < interval:
        t.val_check_interval = steps
        return f"trainer.val_check_interval {interval} -> {steps}: the run has only {steps} steps"
    return None


def writable_problem(path: str | Path) -> str | None:
    """Why the folder ``path`` cannot be created or written, or ``None`` when it can.

    It is tried for real (the folder created, a temporary file written and removed): permission
    bits alone mislead (root, network file systems, read-only mounts).
    """
    import tempfile

    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None
