"""The tests' commands, forked from one warm Python instead of started cold.

Every ``python -m optimate_pl ...`` a test runs first imports the same libraries: Lightning alone takes ~7 s on
the 2-core CI machine (torch, torch._dynamo, torchmetrics' scipy.signal and matplotlib), PyG, pymatgen, Hydra and
W&B ~3 s more, in each command process (one full run of the suite had 143 Python processes, 47 of them importing
Lightning). A :class:`WarmPython` imports them once per pytest worker; each command is then a fork of it that runs
``-m module args`` (or ``-c code args``) as a fresh interpreter would: its own process and session, working
folder, environment, argv, ``sys.path[0]``, stdin from /dev/null, stdout and stderr captured, exit code from
``sys.exit`` or its signal, atexit handlers run. Only the already-imported modules are shared (as they are with any
forked worker). Tests of the process itself (signals, DDP launches, the installed console scripts) keep starting
real interpreters.

Not a library feature: the standard library's ``multiprocessing.forkserver`` forks workers that run functions, not
commands with their own argv, folder and file descriptors; this is that protocol in ~100 lines.
"""
from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

#: Imported once by the server: what the commands under test import (measured: ~10 s of each cold start).
PRELOAD = ("lightning", "torch_geometric", "torchmetrics", "pymatgen.core", "hydra", "omegaconf", "wandb",
           "matplotlib", "pandas", "scipy.stats")


class WarmPython:
    """A server process with :data:`PRELOAD` imported; :meth:`run` forks a command from it (one at a time)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._log = Path(tempfile.gettempdir()) / f"optimate-pl-warm-python-{os.getpid()}.log"

    def _start(self) -> subprocess.Popen:
        if self._proc is None or self._proc.poll() is not None:
            with open(self._log, "wb") as log:  # the server's own output: its import errors, if any
                self._proc = subprocess.Popen([sys.executable, __file__, "serve"], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, stderr=log, bufsize=0,
                                              cwd=tempfile.gettempdir())
        return self._proc

    def _reply(self, key: str):
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the warm Python ended (its log: {self._log}); OPTIMATE_PL_TEST_COLD=1 starts the "
                               "tests' commands without it")
        return json.loads(line)[key]

    def run(self, argv: list[str], cwd, env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
        """``argv`` = ``[python, "-m", module, *args]`` or ``[python, "-c", code, *args]``, as
        :func:`subprocess.run` with ``capture_output=True, text=True`` would run it."""
        if len(argv) < 3 or argv[1] not in ("-m", "-c"):
            raise ValueError(f"WarmPython runs '-m module' or '-c code' commands, not {argv[:2]}")
        proc = self._start()
        with tempfile.TemporaryDirectory() as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            proc.stdin.write(json.dumps({"argv": argv[1:], "cwd": str(cwd), "env": env, "stdout": str(out),
                                         "stderr": str(err)}).encode() + b"\n")
            # Unbuffered reads (a byte at a time): nothing of the second reply is read ahead of the select below.
            pid = self._reply("pid")
            ready, _, _ = select.select([proc.stdout], [], [], timeout)
            if not ready:  # as subprocess.run: kill it (its whole session here) and raise
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            code = self._reply("returncode")
            stdout, stderr = (p.read_text(errors="replace") if p.exists() else "" for p in (out, err))
        if not ready:
            raise subprocess.TimeoutExpired(argv, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(argv, code, stdout, stderr)

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


def _serve() -> dict:
    """The server: import :data:`PRELOAD`, then fork a child per request and report its pid and exit code.
    Returns (in the child only) the request the child is to run."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            return request
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)
    sys.exit(0)


def _become(request: dict) -> None:
    """In the forked child: take the command's session, folder, environment and file descriptors, then run it."""
    os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path, flags in ((0, os.devnull, os.O_RDONLY), (1, request["stdout"], os.O_WRONLY | os.O_CREAT),
                            (2, request["stderr"], os.O_WRONLY | os.O_CREAT)):
        new = os.open(path, flags, 0o600)
        os.dup2(new, fd)
        os.close(new)
    # New text streams on the new descriptors, unbuffered as PYTHONUNBUFFERED=1 makes them.
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.FileIO(0, "r", closefd=False))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), write_through=True,
                                                   line_buffering=True)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), write_through=True,
                                                   line_buffering=True, errors="backslashreplace")
    flag, target, *args = request["argv"]
    if flag == "-m":
        import runpy

        sys.argv = [target, *args]  # run_module puts the module's file into argv[0], as `python -m` does
        sys.path[0] = os.getcwd()
        runpy.run_module(target, run_name="__main__", alter_sys=True)
    else:
        sys.argv = ["-c", *args]
        sys.path[0] = ""
        import types

        main = sys.modules["__main__"] = types.ModuleType("__main__")  # a clean __main__, as `python -c` has
        exec(compile(target, "<string>", "exec"), main.__dict__)


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        if Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
            sys.path[0] = ""  # not tests/ (its folders data/, models/... are no top-level packages)
        _become(_serve())
        sys.exit(0)  # then the interpreter exits as a fresh one would: atexit handlers, flushed streams
