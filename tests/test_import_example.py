"""The "Bring your own spectra" guide's example (docs/guides/own-data.md), run as written: real vasprun.xml files -> TL model -> prediction."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs_blocks import code_block

ROOT = Path(__file__).parents[1]


@pytest.mark.slow
def test_readme_import_example_runs_as_written(tmp_path, cache_dir):
    script = code_block("# 1. import")
    (tmp_path / "tests").symlink_to(ROOT / "tests")  # the example's paths are relative to the repository
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "WANDB_MODE": "offline", "OPTIMATE_PL_CACHE": str(cache_dir)}
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=900)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-3000:]
    assert "imported 2 of 2 materials (2 IPA, 0 RPA entries)" in out
    # IPA spectra only: the hint it prints trains as the guide does, with the built-in ladder's RPA rung
    assert "train on them: python -m optimate_pl strategy=tl data.source=files data.root=my_db/ 'data.extra=[gpaw]'" in out
    assert (tmp_path / "my_run" / "split" / "ipa_train_ids.txt").is_file()
    assert "predicted 2 of 2 materials" in out
    table = (tmp_path / "my_predictions" / "materials.csv").read_text()
    assert table.splitlines()[0].startswith("id,") and "MgSe" in table and "Ge" in table
