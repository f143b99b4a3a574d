"""Optuna pruning of sweep trials: a job finds its own trial in the sweep's SQLite study and is stopped by the pruner."""
from __future__ import annotations

import optuna
import pytest

from optimate_pl.training.pruning import PRUNED_AT, job_trial, pruned_trials

LR = optuna.distributions.LogUniformDistribution(1e-5, 1e-2)
BATCH = optuna.distributions.CategoricalDistribution([32, 64, 128])


def _study(tmp_path, pruner=None):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    return optuna.create_study(study_name="s", storage=storage, direction="maximize", pruner=pruner), storage


def _ask(study, lr, batch):
    """A trial as Hydra's sweeper creates it (ask, then the parameters), and the job's overrides."""
    trial = study.ask()
    study._storage.set_trial_param(trial._trial_id, "optimizer.lr", LR.to_internal_repr(lr), LR)
    study._storage.set_trial_param(trial._trial_id, "data.batch_size", BATCH.to_internal_repr(batch), BATCH)
    return trial, ["strategy=tl", "data.subset=300", f"optimizer.lr={lr}", f"data.batch_size={batch}"]


def test_a_job_finds_its_own_running_trial_among_several(tmp_path):
    study, storage = _study(tmp_path)
    a, args_a = _ask(study, 3.1e-4, 64)
    b, args_b = _ask(study, 2.7e-5, 64)
    twin, _ = _ask(study, 3.1e-4, 64)  # a's parameters again (parallel jobs of one batch can draw equal ones)
    assert job_trial("s", storage, args_b).number == b.number
    assert job_trial("s", storage, ["optimizer.lr=0.001", "data.batch_size=64"]) is None
    assert job_trial("s", storage, [f"optimizer.lr={3.1e-4}"]) is None  # every parameter must match
    # Two jobs with equal parameters follow one trial each (the newest first), never the same one; a third
    # training of such a job (an ensemble's next member) finds none left to follow.
    assert job_trial("s", storage, args_a, claim="host:1").number == twin.number
    assert job_trial("s", storage, args_a, claim="host:2").number == a.number
    assert job_trial("s", storage, args_a, claim="host:1") is None
    study.tell(b, 0.5)
    assert job_trial("s", storage, args_b) is None  # finished trials are never a job's


def test_the_median_rule_stops_a_trial_below_the_earlier_ones(tmp_path):
    study, storage = _study(tmp_path, optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=20))
    for k, curve in enumerate([[0.5, 0.7, 0.8], [0.6, 0.75, 0.85]]):  # two complete trials, validated at 19/39/59
        trial, _ = _ask(study, 1e-4 * (k + 1), 32)
        for epoch, value in zip((19, 39, 59), curve):
            trial.report(value, epoch)
        study.tell(trial, curve[-1])
    good, args_good = _ask(study, 5e-4, 32)
    bad, args_bad = _ask(study, 5e-3, 128)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=20)
    mine = job_trial("s", storage, args_bad, pruner)
    mine.report(0.1, 19)
    assert not mine.should_prune()  # epoch 19 is inside the warm-up
    mine.report(0.2, 39)
    assert mine.should_prune()  # 0.2 < the median 0.725 of the others at epoch 39
    theirs = job_trial("s", storage, args_good, pruner)
    theirs.report(0.8, 39)
    assert not theirs.should_prune()
    mine.set_user_attr(PRUNED_AT, 39)
    assert pruned_trials("s", storage) == {bad.number: 39}
