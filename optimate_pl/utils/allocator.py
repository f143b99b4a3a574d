"""The C allocator setting that keeps CPU training from page-faulting its activations in anew every step.

A training step of OPTIMATE allocates and frees hundreds of MiB of activations (per-edge tensors of
``E x heads x channels`` floats). glibc returns freed memory at the top of its heap to the OS as soon
as more than a few tens of MiB are free, so the next step touches fresh pages again: on a 2-core CPU
that page-faulting costs about a third of the step time. Serving blocks up to 32 MiB from the heap
(glibc's largest ``M_MMAP_THRESHOLD``) and trimming the heap only beyond ``M_TRIM_THRESHOLD`` lets freed
activations be reused: kept, not additionally allocated (peak RSS of a TL run +6 %, from fragmentation).
The reference-style loop of ``benchmarks/bench.py`` runs without it, which is most of the difference
measured there.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

# From glibc's <malloc.h>.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: The largest mmap threshold glibc accepts on 64-bit systems (HEAP_MAX_SIZE / 2).
MAX_MMAP_THRESHOLD = 32 * 2**20


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") else None  # musl and others have no mallopt


def keep_freed_memory(nbytes: int) -> bool:
    """Let the C allocator keep up to ``nbytes`` of freed heap memory for reuse.

    Blocks up to 32 MiB are then served from the heap, and the heap is returned to the OS only
    when more than ``nbytes`` of it are free. Returns ``True`` when applied (Linux with glibc);
    elsewhere it does nothing and returns ``False``. The setting lasts for the process.
    """
    libc = _libc()
    if libc is None or nbytes <= 0:
        return False
    ok = libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(MAX_MMAP_THRESHOLD))
    ok &= libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(min(int(nbytes), 2**31 - 1)))
    if ok:
        log.debug("malloc: blocks <= 32 MiB from the heap, trim beyond %d MiB", nbytes >> 20)
    return bool(ok)
