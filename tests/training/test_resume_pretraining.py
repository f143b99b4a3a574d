"""Resuming the stages a run starts by itself: TL's automatic IPA pretraining goes on where it was interrupted (it
once started again at epoch 0, and its resume hint pointed a TL run at the IPA checkpoint); a data mistake is said
before the pretraining; ``ckpt_path=last`` never takes a debugging run's checkpoint for a real run."""
from __future__ import annotations

import logging
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
