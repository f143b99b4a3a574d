"""Hydra callback of the Optuna sweeps: the best parameters as configs at the end, and one line when every trial failed."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from ..utils.atomic import atomic_write_text

log = logging.getLogger(__name__)


def best_configs(sweep_dir: str | Path, base_model: DictConfig | None = None) -> dict[str, Path]:
    """From ``optimization_results.yaml`` write ``best_overrides.yaml`` (global package, usable as
    ``experiment=``-style config) and, for architecture searches, ``best_model.yaml`` (a model config
    with concrete lists, ready for ``conf/model/``)."""
    sweep_dir = Path(sweep_dir)
    results = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    params: dict[str, Any] = dict(results.best_params)
    nested = OmegaConf.create({})
    for key, value in params.items():
        OmegaConf.update(nested, key, value, force_add=True)
    written = {}
    overrides = sweep_dir / "best_overrides.yaml"
    atomic_write_text(f"# @package _global_\n# best of the sweep: objective {results.best_value}\n"
                      + OmegaConf.to_yaml(nested), overrides)
    written["overrides"] = overrides
    if base_model is not None and "search" in base_model and "model" in nested:
        from ..config.resolvers import gat_stack, repeat  # noqa: F401  (registers the resolvers)

        model = OmegaConf.merge(base_model, {"search": nested.model.search})
        resolved = OmegaConf.to_container(model, resolve=True)
        resolved.pop("search", None)
        resolved["name"] = "dl_best"
        path = sweep_dir / "best_model.yaml"
        atomic_write_text(f"# best architecture of the sweep in {sweep_dir}\n" + OmegaConf.to_yaml(resolved), path)
        written["model"] = path
    return written


def trials_table(study_name: str, storage: str, path: str | Path) -> Path:
    """Write every trial of the study as one CSV row (best first): its number, state, objective, the epoch it
    was pruned at (empty when it ran to the end), its last reported epoch, minutes and sampled parameters.

    A pruned trial's objective is its value when it stopped, not comparable with a finished one's: that is
    why the table says which ones were pruned. It is small, so a sweep's outcome can be committed beside a study.
    """
    import optuna
    import pandas as pd

    from ..utils.atomic import atomic_open
    from .pruning import PRUNED_AT

    study = optuna.load_study(study_name=study_name, storage=storage)
    rows = []
    for t in study.get_trials(deepcopy=False):
        minutes = (t.datetime_complete - t.datetime_start).total_seconds() / 60 \
            if t.datetime_complete and t.datetime_start else None
        rows.append({"trial": t.number, "state": t.state.name, "value": t.value,
                     "pruned_at_epoch": t.user_attrs.get(PRUNED_AT),
                     "last_epoch": max(t.intermediate_values) if t.intermediate_values else None,
                     "minutes": None if minutes is None else round(minutes, 2), **t.params})
    table = pd.DataFrame(rows)
    if len(table):
        minimize = study.direction == optuna.study.StudyDirection.MINIMIZE
        table = table.sort_values("value", ascending=minimize, na_position="last", kind="stable")
    path = Path(path)
    with atomic_open(path, "w") as fh:
        table.to_csv(fh, index=False)
    return path


def trial_folders_taken(sweep_dir: Path, subdir: str, n_trials: int) -> str:
    """The first trial folders of this command (``subdir`` with job numbers 0, 1, ...) that hold a run already,
    named (empty: none). Only a subdir made of text and ``${hydra.job.num}`` can be told apart here."""
    if "${hydra.job.num}" not in subdir or subdir.replace("${hydra.job.num}", "").count("${"):
        return ""
    taken = [name for n in range(max(1, n_trials)) if (sweep_dir / (name := subdir.replace("${hydra.job.num}", str(n)))
                                                       / "config.yaml").is_file()]
    return ", ".join(f"{t}/" for t in taken[:3]) + (", ..." if len(taken) > 3 else "")


class WriteBestConfig(Callback):
    """Writes the sweep's best parameters as configs, and every trial as ``trials.csv``, at the end of a multirun.

    It also counts the trials: when all of them failed, the sweep ends with one line saying why (and
    exit code 2) instead of Optuna's "Record does not exist" traceback when it looks for the best.
    """

    def __init__(self) -> None:
        self.n_trials, self.done, self.succeeded, self.first_failure = 0, 0, 0, ""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        import sys

        # The Optuna storage is a SQLite file inside the sweep dir, opened before Hydra creates it.
        sweep_dir = Path(config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.n_trials = int(config.hydra.sweeper.get("n_trials") or 0)
        # Continuing a study: Hydra numbers this command's jobs from 0 again, so its trials would run in (and write
        # over) the folders of the earlier ones. Refused before any job, with folders of its own to give them.
        subdir = str(OmegaConf.to_container(config.hydra.sweep, resolve=False).get("subdir"))
        taken = trial_folders_taken(sweep_dir, subdir, self.n_trials)
        if taken:
            k = next(k for k in range(1, 1000) if not trial_folders_taken(sweep_dir, f"c{k}-${{hydra.job.num}}", 1))
            print(f"error: {sweep_dir} holds the trials of an earlier command ({taken}): this one's would be written "
                  f"over them (Hydra numbers each command's jobs from 0). Continue the study with folders of its own "
                  f"and a new sampler seed (its first random draws would repeat the earlier ones): "
                  f"'hydra.sweep.subdir=c{k}-${{hydra.job.num}}' hydra.sweeper.sampler.seed={k}", file=sys.stderr)
            sys.exit(2)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        import math
        import sys

        self.done += 1
        # The public JobReturn.return_value re-raises a failed job's exception (and writes to stderr).
        value = job_return._return_value
        if job_return.status == JobStatus.COMPLETED and isinstance(value, (int, float)) and math.isfinite(value):
            self.succeeded += 1
        elif not self.first_failure:
            self.first_failure = str(value) if job_return.status == JobStatus.FAILED else \
                f"the trial returned no objective ({config.get('optimized_metric')} = {value})"
        if self.n_trials and self.done >= self.n_trials and not self.succeeded:
            print(f"error: all {self.done} trials of the sweep failed; the first because: {self.first_failure}",
                  file=sys.stderr)
            sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not (sweep_dir / "optimization_results.yaml").is_file():
            return
        written = best_configs(sweep_dir, config.get("model"))
        overrides = " ".join(f"{k}={v}" for k, v in OmegaConf.load(sweep_dir / "optimization_results.yaml").best_params.items())
        log.info("best parameters: %s", overrides)
        log.info("ready-to-use configs: %s", ", ".join(str(p) for p in written.values()))
        print(f"best parameters: {overrides}\nconfigs: {', '.join(str(p) for p in written.values())}")
        sweeper = config.hydra.sweeper
        if sweeper.get("storage") and sweeper.get("study_name"):
            from .pruning import pruned_trials

            table = trials_table(sweeper.study_name, sweeper.storage, sweep_dir / "trials.csv")
            log.info("every trial: %s", table)
            pruned = pruned_trials(sweeper.study_name, sweeper.storage)
            if pruned:
                said = ", ".join(f"{n} at epoch {e}" for n, e in sorted(pruned.items()))
                log.info("pruned trials (stopped early): %s", said)
                print(f"pruned: {len(pruned)} trial(s) stopped early ({said})")
