"""What every command line shares: path quoting, the early config check (one-line errors, exit code 2),
process-wide settings.

Process-wide settings (allocator, matmul precision, warnings, logging handlers) belong here, not
in :func:`~optimate_pl.training.train.train`, which tests and users call as a library. Configuration
mistakes end in one line and exit code 2.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
import sys
import warnings

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from ..config.schema import ConfigError

#: Overrides whose values are file paths: quoted before Hydra parses them, so that a path may hold
#: characters of Hydra's grammar (Lightning's ``epoch=3-step=70.ckpt``, commas, spaces, quotes).
PATH_KEYS = ("checkpoint", "input", "output", "scratch", "structure", "gpaw_python", "ids", "strategy.checkpoint", "ckpt_path", "data.root", "data.ipa_root",
             "data.split", "data.cache_dir", "paths.root_dir", "paths.output_dir", "paths.checkpoint_dir",
             "hydra.run.dir", "hydra.sweep.dir")
SPECIAL = set("=,[]{}()'\" \t$")


def quote_path_overrides(argv: list[str]) -> list[str]:
    """``key=value`` -> ``key='value'`` for path keys whose value holds characters of Hydra's grammar."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        if eq and key.lstrip("+~") in PATH_KEYS and value[:1] not in ("'", '"') and SPECIAL & set(value):
            # Hydra's quoted strings: backslashes are literal except before a quote (or the closing one).
            value = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", value)
            arg = f"{key}='" + re.sub(r"(\\+)$", lambda m: m.group(1) * 2, value) + "'"
        out.append(arg)
    return out


#: Errors that are the user's to fix, shown in one line unless ``verbose_errors=true`` (CheckpointError and
#: InputError are ValueErrors). Torch and Lightning are imported in the apps: help and errors stay fast.
USER_ERRORS = (ConfigError, FloatingPointError, FileNotFoundError, ValueError, MissingMandatoryValue)


COMMANDS = {"train": "optimate-pl", "predict": "optimate-pl-predict", "compute": "optimate-pl-compute",
            "import": "optimate-pl-import"}
FLAGS_WITHOUT_RUN = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve", "--version",
                     "--shell-completion", "-sc", "--package", "-p")


def _one_line(err: BaseException) -> str:
    """Hydra's composition errors, said in one line with the fix."""
    from hydra.errors import MissingConfigException, OverrideParseException

    text = str(err)
    cause = err.__cause__
    key = getattr(cause, "full_key", None)
    if key and ("not in struct" in str(cause) or "Could not override" in text):
        return f"unknown setting {key}{_suggestion(key)} (`--cfg job` lists every setting)"
    if isinstance(err, MissingConfigException) and "Available options" in text:
        group = re.search(r"Could not find '([^/']+)/([^']+)'", text)
        options = re.findall(r"^\t(\S+)$", text.split("Available options", 1)[1].split("Config search path")[0],
                             re.MULTILINE)
        if group:
            return f"no {group.group(1)} named {group.group(2)!r}; Available options: {', '.join(options)}"
    if isinstance(err, OverrideParseException):
        return f"cannot read an override: {text.splitlines()[0]} (quote values with spaces or commas)"
    return " ".join(line.strip() for line in text.splitlines()[:2])


def _suggestion(key: str) -> str:
    """``data.subsett`` -> ``; did you mean data.subset?`` from the packaged config's keys."""
    import difflib

    from ..config.groups import load_group_config, load_train_config

    parent, _, name = key.rpartition(".")
    try:
        node = load_group_config(parent, "ipa" if parent == "data" else "default") if parent else load_train_config()
    except Exception:  # no such group file: no suggestion
        return ""
    close = difflib.get_close_matches(name, [str(k) for k in node], n=1)
    return f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""


def precheck(config_name: str, argv: list[str]) -> None:
    """Compose the config as Hydra is about to, so that a wrong key, group or override ends in one line
    (exit 2) instead of Hydra's report; and check the folders Hydra will create. (The values are checked
    once, when the command resolves its config: :func:`optimate_pl.config.resolve_config`.)"""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from omegaconf import OmegaConf

    from ..utils.atomic import writable_problem

    if any(a.split("=")[0] in FLAGS_WITHOUT_RUN for a in argv):
        return
    multirun = "-m" in argv or "--multirun" in argv
    overrides = [a for a in argv if not a.startswith("-")]
    verbose = any(a.replace("+", "") in ("verbose_errors=true", "verbose_errors=True") for a in overrides)
    try:
        if multirun:  # sweeps (a,b / choice(...)) are expanded by Hydra: check the plain overrides only
            parsed = OverridesParser.create().parse_overrides(overrides)
            overrides = [o.input_line for o in parsed if not o.is_sweep_override()]
        with initialize_config_module("optimate_pl.conf", version_base="1.3"):
            cfg = compose(config_name, overrides=overrides, return_hydra_config=True)
        missing = [k for k in cfg if k != "hydra" and OmegaConf.is_missing(cfg, k)]  # ??? at the top level
        if missing:
            example = " ".join(f"{k}=..." for k in missing)
            raise ConfigError(f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} required: "
                              f"{COMMANDS.get(config_name, 'optimate-pl')} {example}")
        if config_name == "predict":
            check_predict_paths(cfg)
        if config_name == "compute" and not Path(str(cfg.input)).expanduser().exists():
            raise ConfigError(f"input={cfg.input}: no such file or folder")
        check_launcher(cfg, multirun or str(OmegaConf.select(cfg, "hydra.mode", default="")).endswith("MULTIRUN"))
        run_dir = cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir
    except (HydraException, OmegaConfBaseException, ConfigError) as err:
        fail(ConfigError(_one_line(err)) if not isinstance(err, ConfigError) else err, verbose)
        return
    problem = writable_problem(run_dir)
    if problem:
        fail(ConfigError(f"cannot write the output folder {run_dir}: {problem}; choose another with "
                         f"{'hydra.sweep.dir' if multirun else ('output' if config_name != 'train' else 'hydra.run.dir')}=..."),
             verbose)


def check_launcher(cfg: DictConfig, multirun: bool) -> None:
    """A SLURM launcher needs SLURM here and a sweep to launch: without either it once ended in a 46-line
    traceback (no sbatch) or trained on this machine without a word (no -m)."""
    import shutil

    from omegaconf import OmegaConf

    target = str(OmegaConf.select(cfg, "hydra.launcher._target_", default="") or "")
    if "slurm" not in target.lower():
        return
    if not shutil.which("sbatch"):
        raise ConfigError("the SLURM launcher submits jobs with sbatch, which is not on this machine's PATH: run on the "
                          "cluster's login node, or leave out launcher= to run here")
    if not multirun:
        raise ConfigError("the SLURM launcher submits the jobs of a sweep: add -m (or a sweep=...); for one run, "
                          "submit the command itself with sbatch (docs/guides/slurm.md)")
    import subprocess

    try:
        ping = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
        said = (ping.stdout + ping.stderr).strip()
        down = ping.returncode != 0 or "DOWN" in said
    except (OSError, subprocess.TimeoutExpired) as err:
        said, down = str(err), True
    if down:
        raise ConfigError(f"SLURM's controller does not answer here (scontrol ping: {said.splitlines()[0] if said else '?'}): "
                          f"no job could be submitted")


def check_predict_paths(cfg: DictConfig) -> None:
    """The weight file and the input of a prediction exist (before torch is even imported)."""
    from pathlib import Path

    from ..models.card import resolve_checkpoint

    try:  # a training run's folder: its best checkpoint
        checkpoint = resolve_checkpoint(str(cfg.checkpoint))
    except ValueError as err:
        raise ConfigError(f"checkpoint={cfg.checkpoint}: {err}") from None
    source = Path(str(cfg.input)).expanduser()
    if checkpoint.is_dir() and (checkpoint / "ensemble.json").is_file():
        checkpoint = checkpoint / "ensemble.json"
    if not checkpoint.is_file():
        raise ConfigError(f"checkpoint={checkpoint}: no such file (give a trained checkpoint or a published .pt)")
    if checkpoint.stat().st_size == 0:
        raise ConfigError(f"checkpoint={checkpoint}: the file is empty (0 bytes): an interrupted copy or download?")
    if not source.exists():
        raise ConfigError(f"input={source}: no such file or folder")


def configure_process(cfg: DictConfig) -> None:
    """Settings that last for the whole process: allocator, matmul precision, quiet warnings, one handler a line."""
    import torch

    from ..utils.allocator import keep_freed_memory

    torch.set_float32_matmul_precision("high")
    if cfg.get("keep_freed_memory_mb"):
        keep_freed_memory(int(cfg.keep_freed_memory_mb) * 2**20)
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    # Lightning and our logger each attach handlers under Hydra; keep one line per message.
    for name in ("optimate_pl", "lightning.pytorch", "lightning.fabric"):
        lg = logging.getLogger(name)
        lg.propagate = True
        lg.handlers.clear()
    if not cfg.get("verbose_errors"):
        logging.getLogger("lightning.pytorch.utilities.rank_zero").setLevel(logging.WARNING)
    from ..utils.parallel import fit_threads_to_free_cores

    busy = fit_threads_to_free_cores()
    if busy:
        logging.getLogger("optimate_pl").warning(busy)


class TrialFailed(RuntimeError):
    """A trial of an Optuna sweep failed; the sweeper records it and goes on."""


def in_optuna_sweep() -> bool:
    """Whether this job is a trial of an Optuna sweep (Hydra multirun with the Optuna sweeper)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()


def fail_if_disk_full(err: BaseException, folder: str | Path, verbose: bool) -> None:
    """A full disk or quota anywhere in a run (our writes, Lightning's, a logger's) ends as one line naming
    the folder, exit code 2; any other error is re-raised."""
    from ..utils.atomic import disk_full_error

    full = disk_full_error(err, folder)
    if full is None or verbose:
        raise err
    fail(full, verbose)


def fail(err: BaseException, verbose: bool) -> None:
    """A user's mistake: one line on stderr and exit code 2 (the traceback with ``verbose_errors=true``)."""
    if verbose:
        raise err
    print(f"error: {err}\n(run with verbose_errors=true for the full traceback)", file=sys.stderr)
    sys.exit(2)
