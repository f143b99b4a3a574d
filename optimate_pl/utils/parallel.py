"""Process-pool map with a progress bar, used for parsing and featurising thousands of materials, and the
initializer that makes worker processes end with the process that started them."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm.auto import tqdm


def usable_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (a container limited to
    2 CPUs on a larger host sees the host's count in ``os.cpu_count()``, and would start too many processes)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        cores = os.cpu_count() or 1
    quota = None
    try:  # cgroup v2: "max 100000" (no limit) or "<quota> <period>"
        text = open("/sys/fs/cgroup/cpu.max").read().split()
        if text and text[0] != "max":
            quota = int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        try:  # cgroup v1: a quota of -1 is no limit
            q = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
            if q > 0:
                quota = q / int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        except (OSError, ValueError, ZeroDivisionError):
            pass
    if quota:
        cores = min(cores, max(1, int(quota + 0.5)))
    return max(1, cores)


def busy_cores_warning(threads: int, cores: int, others: int, load: float) -> str | None:
    """Why ``threads`` torch threads will crawl on ``cores`` cores while ``others`` other processes are running
    now and the 1-minute load average is ``load``, or ``None`` where they fit.

    Every OpenMP region of a step waits for its slowest thread. With a core taken by another process, even a
    niced one, a training step on this 2-core machine took 1.3 s with 2 threads and 0.08 s with 1
    (benchmarks/cpu_2core.md). Both the running count (now) and the load (sustained) must say so: the load
    alone lags a minute behind commands that already ended."""
    if threads <= 1 or others < 1 or threads <= cores - others or load < cores - threads + 0.75:
        return None
    return (f"{others} other process(es) are running on these {cores} cores (1-minute load {load:.1f}): they hold "
            f"cores that torch's {threads} threads need, and every step waits for a descheduled thread (measured "
            f"on 2 cores: a training step 16x slower). Run with OMP_NUM_THREADS={max(1, cores - others)} (or stop "
            f"the other work)")


def _others_running(samples: int = 5) -> int | None:
    """Runnable threads on the machine besides this one's (``procs_running`` of /proc/stat; the least of a few
    samples 20 ms apart, so that a passing process does not count), or ``None`` without /proc."""
    import time
    from pathlib import Path

    counts = []
    for i in range(samples):
        try:
            text = Path("/proc/stat").read_text()
        except OSError:
            return None
        counts.extend(int(line.split()[1]) for line in text.splitlines() if line.startswith("procs_running"))
        if i + 1 < samples:
            time.sleep(0.02)
    return max(0, min(counts) - 1) if counts else None


def secondary_rank() -> bool:
    """Whether this process is a rank > 0 of a multi-process run (torchrun, Lightning's DDP, SLURM tasks)."""
    return any(int(os.environ.get(k, "0") or 0) > 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))


def cores_busy_message() -> str | None:
    """:func:`busy_cores_warning` for this process now; ``None`` where it cannot tell or it does not apply: a GPU
    run (its threads hardly matter), a rank > 0 of a multi-process run, an allocation of some of the machine's
    cores (a SLURM job or container: the machine's load is not on its cores), no /proc."""
    return _busy_cores()[0]


def _busy_cores() -> tuple[str | None, int]:
    """:func:`cores_busy_message`'s message, and the other processes running now that it counted (0 unsampled)."""
    import torch

    if torch.cuda.is_available() or secondary_rank():
        return None, 0
    cores, threads = usable_cores(), torch.get_num_threads()
    if cores < (os.cpu_count() or cores):
        return None, 0
    try:
        load = os.getloadavg()[0]
    except OSError:
        return None, 0
    if busy_cores_warning(threads, cores, cores, load) is None:  # not even with every core busy: no need to sample
        return None, 0
    others = _others_running()
    return (None, 0) if others is None else (busy_cores_warning(threads, cores, others, load), others)


def fit_threads_to_free_cores() -> str | None:
    """Where other processes hold cores (:func:`cores_busy_message`), run torch on the cores left free instead of
    waiting on descheduled threads, and say so; only a warning where the user chose the count (OMP_NUM_THREADS).
    Returns the message logged, or ``None`` where nothing applied."""
    import torch

    busy, others = _busy_cores()  # /proc sampled once
    if busy is None:
        return None
    if os.environ.get("OMP_NUM_THREADS"):
        return busy
    before, threads = torch.get_num_threads(), max(1, usable_cores() - others)
    torch.set_num_threads(threads)
    return (f"{others} other process(es) are running on these {usable_cores()} cores: using {threads} torch "
            f"thread(s) instead of {before}, since each step waits for its slowest thread (on 2 cores a training "
            f"step was 16x slower with 2 threads beside a DFT worker). The thread count changes a CPU run's numbers "
            f"slightly (metrics.json records it as torch_threads): set OMP_NUM_THREADS to choose it and repeat a run "
            f"exactly")


def default_workers() -> int:
    """Worker processes to use: the cores this process may use (:func:`usable_cores`; 2 on the reference machine)."""
    return usable_cores()


def exit_with_parent(parent: int) -> None:
    """Initializer of worker processes: the worker ends when the process ``parent`` that started it dies.

    A ``kill -9`` of the command would otherwise leave its workers (and, through them, multiprocessing's
    resource tracker) running forever, re-parented and blocked on their task queue. On Linux the kernel
    kills the worker with its parent (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread checks
    twice a second that the parent is still there.
    """
    import os
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
        except (OSError, AttributeError):  # no libc prctl: the thread below does it
            pass
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def parallel_map(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None,
                 desc: str = "", chunksize: int | None = None, progress: bool = True) -> list[Any]:
    """``[fn(x) for x in items]`` over ``workers`` processes, order preserved, with a progress bar.

    Small inputs (or ``workers <= 1``) run in-process: a pool costs more than it saves there.
    ``fn`` must be a picklable top-level function.
    """
    workers = default_workers() if workers is None else workers
    disable = not progress or len(items) < 200
    if workers <= 1 or len(items) < 64:
        return [fn(x) for x in tqdm(items, desc=desc, disable=disable, leave=False)]
    chunksize = chunksize or max(1, min(256, len(items) // (workers * 8)))
    # The workers end with this process, also when it is killed (kill -9) and cannot shut them down.
    with ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        it: Iterable[Any] = pool.map(fn, items, chunksize=chunksize)
        return list(tqdm(it, total=len(items), desc=desc, disable=disable, leave=False))
