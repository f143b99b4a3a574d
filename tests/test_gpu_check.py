"""benchmarks/gpu_check.py (`make gpu-check`, `make gpu-wheels`): every step of the GPU checklist runs in its
tiny CPU version and lands in the table with numbers; a failing step is recorded and the others go on; the
wheel set for the GPU machine's Python is complete. The GPU version runs only where a GPU is present."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


def _module():
    """benchmarks/gpu_check.py as a module (benchmarks/ is no package)."""
    if "gpu_check" not in sys.modules:
        spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
        module = importlib.util.module_from_spec(spec)
        sys.modules["gpu_check"] = module  # before running it: its dataclasses look their module up
        spec.loader.exec_module(module)
    return sys.modules["gpu_check"]


def _table_rows(text: str) -> dict[int, list[str]]:
    """{step number: [step, result, goal, time, status]} of the main table."""
    rows = {}
    for line in text.split("## Details")[0].splitlines():
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip().strip("|"))]  # "\|" is a pipe in a cell
        if len(cells) == 6 and cells[0].isdigit():
            rows[int(cells[0])] = cells[1:]
    return rows


@pytest.mark.slow
def test_cpu_mode_runs_every_step_with_numbers(tmp_path, cache_dir):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, str(SCRIPT), "check", "--cpu", "--out-dir", str(out), "--work",
                           str(tmp_path / "work"), "--cache", str(cache_dir)], cwd=ROOT, capture_output=True,
                          text=True, timeout=900)
    table = (out / "cpu-smoke.md").read_text()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = _table_rows(table)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 7], table
    for number, (step, result, goal, seconds, status) in rows.items():
        assert status == "ok", (number, status)
        assert re.search(r"\d", result), (number, result)
        assert float(seconds) > 0
    assert "reference" in rows[1][1] and "x" in rows[1][2]  # ratio against the goal
    assert "screen" in rows[2][1] and "bf16-mixed" in rows[3][1] and "trainer=ddp" in rows[4][1]
    assert rows[7][1].startswith("host syncs per training step: DL 0.0, TL 0.0; tiny-network time per step")
    for key in ("torch", "python", "date", "device"):
        assert f"- {key}" in table
    profile = (out / "cpu-smoke-profile.txt").read_text()
    assert "ms/step" in profile and "top operators" in profile
    assert "steps ok" in proc.stdout  # the printed summary


def test_a_failing_step_is_recorded_and_the_others_still_run(tmp_path, monkeypatch):
    gc = _module()
    ctx = gc.Context(gc.settings_for("cpu"), tmp_path, tmp_path / "cache", tmp_path, "CPU")

    def broken(ctx, row):
        row.result = "1 partial number"
        raise RuntimeError("CUDA error: out of memory\nsecond line")

    def fine(ctx, row):
        row.result = "42 graphs/s"

    rows = [gc.run_step(1, "broken", broken, ctx), gc.run_step(2, "fine", fine, ctx)]
    assert rows[0].status == "FAILED: RuntimeError: CUDA error: out of memory" and rows[0].failed
    assert rows[1].status == "ok" and not rows[1].failed
    table = gc.render(rows, {"device": "CPU", "torch": "x"}, ctx.s, 1.0, "p.txt")
    assert "| 1 | broken | 1 partial number | - |" in table and "FAILED: RuntimeError" in table
    assert all("\n" not in line for line in table.splitlines())
    rows[1].result = "|a - b| = 0.01"  # a pipe in a cell stays inside it
    parsed = _table_rows(gc.render(rows, {"device": "CPU"}, ctx.s, 1.0, "p.txt"))
    assert parsed[2][1] == "\\|a - b\\| = 0.01" and parsed[2][4] == "ok"


def test_a_failed_command_raises_with_its_last_line(tmp_path):
    gc = _module()
    with pytest.raises(RuntimeError, match="exit 3: boom"):
        gc.run_command([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], tmp_path / "x.log", 60)
    assert gc.run_command([sys.executable, "-c", "pass"], tmp_path / "y.log", 60) > 0


def _fake_wheel(folder: Path, name: str, version: str, requires: list[str], tag: str = "py3-none-any") -> None:
    dist = f"{name.replace('-', '_')}-{version}"
    meta = "Metadata-Version: 2.1\nName: {}\nVersion: {}\n{}\n\nbody\nRequires-Dist: not-a-header\n".format(
        name, version, "".join(f"Requires-Dist: {r}\n" for r in requires))
    with zipfile.ZipFile(folder / f"{dist}-{tag}.whl", "w") as zf:
        zf.writestr(f"{dist}.dist-info/METADATA", meta)


def test_wheel_check_finds_what_is_missing(tmp_path, monkeypatch):
    gc = _module()
    monkeypatch.setattr(gc, "project_requirements", lambda: ["alpha>=1", "torch>=2.4,<2.14"])
    have = {"torch": "2.11.0", "numpy": "2.5.2"}
    _fake_wheel(tmp_path, "alpha", "1.2", ["beta>=2", "numpy>=1.24", "gamma; python_version < '3.10'",
                                           "delta; extra == 'docs'"])
    assert gc.verify_wheels(tmp_path, have) == ["alpha 1.2 needs beta>=2: neither in the folder nor on the GPU machine"]
    _fake_wheel(tmp_path, "beta", "1.0", ["numpy>=3"])
    problems = gc.verify_wheels(tmp_path, have)
    assert "alpha 1.2 needs beta>=2, the folder holds beta 1.0" in problems
    assert "beta 1.0 needs numpy>=3, the GPU machine holds numpy 2.5.2" in problems
    (tmp_path / "beta-1.0-py3-none-any.whl").unlink()
    _fake_wheel(tmp_path, "beta", "2.0", [], tag="cp311-cp311-win_amd64")
    assert gc.verify_wheels(tmp_path, have) == [
        "beta-2.0-cp311-cp311-win_amd64.whl does not install on CPython 3.12 manylinux x86-64"]


def test_the_wheel_list_covers_what_the_gpu_machine_lacks():
    gc = _module()
    have = gc.preinstalled()
    assert {"torch", "lightning", "torch-geometric", "torchmetrics", "pandas", "pyarrow"} <= set(have)
    missing = {re.split(r"[<>=!~ ;\[]", r)[0] for r in gc.missing_requirements()}
    assert {"hydra-core", "omegaconf", "pymatgen", "matscipy", "ijson"} <= missing
    assert not missing & {"torch", "lightning", "numpy"}


@pytest.mark.skipif(not (ROOT / ".gpu-wheels").is_dir(), reason="no .gpu-wheels folder (make gpu-wheels)")
def test_downloaded_wheel_set_resolves_completely():
    gc = _module()
    assert gc.verify_wheels(ROOT / ".gpu-wheels") == []
    tree, wheels = gc.travelling_mib(ROOT / ".gpu-wheels")
    assert tree + wheels < gc.TRAVEL_LIMIT_MIB


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA GPU")
def test_gpu_profile_step(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "check", "--steps", "6", "--out-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "GPU busy" in next(tmp_path.glob("*-profile.txt")).read_text()
