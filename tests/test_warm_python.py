"""tests/warm_python.py: a command forked from the warm Python behaves as the same command in a new interpreter
(exit code, streams, folder, environment, argv, a crash, a signal, a timeout); each case runs both ways."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import _run

pytestmark = pytest.mark.slow

SCRIPT = """
import os, sys
print("out", sys.argv[1:], os.getcwd(), os.environ.get("WARM_TEST"), sys.path[0] == "", __name__)
print("err line", file=sys.stderr)
import atexit
atexit.register(lambda: print("atexit ran"))
sys.exit(int(sys.argv[1]))
"""


@pytest.mark.parametrize("cold", [False, True], ids=["warm", "cold"])
def test_a_forked_command_is_a_fresh_interpreters(tmp_path, monkeypatch, cold):
    monkeypatch.setenv("WARM_TEST", "yes")
    r = _run([sys.executable, "-c", SCRIPT, "3", "x"], tmp_path, 60, cold=cold)
    assert r.returncode == 3
    assert r.stdout == f"out ['3', 'x'] {tmp_path} yes True __main__\natexit ran\n"
    assert r.stderr == "err line\n"
    # -m: the module's file as argv[0], the folder first on sys.path, an uncaught error as a traceback and exit 1.
    (tmp_path / "mymod.py").write_text("import sys\nprint(sys.argv[0].endswith('mymod.py'), sys.path[0])\n1 / 0\n")
    r = _run([sys.executable, "-m", "mymod", "a"], tmp_path, 60, cold=cold)
    assert r.returncode == 1 and r.stdout == f"True {tmp_path}\n"
    assert r.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    r = _run([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"], tmp_path, 60, cold=cold)
    assert r.returncode == -15
    with pytest.raises(subprocess.TimeoutExpired):
        _run([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(60)"], tmp_path, 3, cold=cold)
