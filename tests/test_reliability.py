"""No silent wrong answer, no lost work, errors that say what to do (each class failed before its fix)."""
import json
import os
import shlex
import signal
import subprocess
import sys
import time

import pytest
import torch


def test_help_opens_with_a_description_examples_and_groups(tmp_path, cli, predict_cli):
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("optimate-pl (python -m optimate_pl): train OPTIMATE")
    assert "Common commands:" in r.stdout and "strategy: dl, ipa, mf, mf_ipa, sc, tl" in r.stdout
    r = predict_cli("--help", cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.startswith("optimate-pl-predict:")
    assert "Common commands:" in r.stdout and "recursive: false" in r.stdout
    # the entry of earlier versions was a silent no-op (exit 0) after the command moved to cli.py
    r = subprocess.run([sys.executable, "-m", "optimate_pl.inference.screening", "--help"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "run predictions with `optimate-pl-predict" in r.stderr, r.stderr[-1500:]


def test_resume_refuses_another_configuration_and_names_the_checkpoint(tmp_path, cache_dir, caplog, cfg_train):
    import logging

    from optimate_pl.config import ConfigError
    from optimate_pl.training.train import train

    first = train(cfg_train(tmp_path / "a", "strategy=dl", "data.subset=40", "trainer.max_epochs=1"))
    last = tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"
    assert last.is_file() and first["best_checkpoint"]
    with pytest.raises(ConfigError, match=r"last.ckpt was written by a run with another configuration: "
                                          r"data.subset \(checkpoint 40, now 50\)"):
        train(cfg_train(tmp_path / "b", "strategy=dl", "data.subset=50", f"ckpt_path={last}"))
    with pytest.raises(ConfigError, match=r"optimizer \(checkpoint"):
        train(cfg_train(tmp_path / "c", "strategy=dl", "data.subset=40", "optimizer.lr=0.1", f"ckpt_path={last}"))
    with caplog.at_level(logging.INFO, logger="optimate_pl"):
        again = train(cfg_train(tmp_path / "d", "strategy=dl", "data.subset=40", "trainer.max_epochs=2",
                              "trainer.precision=32", f"ckpt_path={last}"))  # Lightning's short name of 32-true
    assert f"resuming from {last} (epoch 0" in caplog.text and again["time_s"] > 0
    assert "was trained in" not in caplog.text
    # Another precision resumes, but is said: the checkpoint records the one it was trained in.
    assert torch.load(last, map_location="cpu", weights_only=False)["precision"] == "32-true"
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="optimate_pl"):
        train(cfg_train(tmp_path / "e", "strategy=dl", "data.subset=40", "trainer.max_epochs=2",
                        "trainer.precision=bf16-mixed", f"ckpt_path={last}"))
    assert f"{last} was trained in 32-true; this run goes on in bf16-mixed" in caplog.text


def test_sigterm_leaves_a_resumable_checkpoint_and_resume_keeps_best_tracking(tmp_path, cache_dir, fast, cli):
    args = ["strategy=dl", "data.subset=40", *fast, "trainer.max_epochs=60", "trainer.check_val_every_n_epoch=1",
            "hydra.run.dir=run", f"paths.root_dir={tmp_path}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "optimate_pl", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoints = tmp_path / "run" / "checkpoints"
    deadline = time.time() + 240
    while time.time() < deadline and not list(checkpoints.glob("best-*.ckpt")):
        time.sleep(0.2)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)  # what SLURM sends before pre-empting a job
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    state = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    tracking = next(v for k, v in state["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert state["epoch"] < 59 and tracking["best_model_path"]
    resume = next(line for line in (out + err).splitlines() if line.startswith("resume with: "))[len("resume with: "):]
    command = shlex.split(resume)
    assert command[:3] == ["python", "-m", "optimate_pl"] and f"ckpt_path={checkpoints / 'last.ckpt'}" in command
    # The printed command as given, but for a shorter budget (a resume may change it): the rest of 60 epochs took
    # most of this test's time and checks nothing more than a few epochs do.
    until = state["epoch"] + 4
    assert "trainer.max_epochs=60" in command
    command = [f"trainer.max_epochs={until}" if a == "trainer.max_epochs=60" else a for a in command]
    r = cli(*command[3:], cwd=tmp_path, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"resuming from {checkpoints / 'last.ckpt'}" in r.stdout + r.stderr
    final = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    kept = next(v for k, v in final["callbacks"].items() if k.startswith("ModelCheckpoint"))
    assert final["epoch"] == until - 1 and float(kept["best_model_score"]) <= float(tracking["best_model_score"])
    assert "test/sc_median" in json.loads((tmp_path / "run" / "metrics.json").read_text())


def test_batch_jobs_log_a_line_per_validation(tmp_path, cache_dir, fast, cli):
    with_bar = [a for a in fast if not a.startswith("callbacks.progress_bar")]  # the default RichProgressBar
    r = cli("strategy=dl", "data.subset=40", *with_bar, "trainer.max_epochs=3", f"paths.root_dir={tmp_path}",
            cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [line for line in (r.stdout + r.stderr).splitlines() if "] - epoch " in line]  # no terminal: no bars
    assert len(lines) == 3 and "epoch 3/3: " in lines[-1]
    assert "val/loss" in lines[-1] and "val/sc_median" in lines[-1] and "s/epoch)" in lines[-1]


def test_short_sweep_trials_validate_and_a_failing_sweep_says_why(tmp_path, cache_dir, fast, cli):
    common = ["-m", "sweep=tl", "hydra.sweeper.n_trials=2", "data.subset=60", "trainer.max_epochs=2",
              "strategy.pretrain_epochs=1", *fast[2:], f"paths.root_dir={tmp_path}"]
    r = cli(*common, cwd=tmp_path, timeout=600)  # check_val_every_n_epoch is 20: longer than the run
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "multirun" / "sweep-tl-synthetic-60" / "best_overrides.yaml").is_file()
    r = cli(*common, "optimizer._target_=torch.optim.SGD", "hydra.sweeper.params={optimizer.lr: 'interval(1e25, 1e27)'}",
            "hydra.sweep.dir=diverging", cwd=tmp_path, timeout=600)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("error: all 2 trials of the sweep failed; the first because: "
                                                        "non-finite training loss")
    assert "Record does not exist" not in r.stderr


def test_unwritable_places_fail_before_any_work(tmp_path, cache_dir, cfg_train):
    from optimate_pl.config import ConfigError
    from optimate_pl.training.stages import run

    (tmp_path / "afile").write_text("a file, not a folder")
    fresh_cache = tmp_path / "fresh-cache"
    with pytest.raises(ConfigError, match=r"cannot write the folder of automatic IPA checkpoints .*afile/ckpt: "
                                          r"Not a directory; choose another with paths.checkpoint_dir="):
        run(cfg_train(tmp_path, "strategy=tl", f"paths.checkpoint_dir={tmp_path / 'afile' / 'ckpt'}",
                    f"data.cache_dir={fresh_cache}"))
    assert not list(fresh_cache.glob("*.pt"))  # nothing was built before the error
    with pytest.raises(ConfigError, match="cannot write the data cache"):
        run(cfg_train(tmp_path, "strategy=dl", f"data.cache_dir={tmp_path / 'afile' / 'cache'}"))


def test_files_are_written_with_the_users_umask(tmp_path):
    from optimate_pl.utils.atomic import atomic_write_text

    old = os.umask(0o002)  # a group-shared project folder
    try:
        shared = atomic_write_text("x", tmp_path / "shared.txt")
        os.umask(0o077)
        private = atomic_write_text("y", tmp_path / "private.txt")
    finally:
        os.umask(old)
    assert (shared.stat().st_mode & 0o777, private.stat().st_mode & 0o777) == (0o664, 0o600)


BUILD = r"""
import sys, time
import optimate_pl.data.build as build
real = build._build_figshare
def counted(*a, **k):
    with open(sys.argv[3], "a") as fh:
        fh.write("built\n")
    time.sleep(1.0)  # long enough for the other process to arrive and wait
    return real(*a, **k)
build._build_figshare = counted
print(build.figshare_store("ipa", sys.argv[1], sys.argv[2], workers=1))
"""


def test_two_processes_building_the_same_cache_do_it_once(tmp_path):
    from optimate_pl.data import synthetic

    from .conftest import TINY_SIZES

    db = synthetic.generate(0, ipa_sizes=tuple(TINY_SIZES["ipa"]), rpa_sizes=tuple(TINY_SIZES["rpa"]))
    root = tmp_path / "db"
    root.mkdir()
    for rec in db.ipa[:6]:
        (root / f"{rec.mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(rec, "ipa")))
    log = tmp_path / "builds.txt"
    procs = [subprocess.Popen([sys.executable, "-c", BUILD, str(root), str(tmp_path / "cache"), str(log)],
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    paths = [p.communicate(timeout=240)[0].strip().splitlines()[-1] for p in procs]
    assert all(p.returncode == 0 for p in procs) and paths[0] == paths[1]
    assert log.read_text().count("built") == 1
