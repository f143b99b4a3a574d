"""Optuna pruning inside Hydra's Optuna sweeps: a bad trial stops early, judged on its validation metric.

Why hand-written: Hydra's Optuna sweeper asks Optuna for a trial, launches the job and only tells the
final value; it never hands the job its trial, so Optuna's own Lightning pruning callback (which needs
that ``trial`` object) cannot be used (lightning-hydra-template issue #176). The sweeps keep their study
in SQLite (``sweep=``'s ``storage``), so the job opens the same study itself, finds its own running trial
by its parameters (the sweeper passes them as ``name=value`` overrides), reports the metric after every
validation and asks the study's pruner whether to go on. That works wherever the job runs and can reach
the SQLite file: in-process, and as a SLURM job on the same file system.

A pruned job stops training and returns its metric as it stands; the sweeper stores that value as the
trial's (the sweeper cannot mark a trial pruned), so the sampler sees the stopped trial as the poor one it
is. The trial keeps the epoch it was stopped at as the user attribute ``pruned_at_epoch``.
"""
from __future__ import annotations

import logging
from typing import Any

import lightning.pytorch as pl

from .callbacks import AUTOMATIC_PRETRAINING

log = logging.getLogger("optimate_pl")

#: The trial's user attribute that says at which epoch it was pruned.
PRUNED_AT = "pruned_at_epoch"
#: The trial's user attribute naming the process that follows it (so two jobs never share a trial, and a job that
#: trains several times, an ensemble's members, follows it with its first training only).
CLAIMED_BY = "pruning_followed_by"


def job_trial(study_name: str, storage: str, overrides: list[str], pruner: Any = None, claim: str = ""):
    """The running trial of this job in the Optuna study ``study_name`` at ``storage``, or ``None``.

    A trial is this job's when each of its parameters appears in ``overrides`` exactly as Hydra's sweeper
    writes it (``f"{name}={value}"``); of several (equal parameters in one batch of parallel jobs, or a trial
    left running by a crashed sweep), the newest one that no process follows yet. ``claim`` (e.g. host:pid),
    when given, marks the trial as followed. Returns an ``optuna.trial.Trial`` of a study loaded with ``pruner``.
    """
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage, pruner=pruner)
    given = set(overrides)
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    for frozen in sorted(running, key=lambda t: t.number, reverse=True):
        if frozen.params and CLAIMED_BY not in frozen.user_attrs and \
                all(f"{name}={value}" in given for name, value in frozen.params.items()):
            trial = optuna.trial.Trial(study, frozen._trial_id)
            if claim:
                trial.set_user_attr(CLAIMED_BY, claim)
            return trial
    return None


def _sweep_of_this_job() -> tuple[str, str, list[str]] | None:
    """``(study name, storage, overrides)`` when this process runs a job of an Optuna sweep with a storage."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    hydra = HydraConfig.get()
    sweeper = hydra.get("sweeper") or {}
    storage, name = sweeper.get("storage"), sweeper.get("study_name")
    if not storage or not name or "optuna" not in str(sweeper.get("_target_", "")).lower():
        return None
    return str(name), str(storage), list(hydra.overrides.task)


class OptunaPruning(pl.Callback):
    """Reports ``monitor`` to this job's Optuna trial after every validation and stops the run when the
    ``pruner`` says so (``sweep=``'s ``callbacks.pruning``; ``pruner=none`` never stops one).

    Outside an Optuna sweep with a storage (a plain run, a grid sweep) and in the automatic IPA pretraining of a
    TL trial it does nothing; a job that trains several times (an ensemble's members) is followed in its first
    training only. The sweep is read when the callback is made, in the job's own process, so that ranks spawned
    for DDP (``ddp_spawn``, which a sweep needs) know it too: rank 0 talks to the study and the decision is
    broadcast. A failing study (a locked or missing database) is a warning, never a failed trial.
    """

    def __init__(self, monitor: str, pruner: Any = None) -> None:
        self.monitor, self.pruner = monitor, pruner
        self.sweep = None if AUTOMATIC_PRETRAINING.get() else _sweep_of_this_job()
        self.trial = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.trial = None
        if stage != "fit" or self.sweep is None or not trainer.is_global_zero:
            return
        import os
        import socket

        name, storage, overrides = self.sweep
        try:
            self.trial = job_trial(name, storage, overrides, self.pruner, claim=f"{socket.gethostname()}:{os.getpid()}")
        except Exception as err:  # noqa: BLE001 - pruning is an optimisation: the trial runs on without it
            log.warning("pruning: cannot open the Optuna study %s at %s (%s); this trial runs to its end", name,
                        storage, err)
            return
        if self.trial is None:
            log.info("pruning: no running trial of %s left to follow for this training (an earlier training of the "
                     "same job follows it, or none matches its overrides); it runs to its end", name)
        else:
            log.info("pruning: reporting %s to trial %d of %s (%s)", self.monitor, self.trial.number, name,
                     type(self.trial.study.pruner).__name__)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # on_validation_end, not on_validation_epoch_end: the module computes the epoch's medians in its own
        # epoch-end hook, which Lightning calls after the callbacks'.
        if trainer.sanity_checking or (self.trial is None and trainer.world_size == 1):
            return
        prune = False
        value = trainer.callback_metrics.get(self.monitor) if self.trial is not None else None
        if value is not None:
            epoch = int(trainer.current_epoch)
            try:
                self.trial.report(float(value), step=epoch)  # one read per validation, not per step
                prune = self.trial.should_prune()
                if prune:
                    self.trial.set_user_attr(PRUNED_AT, epoch)
            except Exception as err:  # noqa: BLE001 - e.g. "database is locked" on a shared file system
                log.warning("pruning: the Optuna study failed (%s); this trial runs to its end", err)
                self.trial, prune = None, False
            if prune:
                log.info("pruning: trial %d stopped at epoch %d (%s = %.4f)", self.trial.number, epoch, self.monitor,
                         float(value))
        if trainer.world_size > 1:
            prune = trainer.strategy.broadcast(prune, src=0)
        if prune:
            trainer.should_stop = True


def pruned_trials(study_name: str, storage: str) -> dict[int, int]:
    """``{trial number: epoch it was stopped at}`` of the study's pruned trials."""
    import optuna

    study = optuna.load_study(study_name=study_name, storage=storage)
    return {t.number: int(t.user_attrs[PRUNED_AT]) for t in study.get_trials(deepcopy=False)
            if PRUNED_AT in t.user_attrs}
