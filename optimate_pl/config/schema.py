"""The types and ranges of every setting a run reads, checked in one place; a mistake is a :class:`ConfigError`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING, DictConfig, OmegaConf, open_dict
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration mistake; the message says what to do."""


# -- the schema: types of every setting a run reads, checked in one place ------------------------------
# (Optional[...] because typing's Optional is what OmegaConf's structured configs understand.)

@dataclass
class DataSchema:
    _target_: str = MISSING
    source: str = "gpaw"
    root: Optional[str] = None
    split: Optional[str] = None
    ipa_root: Optional[str] = None
    extra: list[str] = field(default_factory=list)
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
    static_shapes: bool = False
    synthetic_sizes: dict[str, list[int]] = field(default_factory=dict)


@dataclass
class MultiFidelityDataSchema(DataSchema):
    """``strategy=mf``'s data (:class:`~optimate_pl.data.MultiFidelityDataModule`): one setting more."""

    rpa_repeat: int = 1


@dataclass
class StrategySchema:
    name: str = MISSING
    epochs: dict[str, int] = field(default_factory=dict)
    check_val_every_n_epoch: dict[str, int] = field(default_factory=dict)
    checkpoint: Optional[str] = None
    init: Optional[str] = None
    pretrain_epochs: Optional[int] = None
    pretrain_seed: Optional[int] = None


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
    compile_edges: Any = "auto"  # true, false or auto (training.train.compile_edges_decision)
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
    if str(cfg.get("data", {}).get("_target_", "")).endswith("MultiFidelityDataModule"):
        schema.data = OmegaConf.structured(MultiFidelityDataSchema)
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
    if "rpa_repeat" in d:
        _positive(d.rpa_repeat, "data.rpa_repeat", "how often each RPA training spectrum is in an epoch")
    if "ensemble" in cfg:
        _positive(cfg.ensemble.size, "ensemble.size", "the number of members")
    from ..models.target_names import OUT_DIMS

    if d.target not in OUT_DIMS:
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


def _cuda() -> bool:
    import torch  # here, not at import: the command line's help and error paths stay light

    return torch.cuda.is_available()
