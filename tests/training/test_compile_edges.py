"""compile_edges=auto: the GATv2 edge work is compiled only where its ~10 s of compilation pays back."""
import shutil
from types import SimpleNamespace

import lightning.pytorch as pl
import pytest

from optimate_pl.config import ConfigError
from optimate_pl.training.train import AUTO_EDGE_STEPS, compile_edges_decision


def _trainer(**kwargs):
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, **kwargs)


#: The main command's IPA pretraining: 7742 training materials in batches of 128, 20 epochs = 1220 steps.
IPA = SimpleNamespace(train_set=range(7742), batch_size=128)


def test_auto_compiles_long_cpu_runs_only():
    on, why = compile_edges_decision("auto", _trainer(max_epochs=20), IPA)
    assert (on, why) == ((True, "1220 training steps on a CPU") if shutil.which("g++") or shutil.which("c++")
                         else (False, "no C++ compiler found"))
    # TL at 300 materials, batch 128, 300 epochs: 3 batches an epoch, 900 steps.
    assert compile_edges_decision("auto", _trainer(max_epochs=300),
                                  SimpleNamespace(train_set=range(300), batch_size=128))[1].startswith("900 ")
    # A quick preset (max_steps=300) and a test run (2 epochs of 100 in batches of 16: 14 steps) stay eager.
    assert compile_edges_decision("auto", _trainer(max_epochs=10000, max_steps=300), IPA) == (
        False, f"300 training steps < {AUTO_EDGE_STEPS}")
    assert compile_edges_decision("auto", _trainer(max_epochs=2), SimpleNamespace(train_set=range(100), batch_size=16)
                                  ) == (False, f"14 training steps < {AUTO_EDGE_STEPS}")
    assert compile_edges_decision("auto", _trainer(fast_dev_run=True), IPA) == (False, "not a single-process CPU run")


def test_explicit_settings_win_and_a_typo_is_named():
    assert compile_edges_decision(True, _trainer(fast_dev_run=True), IPA) == (True, "asked for")
    assert compile_edges_decision(False, _trainer(max_epochs=500), IPA) == (False, "asked for")
    with pytest.raises(ConfigError, match="compile_edges must be true, false or auto, got 'yes please'"):
        compile_edges_decision("yes please", _trainer(max_epochs=20), IPA)
