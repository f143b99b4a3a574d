"""Process-pool map with a progress bar, used for parsing and featurising thousands of materials."""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm.auto import tqdm


def default_workers() -> int:
    """Worker processes to use: the cores this process may run on (2 on the reference machine)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return max(1, os.cpu_count() or 1)


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
    with ProcessPoolExecutor(max_workers=workers) as pool:
        it: Iterable[Any] = pool.map(fn, items, chunksize=chunksize)
        return list(tqdm(it, total=len(items), desc=desc, disable=disable, leave=False))
