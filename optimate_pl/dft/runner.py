"""Running the GPAW worker for one material and bringing its response onto the 2001-point grid.

GPAW need not be importable in this environment: the worker (``gpaw_worker.py``) runs as its own
process under any Python that has it, found by :func:`gpaw_python` (this interpreter if it has GPAW,
else Debian's ``/usr/bin/python3`` from ``apt-get install gpaw gpaw-data``). Each worker is one serial
GPAW on one core (BLAS/OpenMP threads pinned to 1), niced, with a wall-clock limit.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from ..spectra.grid import ENERGY_GRID
from .settings import LadderSettings

WORKER = Path(__file__).with_name("gpaw_worker.py")
#: The worker's exit code for "not an insulator for the ladder" (see gpaw_worker.NOT_AN_INSULATOR).
NOT_AN_INSULATOR = 3
CANDIDATE_PYTHONS = ("/usr/bin/python3",)


class GPAWNotFound(RuntimeError):
    """No Python with GPAW and its PAW setups could be found."""


class MaterialFailed(RuntimeError):
    """One material could not be computed; ``reason`` is a short code, the message says why."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def worker_env() -> dict[str, str]:
    """The environment of a GPAW process: one BLAS/OpenMP thread, and no SLURM/PMI variables.

    Debian's GPAW initialises OpenMPI on import; inside a SLURM job step OpenMPI would then try to join
    the job through PMI (which Debian's OpenMPI is not built for) and fail, so every worker starts as a
    singleton (``mpi_procs`` ranks come from its own ``mpiexec``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PMI_", "PMIX_", "OMPI_MCA_ess"))}
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _has_gpaw(python: str) -> str | None:
    """GPAW's version under ``python`` if GPAW and its PBE setups import there, else None."""
    probe = ("import gpaw, gpaw.setup_data as s; s.SetupData('H', 'PBE', 'paw'); print(gpaw.__version__)")
    try:
        out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, env=worker_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def gpaw_python(configured: str | None = None) -> tuple[str, str]:
    """The interpreter that runs the worker and its GPAW version: ``configured``, this one, or Debian's."""
    candidates = [configured] if configured and configured != "auto" else [sys.executable, *CANDIDATE_PYTHONS]
    for python in candidates:
        version = _has_gpaw(python)
        if version:
            return python, version
    raise GPAWNotFound(
        "no Python with GPAW and its PAW setups found (tried " + ", ".join(candidates) + "): on Debian "
        "`apt-get install gpaw gpaw-data` (for /usr/bin/python3), or set gpaw_python=/path/to/python")


def structure_task(structure, settings: LadderSettings, level: str) -> dict:
    """The worker's input for a pymatgen ``Structure``: numbers, cell and Cartesian positions in Å."""
    if not structure.is_ordered:
        raise MaterialFailed("disordered", "disordered structure (partial occupancies or vacancies): DFT needs an ordered cell")
    return {"numbers": [site.specie.Z for site in structure], "cell": structure.lattice.matrix.tolist(),
            "positions": structure.cart_coords.tolist(), "settings": settings.as_dict(), "level": level}


@dataclass
class RungResult:
    """One material's computed rungs on :data:`ENERGY_GRID`.

    ``ipa``/``rpa``: complex ε per Cartesian direction, shape (3, 2001) (``rpa`` None for level ipa);
    ``cell``/``positions``: the (symmetrised) structure the rungs were computed for.
    """

    ipa: np.ndarray
    rpa: np.ndarray | None
    gap_indirect: float
    gap_direct: float
    cell: np.ndarray
    positions: np.ndarray
    info: dict = field(default_factory=dict)
    times: dict = field(default_factory=dict)
    #: the RPA rung with only the G-vectors within half the local-field cutoff (convergence check)
    rpa_half: np.ndarray | None = None

    @property
    def core_seconds(self) -> float:
        """Core-seconds of the worker: its CPU time (one serial process)."""
        return float(self.times["total"])


def to_grid(omega: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """Complex ε on GPAW's frequencies (eV) -> :data:`ENERGY_GRID` by cubic interpolation.

    GPAW's non-linear grid is 0.05 eV apart at 0 and twice that at 20 eV, much finer than the 0.3 eV
    broadening, so a cubic spline loses nothing visible; Im ε is clipped at 0 (the spline may
    undershoot by ~1e-4 where it vanishes below the gap).
    """
    from scipy.interpolate import CubicSpline

    if omega[-1] < ENERGY_GRID[-1]:
        raise MaterialFailed("response_range", f"GPAW's frequency grid ends at {omega[-1]:.2f} eV < 20 eV "
                                               "(too few empty bands)")
    out = CubicSpline(omega, eps, axis=-1)(ENERGY_GRID)
    out.imag = np.clip(out.imag, 0.0, None)
    return out


def _worker_setup(nice: int) -> None:
    """In the worker before exec: lower its priority, and have the kernel kill it if our process dies
    (a ``kill -9`` of the command must not leave GPAW running for hours)."""
    if nice:
        os.nice(nice)
        # The worker is its own session (start_new_session), and with the kernel's autogroups (Linux's default
        # for sessions) a new session is its own scheduling group: a nice value then only ranks processes inside
        # that group, and each worker got a full core's share against the user's tests and trainings. The
        # group's own nice is what makes the worker yield. Best effort: no autogroups, no file.
        try:
            with open("/proc/self/autogroup", "w") as group:
                group.write(str(nice))
        except OSError:
            pass
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


#: Seconds between the checks of a worker's time limit.
POLL_S = 1.0

#: The worker processes running now (their process groups), so that a Ctrl-C of the command stops them all: the
#: workers run in the threads of the compute command, and only its main thread sees the KeyboardInterrupt.
_RUNNING: set[int] = set()
_STOPPED: set[int] = set()
_LOCK = threading.Lock()


class WorkerStopped(RuntimeError):
    """The worker was stopped by :func:`stop_workers` (the command was interrupted): nothing to record."""


def stop_workers() -> int:
    """Kill every running worker's process group; returns how many there were."""
    with _LOCK:
        pids = list(_RUNNING)
        _STOPPED.update(pids)
    for pid in pids:
        try:
            os.killpg(pid, 9)
        except ProcessLookupError:
            pass
    return len(pids)


def _stopped(pid: int) -> bool:
    """Whether the process is stopped (SIGSTOP/SIGTSTP: state T or t in /proc); False where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] in "Tt"


#: A worker may take this many times its time limit in wall-clock seconds (pauses excluded) even while it has used
#: less computing time: one that hangs without computing (a lost MPI rank, a full disk) is still stopped.
WALL_FACTOR = 8


def cpu_seconds(process) -> float:
    """CPU seconds (user + system) of a ``psutil.Process`` and its descendants (the ranks under mpiexec): the living
    ones', and those of the children each has already waited for."""
    import psutil

    total = 0.0
    try:
        family = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0.0
    for member in family:
        try:
            times = member.cpu_times()
        except psutil.Error:  # exited between the listing and the reading
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def communicate_within(proc: subprocess.Popen, time_limit: float | None, procs: int = 1) -> tuple[str, str]:
    """``proc.communicate()`` with a limit on the worker's computing time: raises ``TimeoutExpired`` once the CPU
    seconds of the worker and its descendants, per rank (``procs``), exceed ``time_limit``, i.e. what the material
    would take on idle cores. Neither a pause (``kill -STOP`` of the compute run, to time something else) nor
    sharing the cores with other jobs uses it up: counting wall time, a 46-minute pause failed two good materials,
    and a niced worker beside two trainings reached 60 minutes on a 6-site cell after 16 minutes of computing. A
    worker that runs :data:`WALL_FACTOR` times the limit in wall-clock time (pauses excluded) is stopped anyway.
    Under mpiexec, ranks that wait for each other busy-poll (OpenMPI's default) and so count as computing."""
    if time_limit is None:
        return proc.communicate()
    import psutil

    try:
        process = psutil.Process(proc.pid)
    except psutil.NoSuchProcess:  # already gone: nothing left to limit
        return proc.communicate()
    wall, last = 0.0, time.monotonic()
    while True:
        try:
            return proc.communicate(timeout=POLL_S)
        except subprocess.TimeoutExpired:
            now = time.monotonic()
            step, last = now - last, now
            if step <= 3 * POLL_S and not _stopped(proc.pid):
                wall += step
            if cpu_seconds(process) / max(procs, 1) > time_limit or wall > WALL_FACTOR * time_limit:
                raise


def run_material(structure, settings: LadderSettings, level: str = "both", *, python: str | None = None,
                 time_limit: float | None = None, scratch: str | None = None, nice: int = 10,
                 mpi_procs: int = 1) -> RungResult:
    """Compute the rungs of one structure in a GPAW worker process; raises :class:`MaterialFailed`.

    ``mpi_procs > 1`` runs the worker under ``mpiexec`` with that many ranks (GPAW's own parallelisation
    over k-points and frequencies; Debian's GPAW is built with OpenMPI).
    """
    if level not in ("ipa", "both"):
        raise ValueError(f"level must be 'ipa' or 'both', got {level!r}")
    python = python or gpaw_python()[0]
    task = structure_task(structure, settings, level)
    env = worker_env()
    with tempfile.TemporaryDirectory(prefix="optimate-dft-", dir=scratch) as tmp:
        task["scratch"] = tmp
        task_path, out_path = Path(tmp, "task.json"), Path(tmp, "result.npz")
        task_path.write_text(json.dumps(task))
        cmd = [python, str(WORKER), str(task_path), str(out_path)]
        if mpi_procs > 1:
            mpiexec = shutil.which("mpiexec")
            if mpiexec is None:
                raise GPAWNotFound("mpi_procs > 1 needs mpiexec (Debian: openmpi-bin, installed with gpaw)")
            cmd = [mpiexec, "-n", str(mpi_procs), *cmd]
            # OpenMPI refuses root unless told (CI and containers run as root)
            env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        t0 = time.perf_counter()
        try:
            # start_new_session: a time-out kills the worker's whole process group, nothing lingers
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                    preexec_fn=partial(_worker_setup, nice), start_new_session=True)
            with _LOCK:
                _RUNNING.add(proc.pid)
            try:
                _, err = communicate_within(proc, time_limit, mpi_procs)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.communicate()
                raise MaterialFailed("time_limit", f"exceeded the time limit of {time_limit:g} s of computing per "
                                                   f"rank (or {WALL_FACTOR}x that on the clock)") from None
            except BaseException:  # Ctrl-C or SIGTERM of the command: take the worker down with it
                os.killpg(proc.pid, 9)
                raise
            finally:
                with _LOCK:
                    _RUNNING.discard(proc.pid)
                    stopped = proc.pid in _STOPPED
                    _STOPPED.discard(proc.pid)
            if stopped:
                raise WorkerStopped("stopped with the command")
        finally:
            wall = time.perf_counter() - t0
        if proc.returncode == NOT_AN_INSULATOR:
            raise MaterialFailed("not_insulator", err.strip().splitlines()[-1] if err.strip() else "not an insulator")
        if proc.returncode != 0 or not out_path.exists():
            last = [line for line in err.strip().splitlines() if line.strip()][-1:] or [f"exit code {proc.returncode}"]
            raise MaterialFailed("gpaw_error", f"GPAW failed: {last[0][:300]}")
        with np.load(out_path, allow_pickle=False) as r:
            res = {k: r[k] for k in r.files}
    omega = res["omega_eV"]
    times = json.loads(str(res["times"]))
    times["total"] = times.pop("cpu_total", wall)  # CPU seconds of the worker (imports and set-up included)
    times["wall"] = wall
    info = {k: (res[k].tolist() if res[k].ndim else res[k].item()) for k in
            ("n_bands", "n_occupied", "n_kpts_ibz", "kpts_nscf", "kpts_gs", "bands_reach_eV", "n_G", "n_symmetries")}
    if "response_cutoff_eV" in res:  # the cutoff used: raised by the G-vector floor in small cells
        info["response_cutoff_eV"] = float(res["response_cutoff_eV"])
    if "iterations" in res:  # SCF iterations per stage (what a tolerance or eigensolver change acts on)
        info["scf_iterations"] = json.loads(str(res["iterations"]))
    info["gpaw_version"] = str(res["gpaw_version"])
    info["mpi_ranks"] = int(res["mpi_ranks"]) if "mpi_ranks" in res else 1
    return RungResult(ipa=to_grid(omega, res["ipa"]), rpa=to_grid(omega, res["rpa"]) if "rpa" in res else None,
                      gap_indirect=float(res["gap_indirect_eV"]), gap_direct=float(res["gap_direct_eV"]),
                      cell=res["cell"], positions=res["positions"], info=info, times=times,
                      rpa_half=to_grid(omega, res["rpa_half_cutoff"]) if "rpa_half_cutoff" in res else None)


def which_gpaw_python() -> str | None:
    """Path of a Python with GPAW, or None (for tests that skip without GPAW)."""
    try:
        return gpaw_python()[0]
    except GPAWNotFound:
        return None


__all__ = ["GPAWNotFound", "MaterialFailed", "RungResult", "WorkerStopped", "gpaw_python", "run_material",
           "stop_workers", "to_grid", "which_gpaw_python"]
