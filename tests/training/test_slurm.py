"""SLURM for real: sweeps through the submitit launcher, DDP across SLURM tasks and pre-emption with requeue,
on a one-node cluster started on this machine (tests/slurm/cluster.sh, the session fixture ``slurm_cluster``).

The commands are the ones a user types on a cluster (README, "Running on a SLURM cluster"), with tiny data.
"""
import json
import re
import shlex
import sys
import time

import pytest

from ..conftest import TINY_SIZES

pytestmark = [pytest.mark.slurm, pytest.mark.slow]

#: Tiny synthetic data, no progress bars, no training-set evaluation: runs of seconds.
TINY = ["data.source=synthetic", f"data.synthetic_sizes.ipa={TINY_SIZES['ipa']}", f"data.synthetic_sizes.rpa={TINY_SIZES['rpa']}",
        "callbacks.progress_bar=null", "callbacks.model_summary=null", "evaluate_train=false"]
PYTHON = shlex.quote(sys.executable)


def batch_script(options: list[str], command: list[str], setup: str = "") -> str:
    """A batch script as a user writes one: #SBATCH options, threads = CPUs of a task, srun the command.

    ``command`` is quoted word by word, except words holding ``$SLURM_`` (left to the shell, e.g. the run folder).
    """
    words = " ".join(w if "$SLURM_" in w else shlex.quote(w) for w in command)
    return "\n".join(["#!/bin/bash", *[f"#SBATCH {o}" for o in options], "export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK",
                      setup, 'echo "== job $SLURM_JOB_ID starts (restart ${SLURM_RESTART_COUNT:-0}) on $SLURM_NODELIST"',
                      f"srun {PYTHON} -m optimate_pl {words}", 'echo "== job $SLURM_JOB_ID: srun exit $?"', ""])


@pytest.fixture(scope="module")
def ipa_weights(tmp_path_factory):
    """IPA-architecture weights to transfer-learn from (random, seeded): no pretraining stage in these tests."""
    import torch

    from optimate_pl.models import Optimate

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "ipa.pt"
    torch.save(Optimate().state_dict(), path)
    return path


def test_optuna_sweep_runs_its_trials_as_slurm_jobs(slurm_cluster, tmp_path, tiny_rpa, ipa_weights, cli):
    """`sweep=tl launcher=slurm_cpu`: the trials are SLURM jobs (two at a time); study and results as without SLURM,
    pruning included: each job reports to its own trial and is stopped by the pruner (here: every trial, after
    epoch 1 of 3)."""
    import optuna

    r = cli("strategy=tl", "sweep=tl", "launcher=slurm_cpu", "data.subset=60", f"strategy.checkpoint={ipa_weights}",
            "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2", "hydra.launcher.cpus_per_task=1",
            "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10", "trainer.max_epochs=3",
            "trainer.check_val_every_n_epoch=1", "pruner=threshold", "pruner.lower=2.0", "pruner.n_warmup_steps=1",
            *TINY, f"paths.root_dir={tmp_path}", cwd=tmp_path, timeout=400)
    assert r.returncode == 0, r.stderr[-3000:] + slurm_cluster.log_tail()
    sweep = tmp_path / "multirun" / "sweep-tl-synthetic-60"
    # submitit submits a batch of trials as one job array: <array job>_<task>, one task per trial
    jobs = sorted(p.name for p in (sweep / ".submitit").iterdir() if re.fullmatch(r"\d+_\d+", p.name))
    assert len(jobs) == 2, jobs
    states = slurm_cluster.wait(jobs[0].split("_")[0], timeout=60)  # the sweep ends at the results, before the jobs
    assert states == {job: "COMPLETED" for job in jobs}, states  # each trial ran as a job of this cluster
    study = optuna.load_study(study_name="sweep-tl-synthetic-60", storage=f"sqlite:///{sweep / 'optuna.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    for trial in trials:  # the objective Optuna stored is the trial's own metrics.json value
        metrics = json.loads((sweep / str(trial.number) / "metrics.json").read_text())
        # ... and a trial never runs the test set (sweep/common: test false)
        assert trial.value == pytest.approx(metrics["val/sc_median"], abs=0) and "test/sc_median" not in metrics
        assert sorted(trial.intermediate_values) == [0, 1] and trial.user_attrs["pruned_at_epoch"] == 1
        assert trial.intermediate_values[1] == pytest.approx(trial.value)  # its own job's number, not the other's
    assert (sweep / "best_overrides.yaml").is_file()
    print(f"\nsweep jobs {states}: " + "; ".join(f"trial {t.number} {t.params} -> val/sc_median {t.value:.6f}"
                                             for t in trials))


def test_ddp_across_two_slurm_tasks_matches_one_process(slurm_cluster, tmp_path, tiny_rpa, ipa_weights, cfg_train):
    """`srun` with --ntasks-per-node=2: Lightning's SLURM environment, gloo on CPU, one training run; its test
    medians are those of its best checkpoint evaluated by a single process."""
    common = ["strategy=tl", "data.subset=60", "trainer.check_val_every_n_epoch=1", *TINY, f"paths.root_dir={tmp_path}"]
    two = slurm_cluster.sbatch(script=batch_script(
        ["--nodes=1", "--ntasks-per-node=2", "--cpus-per-task=1", "--output=two-%j.out"],
        [*common, f"strategy.checkpoint={ipa_weights}", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
         "trainer.max_epochs=3", "optimizer.lr=1e-3", "hydra.run.dir=two-$SLURM_JOB_ID"]), cwd=tmp_path)
    states = slurm_cluster.wait(two, timeout=300)
    log = (tmp_path / f"two-{two}.out").read_text()
    assert states == {two: "COMPLETED"}, log[-3000:]
    info = slurm_cluster.show(two)
    assert info["NumTasks"] == "2" and "MEMBER: 1/2" in log and "MEMBER: 2/2" in log, log[-3000:]
    m2 = json.loads((tmp_path / f"two-{two}" / "metrics.json").read_text())
    # the same model in one process: TL from the DDP run's best checkpoint, no training (here, in-process)
    from optimate_pl.training.train import train


    m1 = train(cfg_train(tmp_path / "one", *common, "trainer.max_epochs=0"), init_weights=m2["best_checkpoint"])
    keys = sorted(k for k in m2 if k.startswith("test/") and k.endswith("_median"))
    print(f"\nDDP job {two} ({info['NumTasks']} tasks) vs one process: " + ", ".join(
        f"{k} {m2[k]:.6f} / {m1[k]:.6f}" for k in keys))
    assert "test/sc_median" in keys and "test/mse_median" in keys
    for key in keys:
        assert m2[key] == pytest.approx(m1[key], rel=1e-6, abs=1e-7), key
    for run in (tmp_path / f"two-{two}", tmp_path / "one" / "run"):  # every test material once
        assert len((run / "test_results.csv").read_text().splitlines()) == TINY_SIZES["rpa"][2] + 1


def test_preempted_job_is_requeued_and_resumes_to_the_uninterrupted_result(slurm_cluster, tmp_path, tiny_rpa):
    """A job of the `cpu` partition pre-empted by one of `urgent` (PreemptMode=REQUEUE): SIGTERM writes its
    last.ckpt, SLURM requeues it, the restarted job finds its checkpoint by itself (default, time-named run
    folder) and ends with the best checkpoint and test medians of a run never interrupted."""
    run = ["strategy=dl", "data.subset=40", "data.batch_size=64", "optimizer.lr=1e-3", "trainer.max_epochs=16",
           "trainer.check_val_every_n_epoch=1", *TINY, f"paths.root_dir={tmp_path}"]
    options = ["--cpus-per-task=1", "--requeue", "--open-mode=append"]
    # the uninterrupted run: in `urgent`, which nothing pre-empts
    ref = slurm_cluster.sbatch(script=batch_script([*options, "--partition=urgent", "--output=ref-%j.out"],
                                                   [*run, "hydra.run.dir=ref"]), cwd=tmp_path)
    victim = slurm_cluster.sbatch(script=batch_script([*options, "--output=victim-%j.out"], run), cwd=tmp_path)
    log = tmp_path / f"victim-{victim}.out"
    deadline = time.time() + 240
    while time.time() < deadline and not re.search(r"epoch [5-8]/16", log.read_text() if log.is_file() else ""):
        time.sleep(0.5)
    assert list(tmp_path.glob("outputs/dl/*/checkpoints/best-*.ckpt")), log.read_text()[-3000:]
    # an urgent job needs the victim's CPU: slurmctld pre-empts (SIGTERM, KillWait, SIGKILL) and requeues it
    running = slurm_cluster.states(ref)[ref] == "RUNNING"
    urgent = slurm_cluster.sbatch("--partition=urgent", f"--cpus-per-task={1 if running else 2}", "--output=/dev/null",
                                  wrap="sleep 1", cwd=tmp_path)
    seen = []
    while time.time() < deadline:
        info = slurm_cluster.show(victim)
        seen.append(info["JobState"])
        if info["JobState"] == "PENDING" and info.get("Restarts") == "1":
            break
        time.sleep(0.5)
    # SLURM holds a requeued job for about two minutes (Reason=BeginTime); release it now
    slurm_cluster.client("scontrol", "update", f"JobId={victim}", "StartTime=now")
    assert slurm_cluster.wait(victim, timeout=240) == {victim: "COMPLETED"}, log.read_text()[-3000:]
    assert slurm_cluster.wait(ref, timeout=120) == {ref: "COMPLETED"}
    assert slurm_cluster.wait(urgent, timeout=60) == {urgent: "COMPLETED"}
    text = log.read_text()
    # what the log says: stopped at epoch k with a checkpoint, requeued, resumed from it at epoch k
    stopped = re.search(r"SIGTERM at epoch (\d+) \(step \d+\): wrote the resumable checkpoint (\S+)", text)
    assert stopped, text[-3000:]
    ckpt = stopped.group(2)
    assert f"was requeued (restart 1): resuming from its checkpoint {ckpt}" in text
    assert f"resuming from {ckpt} (epoch {stopped.group(1)}," in text
    assert "(restart 0)" in text and "(restart 1)" in text and slurm_cluster.show(victim)["Restarts"] == "1"
    ends = [(j["JobId"], j["JobState"]) for j in slurm_cluster.jobcomp() if j.get("JobId") == victim]
    assert ends == [(victim, "PREEMPTED"), (victim, "COMPLETED")], ends
    # the same best checkpoint (epoch and validation loss) and test medians as the uninterrupted run
    runs = sorted(tmp_path.glob("outputs/dl/*/metrics.json"))
    assert len(runs) == 1, runs  # the first attempt stopped before its metrics; the restart wrote them
    resumed = json.loads(runs[0].read_text())
    reference = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    best = [re.search(r"best-(\d+)\.ckpt", m["best_checkpoint"]).group(1) for m in (reference, resumed)]
    print(f"\npre-emption: job {victim} states {sorted(set(seen))} -> {ends}, stopped at epoch {stopped.group(1)}; "
          f"best epoch {best[0]} / {best[1]}; " + ", ".join(
              f"{k} {reference[k]:.6f} / {resumed[k]:.6f}" for k in ("val/loss", "test/sc_median", "test/mse_median")))
    assert best[0] == best[1]
    for key in ["val/loss", *(k for k in reference if k.startswith("test/") and k.endswith("_median"))]:
        assert resumed[key] == pytest.approx(reference[key], rel=1e-6, abs=1e-7), key


def test_dft_chunks_as_a_job_array_redo_only_what_was_killed(slurm_cluster, tmp_path, rocksalt_nacl):
    """optimate-pl-compute with chunk=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT: two array tasks share one
    output folder; a task cancelled mid-way is redone on resubmission, and no finished material is recomputed."""
    from optimate_pl.dft.runner import which_gpaw_python
    from optimate_pl.dft.settings import LadderSettings

    from ..conftest import DFT_LOW

    if which_gpaw_python() is None:
        pytest.skip("no Python with GPAW")
    src = tmp_path / "in"
    src.mkdir()
    for a in (5.45, 5.55, 5.64, 5.75):
        s = rocksalt_nacl()
        s.scale_lattice(s.volume * (a / 5.64) ** 3)
        s.to(filename=str(src / f"NaCl_{a:.2f}.cif"))
    out = tmp_path / "out"
    compute = shlex.quote(str(sys.executable).replace("/python", "/optimate-pl-compute"))
    settings = " ".join(f"settings.{k}={v}" for k, v in LadderSettings(**DFT_LOW).as_dict().items())
    script = "\n".join(["#!/bin/bash", "#SBATCH --array=0-1", "#SBATCH --cpus-per-task=1",
                        "#SBATCH --output=dft-%A_%a.out",
                        f"srun {compute} input={src} output={out} nice=0 "
                        f"chunk=$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT {settings}", ""])
    job = slurm_cluster.sbatch(script=script, cwd=tmp_path)
    # chunk 0 holds NaCl_5.45 and NaCl_5.64: cancel its task once the first of them is written
    deadline = time.time() + 240
    while time.time() < deadline and not (out / "rpa" / "NaCl_5.45.cif.json").is_file():
        time.sleep(0.2)
    assert (out / "rpa" / "NaCl_5.45.cif.json").is_file(), (tmp_path / f"dft-{job}_0.out").read_text()[-2000:]
    slurm_cluster.client("scancel", f"{job}_0")
    states = slurm_cluster.wait(job, timeout=300)
    assert states[f"{job}_0"] == "CANCELLED" and states[f"{job}_1"] == "COMPLETED", states
    done = {p.name: p.stat().st_mtime_ns for p in out.glob("rpa/*.json")}
    assert "NaCl_5.64.cif.json" not in done and {"NaCl_5.55.cif.json", "NaCl_5.75.cif.json"} <= set(done)
    again = slurm_cluster.sbatch(script=script, cwd=tmp_path)  # the same array, resubmitted
    assert slurm_cluster.wait(again, timeout=300) == {f"{again}_0": "COMPLETED", f"{again}_1": "COMPLETED"}
    assert sorted(p.name for p in out.glob("rpa/*.json")) == [f"NaCl_{a}.cif.json" for a in ("5.45", "5.55", "5.64",
                                                                                           "5.75")]
    assert all(out.joinpath("rpa", name).stat().st_mtime_ns == t for name, t in done.items())  # not recomputed
    logs = {i: (tmp_path / f"dft-{again}_{i}.out").read_text() for i in (0, 1)}
    assert "computed 1 materials" in logs[0] and "computed 0 materials" in logs[1], logs
    summaries = sorted(p.name for p in out.glob("summary-*.json"))
    assert summaries == ["summary-0-of-2.json", "summary-1-of-2.json"]
    print(f"\nDFT array: job {job} -> {states}; resubmitted {again}: chunk 0 computed 1, chunk 1 computed 0")
