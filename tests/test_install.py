"""Hydra finds the packaged configs (pkg://optimate_pl.conf) from a regular, non-editable install too."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CHECK = """
import optimate_pl, sys
from hydra import compose, initialize_config_module
assert optimate_pl.__file__.startswith(sys.argv[1]), optimate_pl.__file__
with initialize_config_module("optimate_pl.conf", version_base="1.3"):
    cfg = compose("train", overrides=["strategy=dl", "data.subset=300"])
print(cfg.strategy.name, cfg.data.batch_size, sorted(__import__("os").listdir(sys.argv[1] + "/optimate_pl/conf/model")))
"""


@pytest.mark.slow
def test_regular_install_ships_the_configs(tmp_path):
    target = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(REPO)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    r = subprocess.run([sys.executable, "-c", CHECK, str(target)], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.startswith("dl 20 [")
    assert all(f"'{name}.yaml'" in r.stdout for name in ("dl_100", "ipa", "optimate", "dimenet", "visnet"))
    # The console script's module resolves too (the editable install is what the rest of the suite uses).
    r = subprocess.run([sys.executable, "-m", "optimate_pl", "--help"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0 and "strategy: dl, ipa, mf, mf_ipa, sc, tl" in r.stdout
