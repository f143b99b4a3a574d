"""Every mistake a user can make in a command's settings, as one table: a one-line error naming the key and
the fix, exit code 2, no traceback (the traceback only with verbose_errors=true)."""
import pytest
from omegaconf import open_dict

from optimate_pl.config import ConfigError, resolve_config

#: (overrides, the message's words): checked by resolve_config, in-process (what every command calls once).
CONFIG_ERRORS = [
    (["data.subset=2.5"], "data.subset: Value '2.5' of type 'float' could not be converted to Integer"),
    (["data.subset=0"], "data.subset=0: must be at least 1"),
    (["optimizer.lr=-1"], "optimizer.lr=-1: must be positive"),
    (["trainer.max_epochs=-5"], "trainer.max_epochs=-5: must be at least -1"),
    (["trainer.accelerator=gpu"], "no CUDA GPU is visible on this machine: use trainer=cpu"),
    (["strategy=tl", "strategy.checkpoint=/nope.ckpt"], "strategy.checkpoint=/nope.ckpt does not exist"),
    (["data.source=figshare"], "data.source=figshare needs data.root"),
    (["data.source=zenodo"], "unknown data.source 'zenodo'"),
    (["data.target=gaps"], "data.target=gaps: use eps_imag (spectra) or sc_rpa_ipa"),
    (["strategy=dl", "trainer.max_epochs=0"], "trainer.max_epochs=0 trains nothing"),
    (["strategy=mf", "data.rpa_repeat=0"], "data.rpa_repeat=0: must be at least 1"),
    (["strategy=mf", "data.rpa_repeat=two"], "data.rpa_repeat: Value 'two' of type 'str' could not be converted"),
]

#: (command, arguments, the first line's words): the whole command in a subprocess.
COMMAND_ERRORS = [
    ("train", ["data.subsett=3"], "unknown setting data.subsett; did you mean data.subset?"),
    ("train", ["strategy=bogus"], "no strategy named 'bogus'; Available options: dl, ipa, mf, mf_ipa, sc, tl"),
    ("train", ["hydra.run.dir={tmp}/afile/run"], "cannot write the output folder"),
    ("train", ["data.subset=2.5"], "data.subset: Value '2.5' of type 'float' could not be converted to Integer"),
    ("train", ["strategy=tl", "strategy.checkpoint=/nope.pt"], "strategy.checkpoint=/nope.pt does not exist"),
    ("train", ["compile_edges=maybe"], "compile_edges must be true, false or auto, got 'maybe'"),
    ("train", ["strategy=dl", "data.subset=999999", "{fast}"], "larger than the training set"),
    ("predict", ["input=x"], "checkpoint is required"),
    ("predict", ["checkpoint={tmp}/empty.pt", "input=x"], "the file is empty (0 bytes)"),
    ("predict", ["checkpoint={tmp}/nope.pt", "input=x"], "no such file"),
]


@pytest.mark.parametrize("overrides,message", CONFIG_ERRORS, ids=[" ".join(o) for o, _ in CONFIG_ERRORS])
def test_resolve_config_refuses_in_one_line(tmp_path, cfg_train, overrides, message):
    with pytest.raises(ConfigError) as err:
        resolve_config(cfg_train(tmp_path, *overrides))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_an_unknown_strategy_name_is_refused(tmp_path, cfg_train):
    cfg = cfg_train(tmp_path)
    with open_dict(cfg):
        cfg.strategy.name = "bogus"
    with pytest.raises(ConfigError, match="unknown strategy 'bogus'; use strategy=ipa, dl, tl, sc or mf"):
        resolve_config(cfg)


@pytest.mark.parametrize("command,args,message", COMMAND_ERRORS, ids=[f"{c} {' '.join(a)}" for c, a, _ in COMMAND_ERRORS])
def test_commands_end_a_mistake_in_one_line_with_exit_code_2(tmp_path, cli, predict_cli, fast, command, args, message):
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "afile").write_text("x")
    argv = []
    for a in args:
        argv += fast if a == "{fast}" else [a.format(tmp=tmp_path)]
    if command == "train":
        r = cli(*argv, f"paths.root_dir={tmp_path}", cwd=tmp_path)
    else:
        r = predict_cli(*argv, cwd=tmp_path)
    # One error line (a first run may log its data set-up before it); the hint to verbose_errors may follow.
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 2 and len(errors) == 1 and message in errors[0], (argv, r.stderr[-1500:])
    assert "Traceback" not in r.stderr


def test_verbose_errors_show_the_traceback(tmp_path, cli):
    r = cli("data.subset=2.5", "verbose_errors=true", cwd=tmp_path)
    assert r.returncode != 0 and "Traceback" in r.stderr


@pytest.mark.parametrize("args", [["strategy=bogus"], ["data.subsett=3"], ["data.subset=0"], ["compile_edges=maybe"],
                                  ["strategy=tl", "strategy.checkpoint=/nope.pt"]])
def test_a_settings_mistake_is_answered_before_torch_loads(tmp_path, args):
    """A mistake in the settings is said within a second or two: before torch, PyG and Lightning load (~10 s)."""
    import subprocess
    import sys

    probe = ("import atexit, runpy, sys; atexit.register(lambda: print('torch loaded:', 'torch' in sys.modules, "
             "file=sys.stderr)); sys.argv = ['optimate_pl', *sys.argv[1:]]; runpy.run_module('optimate_pl', "
             "run_name='__main__')")
    r = subprocess.run([sys.executable, "-c", probe, *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("error: ") == 1, r.stderr[-2000:]
    assert "torch loaded: False" in r.stderr, r.stderr[-2000:]
