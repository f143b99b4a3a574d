"""The command lines: training (``python -m optimate_pl ...`` / ``optimate-pl``) and ``optimate-pl-predict``.

Process-wide settings (allocator, matmul precision, warnings, logging handlers) belong here, not
in :func:`~optimate_pl.train.train`, which tests and users call as a library. Configuration
mistakes end in one line and exit code 2.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
import signal
import sys
import warnings

import hydra
from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from .config import ConfigError

#: Overrides whose values are file paths: quoted before Hydra parses them, so that a path may hold
#: characters of Hydra's grammar (Lightning's ``epoch=3-step=70.ckpt``, commas, spaces, quotes).
PATH_KEYS = ("checkpoint", "input", "output", "scratch", "gpaw_python", "ids", "strategy.checkpoint", "ckpt_path", "data.root", "data.ipa_root",
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


COMMANDS = {"train": "optimate-pl", "predict": "optimate-pl-predict", "compute": "optimate-pl-compute"}
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

    from .config import load_group_config, load_train_config

    parent, _, name = key.rpartition(".")
    try:
        node = load_group_config(parent, "ipa" if parent == "data" else "default") if parent else load_train_config()
    except Exception:  # no such group file: no suggestion
        return ""
    close = difflib.get_close_matches(name, [str(k) for k in node], n=1)
    return f"; did you mean {parent + '.' if parent else ''}{close[0]}?" if close else ""


def precheck(config_name: str, argv: list[str]) -> None:
    """Compose the config as Hydra is about to, so that a wrong key, group or value ends in one line
    (exit 2) instead of Hydra's report; and check the folders Hydra will create."""
    from hydra import compose, initialize_config_module
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from omegaconf import OmegaConf

    from .config import check_config, writable_problem

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
        if config_name == "train" and not multirun:
            check_config(cfg)
        if config_name == "predict":
            check_predict_paths(cfg)
        if config_name == "compute" and not Path(str(cfg.input)).expanduser().exists():
            raise ConfigError(f"input={cfg.input}: no such file or folder")
        run_dir = cfg.hydra.sweep.dir if multirun else cfg.hydra.run.dir
    except (HydraException, OmegaConfBaseException, ConfigError) as err:
        fail(ConfigError(_one_line(err)) if not isinstance(err, ConfigError) else err, verbose)
        return
    problem = writable_problem(run_dir)
    if problem:
        fail(ConfigError(f"cannot write the output folder {run_dir}: {problem}; choose another with "
                         f"{'hydra.sweep.dir' if multirun else ('output' if config_name != 'train' else 'hydra.run.dir')}=..."),
             verbose)


def check_predict_paths(cfg: DictConfig) -> None:
    """The weight file and the input of a prediction exist (before torch is even imported)."""
    from pathlib import Path

    checkpoint, source = Path(str(cfg.checkpoint)).expanduser(), Path(str(cfg.input)).expanduser()
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

    from .allocator import keep_freed_memory

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


class TrialFailed(RuntimeError):
    """A trial of an Optuna sweep failed; the sweeper records it and goes on."""


def in_optuna_sweep() -> bool:
    """Whether this job is a trial of an Optuna sweep (Hydra multirun with the Optuna sweeper)."""
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.initialized() and "optuna" in str(HydraConfig.get().sweeper.get("_target_", "")).lower()


def fail_if_disk_full(err: BaseException, folder: str | Path, verbose: bool) -> None:
    """A full disk or quota anywhere in a run (our writes, Lightning's, a logger's) ends as one line naming
    the folder, exit code 2; any other error is re-raised."""
    from .atomic import disk_full_error

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


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="train")
def _train_app(cfg: DictConfig) -> float | None:
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from .pipeline import run

    configure_process(cfg)
    try:
        return run(cfg)["objective"]
    except USER_ERRORS as err:
        if in_optuna_sweep() and not isinstance(err, ConfigError):
            # One failed trial (a diverging sampled learning rate, ...) must not end the whole sweep:
            # the sweeper records it as failed, with this one-line reason.
            raise TrialFailed(str(err).splitlines()[0]) from None
        fail(err, bool(cfg.get("verbose_errors")))
    except SIGTERMException:  # the checkpoint and the resume command are written by SaveOnInterrupt
        sys.exit(128 + signal.SIGTERM)
    except Exception as err:  # a full disk: one line (a library may wrap its OSError; anything else is raised)
        fail_if_disk_full(err, cfg.paths.output_dir, bool(cfg.get("verbose_errors")))


def main() -> None:
    """Console entry point of training (``optimate-pl`` and ``python -m optimate_pl``)."""
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    precheck("train", sys.argv[1:])
    _train_app()


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="predict")
def _predict_app(cfg: DictConfig) -> None:
    from .predict import run_prediction

    from omegaconf import OmegaConf

    configure_process(cfg)
    try:
        result = run_prediction(cfg.checkpoint, cfg.input, cfg.output, format=cfg.format, plot=int(cfg.plot),
                                batch_size=int(cfg.batch_size), chunk_size=int(cfg.chunk_size), workers=cfg.workers,
                                recursive=bool(cfg.recursive), min_distance=float(cfg.min_distance),
                                spectra=list(cfg.spectra), rank_by=cfg.rank_by, top=int(cfg.top),
                                resume=bool(cfg.resume), trainer=OmegaConf.to_container(cfg.trainer, resolve=True))
    except USER_ERRORS as err:
        fail(err, bool(cfg.get("verbose_errors")))
        return
    except Exception as err:  # a full disk: one line (anything else keeps its traceback)
        fail_if_disk_full(err, cfg.output, bool(cfg.get("verbose_errors")))
        return
    if not result:  # not rank 0 of a multi-device run
        return
    print(f"predicted {result['n_predicted']} of {result['n_inputs']} materials -> {cfg.output}"
          + (f"; {result['n_skipped']} skipped, reasons in errors.csv" if result["n_skipped"] else ""))
    incomplete = result.get("incomplete_inputs") or {}
    for detail in incomplete.values():
        print(f"not everything was read: {detail}", file=sys.stderr)
    if result["n_predicted"] == 0:
        sys.exit(1)
    if incomplete:  # what was read is written, but the input was not read to its end
        sys.exit(3)


def predict_main() -> None:
    """Console entry point of prediction (``optimate-pl-predict``)."""
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    precheck("predict", sys.argv[1:])
    _predict_app()


@hydra.main(version_base="1.3", config_path="pkg://optimate_pl.conf", config_name="compute")
def _compute_app(cfg: DictConfig) -> None:
    from .atomic import LockedError
    from .dft.compute import compute, options_from_config
    from .dft.runner import GPAWNotFound

    logging.getLogger("optimate_pl").setLevel(logging.INFO)
    try:
        opts, settings = options_from_config(cfg)
        summary = compute(opts, settings)
    except (*USER_ERRORS, GPAWNotFound, LockedError) as err:
        fail(err, bool(cfg.get("verbose_errors")))
        return
    run, folder = summary["this_run"], summary["folder"]
    print(f"computed {run['computed']} materials ({run['failed']} not computed) in {run['wall_s']:.0f} s; "
          f"{cfg.output} holds {folder['ipa_entries']} IPA and {folder['rpa_entries']} RPA entries"
          + (f"; not computed: {folder['not_computed']} (errors.csv)" if folder["not_computed"] else ""))


def compute_main() -> None:
    """Console entry point of the DFT rungs (``optimate-pl-compute``)."""
    sys.argv[1:] = quote_path_overrides(sys.argv[1:])
    precheck("compute", sys.argv[1:])
    _compute_app()
