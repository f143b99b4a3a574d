"""One function checks a composed config and resolves it: :func:`resolve_config`.

Resolution fills in what a run's config leaves to be decided from the run itself: the DL architecture
for the training-set size (``model=dl_auto``), the architecture of the initial weights (TL from a
file), the precision (``trainer.precision=auto``) and a validation interval the run can reach. The
command calls it once; :func:`~optimate_pl.training.train.train` takes the resolved config as it is
(and resolves a config it is given unresolved, for library callers). The input is never changed.
"""
from __future__ import annotations

import copy
import functools
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf, open_dict

from ..data.cache import SOURCES
from ..models.backbones import OPTIMATE_ARCHITECTURE_KEYS, architecture, is_optimate
from .groups import STRATEGIES, dl_architecture_for, load_group_config
from .schema import ConfigError, _cuda, validate_config

if TYPE_CHECKING:
    from ..models.weights import Weights

log = logging.getLogger("optimate_pl")

#: The keys of an OPTIMATE ``model.net`` that make an architecture (a checkpoint's must match the run's; another
#: backbone's whole ``net`` does: :func:`optimate_pl.models.backbones.architecture`).
ARCHITECTURE_KEYS = OPTIMATE_ARCHITECTURE_KEYS
#: The OmegaConf flag a resolved config carries (it survives copies and is seen by every child node).
RESOLVED = "optimate_pl_resolved"


def resolve_config(cfg: DictConfig, weights: "Weights | None" = None) -> DictConfig:
    """Check ``cfg`` (one-line :class:`ConfigError` on a mistake) and return a resolved copy of it.

    ``weights``: the initial weights of the run, when the caller has them; otherwise a run that starts from a
    file (TL's ``strategy.checkpoint=PATH``, MF's ``strategy.init=PATH``) reads it here. The run's network is the
    initial weights' own.
    """
    out = copy.deepcopy(cfg)
    check_config(out)  # also writes the typed data values (data.subset "300" -> 300) into the copy
    with open_dict(out):
        if out.model.get("name") in ("dl_auto", "optimate"):
            choice = optimate_architecture(out.model.name, out.strategy.name, out.data.get("subset"))
            mf = out.model.get("multi_fidelity")
            out.model = load_group_config("model", choice)
            if mf is not None:  # strategy=mf's setting, not the architecture's
                out.model.multi_fidelity = mf
            log.info("strategy=%s: using architecture %s for data.subset=%s", out.strategy.name, choice,
                     out.data.get("subset"))
        start = start_checkpoint(out)
        if weights is None and start is not None and start != "auto":
            from ..models.weights import read_weights

            weights = read_weights(Path(start).expanduser())
        if weights is not None:
            check_start_weights(out, weights, start_key(out))
            _use_architecture(out, weights)
            if out.model.get("multi_fidelity"):
                check_multi_fidelity_backbone(out, weights)
        chosen = str(out.trainer.get("precision", "auto")) == "auto"
        precision = _resolve_precision(out)
        if chosen and precision != "32-true":  # said once, where auto is decided (derived configs inherit it)
            log.info("training in %s precision; the final test runs in fp32 from the best checkpoint", precision)
        changed = _ensure_final_validation(out.trainer)
        if changed:
            log.info("%s, so that it ends with a validation", changed)
    out._set_flag(RESOLVED, True)
    return out


def optimate_architecture(model: str, strategy: str, subset: int | None) -> str:
    """The OPTIMATE model config a ``model=dl_auto`` or ``model=optimate`` run uses: the DL architecture tuned for
    the nearest published size (dl_auto, or optimate under strategy=dl), else the IPA (ipa, tl) or SC model."""
    if model == "dl_auto" or strategy == "dl":
        return dl_architecture_for(subset)
    return "sc" if strategy == "sc" else "ipa"


def is_resolved(cfg: DictConfig, weights: "Weights | None" = None) -> bool:
    """Whether ``cfg`` came from :func:`resolve_config` (and has the architecture of ``weights``, if given)."""
    if not cfg._get_flag(RESOLVED):
        return False
    return weights is None or not _architecture_differs(cfg, weights)


def _architecture_differs(cfg: DictConfig, weights: "Weights") -> bool:
    configured = OmegaConf.to_container(cfg.model.net, resolve=True) if cfg.model.get("net") else {}
    return architecture(configured) != architecture(weights.net)


def _use_architecture(cfg: DictConfig, weights: "Weights") -> None:
    """The network a run starts from is the initial weights' own: ``model.net`` becomes it (logged when it differs)."""
    configured = OmegaConf.to_container(cfg.model.net, resolve=True) if cfg.model.get("net") else {}
    if _architecture_differs(cfg, weights):
        log.warning("the initial weights %s hold the architecture %s; using it instead of the configured %s",
                    weights.path, architecture(weights.net), architecture(configured))
    same_backbone = is_optimate(configured) == is_optimate(weights.net) and \
        configured.get("_target_") == weights.net.get("_target_")
    # The configured extras (dropout, norm) stay for the same backbone; another backbone takes the file's net whole.
    cfg.model.net = {**configured, **weights.net} if same_backbone else dict(weights.net)


def check_start_weights(cfg: DictConfig, weights: "Weights", key: str = "strategy.checkpoint") -> None:
    """A run starts only from weights that predict its own target (spectrum or SC), else a one-line error.

    Transferring an SC[RPA;IPA] model (one output) into a spectrum run would replace the 2001 outputs
    by one and train on a broadcast, meaningless target; the reverse likewise.
    """
    from ..models.targets import describe, target, target_of_weights

    wanted = target(cfg.data.target)
    have = target_of_weights(weights)
    if have == wanted.name and weights.out_dim == wanted.out_dim:
        return
    fix = ("give IPA or spectrum weights (eps_*.pt, tl*.pt, dl*.pt, or a checkpoint of strategy=ipa/tl/dl) or "
           "strategy.checkpoint=auto" if wanted.name == "eps_imag" else
           "give the weights of an SC model (a strategy=sc checkpoint), or train one with strategy=sc")
    raise ConfigError(f"{key}={weights.path} is {describe(have, weights.out_dim)}; this run (strategy="
                      f"{cfg.strategy.name}, data.target={cfg.data.target}) needs "
                      f"{describe(wanted.name, wanted.out_dim)}: {fix}")


#: Lightning's short precision names and the full ones its trainer reports (``trainer.precision``)
PRECISION_ALIASES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true"}


def _resolve_precision(cfg: DictConfig) -> str:
    """``trainer.precision=auto``: ``bf16-mixed`` as the authors trained, on a GPU and on a CPU with bf16
    units (:func:`cpu_has_bf16`), else ``32-true``.

    So a GPU run trains in bf16 whichever trainer preset was chosen; an explicit precision is kept (the
    ``trainer=cpu`` preset says ``32-true``), under the full name Lightning's trainer reports (``32`` is
    ``32-true``), so a checkpoint's recorded precision compares as it is. On this project's 2-core
    AVX512-BF16 CPU bf16-mixed trained 1.63x (b128) and 2.11x (b20) the fp32 reference loop in one `make
    bench`, against 1.43x / 1.65x for fp32, and the main command's test median SC (synthetic data) was 0.9332
    against 0.9329 (benchmarks/cpu_2core.md); the test step runs in fp32 either way.
    """
    precision = str(cfg.trainer.get("precision", "auto"))
    if precision == "auto":
        precision = "32-true"
        if gpu_training(cfg):
            import torch

            precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
        elif str(cfg.trainer.get("accelerator", "auto")) in ("auto", "cpu") and cpu_has_bf16():
            precision = "bf16-mixed"
    elif precision in PRECISION_ALIASES:
        precision = PRECISION_ALIASES[precision]
    else:
        return precision
    cfg.trainer.precision = precision
    return precision


#: CPU flags of native bf16 arithmetic (x86: AVX512-BF16, AMX; Arm: the BF16 extension). Without them torch
#: emulates bf16 and a bf16-mixed run is slower than fp32.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> str:
    """``/proc/cpuinfo`` once per process (a run resolves its config, its pretraining's and its stages'), or ``""``."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU computes bf16 natively (``/proc/cpuinfo`` flags; ``False`` where it cannot be read)."""
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features") and BF16_CPU_FLAGS & set(value.split()):
            return True
    return False


def _ensure_final_validation(t: DictConfig) -> str | None:
    """A run shorter than its validation interval still ends with a validation (so it has an objective,
    a best checkpoint and validation metrics): the interval is cut to the run's length. Returns what changed."""
    every, epochs = t.get("check_val_every_n_epoch"), t.get("max_epochs")
    if every and epochs and 0 < epochs < every:
        t.check_val_every_n_epoch = epochs
        return f"trainer.check_val_every_n_epoch {every} -> {epochs}: the run has only {epochs} epochs"
    interval, steps = t.get("val_check_interval"), t.get("max_steps")
    if every is None and isinstance(interval, int) and steps and 0 < steps < interval:
        t.val_check_interval = steps
        return f"trainer.val_check_interval {interval} -> {steps}: the run has only {steps} steps"
    return None


# -- the checks -------------------------------------------------------------------------------------------

def is_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def check_config(cfg: DictConfig) -> None:
    """Fail early, in one line each, on configurations that cannot work."""
    validate_config(cfg)
    name = cfg.strategy.get("name")
    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; use strategy=ipa, dl, tl, sc or mf")
    if cfg.data.source not in SOURCES:
        raise ConfigError(f"unknown data.source {cfg.data.source!r}; use data.source=gpaw, synthetic, figshare or files")
    if cfg.data.source == "figshare" and not cfg.data.root:
        raise ConfigError("data.source=figshare needs data.root=/path/to/database (folder of JSON files or .zip)")
    if cfg.data.source == "gpaw" and cfg.data.get("root"):
        # Imported here: the data package imports this module, and `python -m optimate_pl.data.ladder` would then
        # find the ladder module imported before it runs (runpy's RuntimeWarning).
        from ..data.ladder import packed_dir

        try:
            packed_dir(cfg.data.root)
        except FileNotFoundError as e:
            raise ConfigError(str(e)) from None
    if cfg.data.source == "files":
        check_files_source(cfg.data, needs_ipa=name == "mf" or name == "tl" and cfg.strategy.get("checkpoint") == "auto",
                           needs_rpa=name != "ipa")
    if name == "tl" and not cfg.strategy.get("checkpoint"):
        raise ConfigError("strategy=tl needs strategy.checkpoint: an IPA checkpoint path, or `auto`")
    ckpt, key = start_checkpoint(cfg), start_key(cfg)
    if ckpt is not None:
        scratch = f", or {key}=null to train from scratch" if name == "mf" else ""
        if ckpt != "auto" and not Path(ckpt).expanduser().is_file():
            raise ConfigError(f"{key}={ckpt} does not exist; give an IPA checkpoint "
                              f"(Lightning .ckpt or published state_dict) or {key}=auto{scratch}")
        if ckpt == "auto" and cfg.data.source == "figshare" and not cfg.data.get("ipa_root"):
            raise ConfigError(f"{key}=auto on figshare data needs data.ipa_root (the IPA database) "
                              f"to pretrain on, or give {key}=/path/to/ipa.ckpt")
    check_compile_edges(cfg.get("compile_edges", False))
    check_trains_something(cfg)
    check_ddp_multirun(cfg)


def check_files_source(data: DictConfig, needs_ipa: bool, needs_rpa: bool = True) -> None:
    """``data.source=files``: the root exists, and each rung the strategy learns from is there: in the root, in
    ``data.ipa_root`` (IPA), or in ``data.extra`` (which supplies a rung the root lacks)."""
    if not data.root:
        raise ConfigError("data.source=files needs data.root: the folder optimate-pl-import or optimate-pl-compute "
                          "wrote (with ipa/ and rpa/), or one rung's database folder")
    root = Path(str(data.root)).expanduser()
    if not root.is_dir():
        raise ConfigError(f"data.root={root} is not a folder (data.source=files)")
    if data.get("extra"):
        return
    if needs_ipa and not data.get("ipa_root") and not (root / "ipa").is_dir():
        raise ConfigError(f"this strategy learns from the IPA rung too: {root} has no ipa/ folder; set data.ipa_root "
                          f"(your IPA database), import IPA spectra into {root / 'ipa'}, or add 'data.extra=[gpaw]' "
                          f"to learn it from the built-in ladder's")
    if needs_rpa and (root / "ipa").is_dir() and not (root / "rpa").is_dir():
        raise ConfigError(f"this strategy learns the RPA rung: {root} has IPA spectra only (no rpa/ folder, e.g. VASP "
                          f"LOPTICS); add 'data.extra=[gpaw]' to learn the RPA rung from the built-in ladder's, or "
                          f"import RPA spectra into {root / 'rpa'}")


#: The key that names a strategy's start weights: TL's ``strategy.checkpoint`` (always set), MF's ``strategy.init``
#: (null: from scratch; ``strategy=mf_ipa`` sets it). The other strategies start at random.
START_KEYS = {"tl": "checkpoint", "mf": "init"}


def start_checkpoint(cfg: DictConfig) -> str | None:
    """The weights a run starts from (:data:`START_KEYS`): a file, ``auto`` (the automatic IPA pretraining,
    :mod:`optimate_pl.training.pretrain`) or ``None`` (random)."""
    key = START_KEYS.get(cfg.strategy.get("name"))
    value = cfg.strategy.get(key) if key else None
    return str(value) if value else None


def start_key(cfg: DictConfig) -> str:
    """The config key of the run's start weights, for messages: ``strategy.checkpoint`` or ``strategy.init``."""
    return f"strategy.{START_KEYS.get(cfg.strategy.get('name'), 'checkpoint')}"


def check_compile_edges(setting: Any) -> None:
    """``compile_edges`` is true, false (or null) or ``auto`` (training.train.compile_edges_decision)."""
    if setting not in (True, False, None, "auto"):
        raise ConfigError(f"compile_edges must be true, false or auto, got {setting!r}")


def check_trains_something(cfg: DictConfig) -> None:
    """``trainer.max_epochs=0`` (or ``max_steps=0``) trains nothing: from random weights that is refused (its
    test metrics would be noise); from given weights (TL) it evaluates them, and the run says so."""
    if start_checkpoint(cfg) is not None or cfg.get("ckpt_path"):
        return
    for key in ("max_epochs", "max_steps"):
        if cfg.trainer.get(key) == 0:
            raise ConfigError(f"trainer.{key}=0 trains nothing: the test metrics would be those of random weights. "
                              f"Give trainer.{key} of at least 1, or evaluate given weights with strategy=tl "
                              f"strategy.checkpoint=PATH (or strategy=mf_ipa strategy.init=PATH) trainer.{key}=0")


def check_ddp_multirun(cfg: DictConfig) -> None:
    """Plain DDP relaunches the whole script per rank; inside a Hydra multirun that reruns the sweep."""
    strategy = str(cfg.trainer.get("strategy", "auto"))
    devices = cfg.trainer.get("devices", 1)
    many = (isinstance(devices, int) and devices > 1) or (isinstance(devices, str) and devices not in ("1", "auto")) \
        or (not isinstance(devices, (int, str)) and len(devices) > 1)
    if strategy.startswith("ddp") and "spawn" not in strategy and many and is_multirun():
        raise ConfigError("trainer.strategy=ddp cannot run inside a Hydra multirun (-m): each rank would relaunch "
                          "the sweep. Use one device per trial (trainer.devices=1) or trainer.strategy=ddp_spawn")


def gpu_training(cfg: DictConfig) -> bool:
    """Whether the trainer will run on a CUDA GPU (``accelerator`` gpu/cuda, or auto with one present)."""
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and _cuda())


def check_multi_fidelity_backbone(cfg: DictConfig, weights: "Weights") -> None:
    """MF from a weight file: the file's network must be a backbone that MF can train (``latents()`` and the
    ``mlp1`` readout), else a one-line error naming the file instead of a traceback from the module."""
    from hydra.utils import get_class

    target = weights.net.get("_target_") or "optimate_pl.models.Optimate"
    try:
        cls = get_class(target)
    except Exception:  # noqa: BLE001 - a class that does not import fails with its own message when built
        return
    if not hasattr(cls, "latents"):
        raise ConfigError(f"{start_key(cfg)}={weights.path} holds a {cls.__name__}, which strategy=mf cannot train "
                          f"(it needs a backbone with latents() and the mlp1 readout); start from IPA weights of "
                          f"such a backbone, or train MF from scratch ({start_key(cfg)}=null)")
