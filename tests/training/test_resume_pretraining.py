"""Resuming the stages a run starts by itself: TL's automatic IPA pretraining goes on where it was interrupted (it
once started again at epoch 0, and its resume hint pointed a TL run at the IPA checkpoint); a data mistake is said
before the pretraining; ``ckpt_path=last`` never takes a debugging run's checkpoint for a real run."""
from __future__ import annotations

import logging
from pathlib import Path
import signal

import lightning.pytorch as pl
import pytest
import torch


class StopIPAOnce(pl.Callback):
    """Ctrl-C in the IPA pretraining at the end of epoch ``epoch``, once per test process."""

    fired = False

    def __init__(self, epoch: int = 1) -> None:
        self.epoch = epoch

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if pl_module.hparams.data.get("kind") == "ipa" and trainer.current_epoch == self.epoch \
                and not StopIPAOnce.fired:
            StopIPAOnce.fired = True
            raise KeyboardInterrupt


def test_an_interrupted_pretraining_resumes_where_it_stopped(tmp_path, cache_dir, cfg_train, caplog):
    from optimate_pl.training.stages import run

    overrides = ["strategy=tl", "data.subset=40", "strategy.pretrain_epochs=4", "trainer.max_epochs=1",
                 f"paths.checkpoint_dir={tmp_path / 'ckpts'}",
                 "+callbacks.stop._target_=tests.training.test_resume_pretraining.StopIPAOnce"]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with caplog.at_level(logging.WARNING, logger="optimate_pl"), pytest.raises(SystemExit):
            run(cfg_train(tmp_path, *overrides))  # Lightning ends a Ctrl-C'd fit with sys.exit(1)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores SIGINT after a Ctrl-C
    last = next((tmp_path / "ckpts").glob("ipa-*-run/checkpoints/last.ckpt"))
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 1
    hint = next(line for line in caplog.text.splitlines() if line.startswith("resume with: "))
    assert "ckpt_path=" not in hint and "the same command: its IPA pretraining goes on" in hint
    assert "during the automatic IPA pretraining" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="optimate_pl"):
        metrics = run(cfg_train(tmp_path, *overrides))
    assert f"resuming the interrupted IPA pretraining from {last}" in caplog.text
    assert f"resuming from {last} (epoch 1" in caplog.text  # not epoch 0 again
    ipa = next((tmp_path / "ckpts").glob("ipa-*.ckpt"))  # the pretraining finished: its best checkpoint, epoch 3
    assert torch.load(ipa, map_location="cpu", weights_only=False)["epoch"] == 3 and metrics["trained_steps"] > 0


def test_a_data_mistake_is_said_before_pretraining(tmp_path, cache_dir, cfg_train, caplog):
    from optimate_pl.training.stages import run

    with caplog.at_level(logging.INFO, logger="optimate_pl"), \
            pytest.raises(ValueError, match=r"data.subset=1000 is larger than the training set \(100 materials\)"):
        run(cfg_train(tmp_path, "strategy=tl", "data.subset=1000", f"paths.checkpoint_dir={tmp_path / 'ckpts'}"))
    assert "pretraining on IPA first" not in caplog.text and not list((tmp_path / "ckpts").glob("ipa-*"))


def test_a_filter_that_leaves_few_materials_is_said(tiny_rpa, caplog):
    from optimate_pl.data import RPADataModule

    dm = RPADataModule(source="synthetic", cache_dir=tiny_rpa.cache_dir, synthetic_sizes=tiny_rpa.synthetic_sizes,
                       max_sites=4)
    with caplog.at_level(logging.WARNING):
        dm.setup()
    n = len(dm.train_set)
    assert 0 < n < 100 and f"data.max_sites=4 keeps {n} of the 100 training materials" in caplog.text


def test_ckpt_path_last_never_takes_a_debugging_runs_checkpoint(tmp_path, cache_dir, cfg_train, caplog):
    from optimate_pl.config import ConfigError
    from optimate_pl.training.train import train

    common = ["strategy=dl", "data.subset=40", "task_name=dl", "trainer.max_epochs=1"]
    train(cfg_train(tmp_path / "debug", *common, "paths.output_dir=" + str(tmp_path / "outputs/dl/debug-run"),
                    "+trainer.limit_train_batches=1"))
    with pytest.raises(ConfigError, match=r"ckpt_path=last: the newest last.ckpt of task dl, .*debug-run.* is a "
                                          r"debugging run's and this run is not"):
        train(cfg_train(tmp_path, *common, "ckpt_path=last", "paths.output_dir=" + str(tmp_path / "outputs/dl/b")))
    train(cfg_train(tmp_path, *common, "paths.output_dir=" + str(tmp_path / "outputs/dl/real-run")))
    with caplog.at_level(logging.WARNING, logger="optimate_pl"):
        train(cfg_train(tmp_path, *common, "ckpt_path=last", "trainer.max_epochs=2",
                        "paths.output_dir=" + str(tmp_path / "outputs/dl/c")))
    assert "ckpt_path=last took the run in " + str(tmp_path / "outputs/dl/real-run") in caplog.text


@pytest.mark.parametrize("where", ["plain", "through_a_symlink", "moved_since"])
def test_a_run_resumed_in_a_new_folder_keeps_comparing_with_the_best_before(tmp_path, cache_dir, cfg_train, where):
    """A resumed command gets a new run folder. Lightning then keeps only the best checkpoint's path and would make
    the first validation after the resume the run's "best" model, which it tests and reports. The earlier best
    (here made unbeatable: val/loss 1e-9 in the interrupted run's state) must stay the best, copied into the new
    folder; the old folder is left as it was. Also where the new folder lies behind a symlink (Lightning compares
    the folder with links resolved) and where the interrupted run's folder was moved since."""
    import shutil

    import torch

    from optimate_pl.training.train import train

    common = ["strategy=dl", "data.subset=40", "task_name=dl"]
    first = tmp_path / "outputs/dl/first"
    train(cfg_train(tmp_path, *common, "trainer.max_epochs=1", f"paths.output_dir={first}"))
    (best,) = (first / "checkpoints").glob("best-*.ckpt")
    state = torch.load(first / "checkpoints/last.ckpt", weights_only=False)
    (key,) = [k for k in state["callbacks"] if k.startswith("ModelCheckpoint")]
    state["callbacks"][key]["best_model_score"] = torch.tensor(1e-9)
    state["callbacks"][key]["best_k_models"] = {str(best): torch.tensor(1e-9)}
    torch.save(state, first / "checkpoints/last.ckpt")
    if where == "moved_since":  # the state names the files where they were written
        first = shutil.move(first, tmp_path / "outputs/dl/first-moved")
    before = sorted(p.name for p in (Path(first) / "checkpoints").iterdir())
    second = tmp_path / "outputs/dl/second"
    if where == "through_a_symlink":
        (tmp_path / "elsewhere").mkdir()
        (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
        second = tmp_path / "link" / "second"
    metrics = train(cfg_train(tmp_path, *common, "trainer.max_epochs=3", f"ckpt_path={first}/checkpoints/last.ckpt",
                              f"paths.output_dir={second}"))
    # the copy is still the best
    assert Path(metrics["best_checkpoint"]).resolve() == (second / "checkpoints" / best.name).resolve()
    # no later "best", the best's model card copied with it, and the adopted resume file removed
    names = {p.name for p in (second / "checkpoints").iterdir()}
    assert names >= {best.name, f"{best.name}.card.json", "last.ckpt"}
    assert all(n.startswith((best.name, "last.ckpt")) for n in names), names
    assert sorted(p.name for p in (Path(first) / "checkpoints").iterdir()) == before


def test_ckpt_path_last_never_takes_another_seeds_run(tmp_path, cache_dir, cfg_train):
    from optimate_pl.config import ConfigError
    from optimate_pl.training.train import train

    common = ["strategy=dl", "data.subset=40", "task_name=dl", "trainer.max_epochs=1"]
    train(cfg_train(tmp_path, *common, "seed=2", "paths.output_dir=" + str(tmp_path / "outputs/dl/seed2")))
    with pytest.raises(ConfigError, match=r"are of runs with another seed \(the newest, .*seed2.*, seed=2; this run "
                                          r"seed=1\)"):
        train(cfg_train(tmp_path, *common, "seed=1", "ckpt_path=last", "paths.output_dir=" + str(tmp_path / "o/b")))
    # Refused in the finished run's own folder: its results stay (they were removed before the resume was checked)
    finished = tmp_path / "outputs/dl/seed2"
    with pytest.raises(ConfigError, match="another seed"):
        train(cfg_train(tmp_path, *common, "seed=1", "ckpt_path=last", f"paths.output_dir={finished}"))
    assert (finished / "metrics.json").is_file() and (finished / "test_results.csv").is_file()
