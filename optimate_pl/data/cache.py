"""On-disk cache of featurised databases: fingerprinted by what produced them, written atomically."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator

import torch


def default_cache_dir() -> Path:
    """``$OPTIMATE_PL_CACHE`` or ``~/.cache/optimate_pl``."""
    return Path(os.environ.get("OPTIMATE_PL_CACHE", Path.home() / ".cache" / "optimate_pl"))


def fingerprint(parts: dict[str, Any]) -> str:
    """A stable hash of everything that determines a cached dataset."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def code_hash(*modules) -> str:
    """Hash of the source files of ``modules``: a cache built by older code is never reused."""
    h = hashlib.sha256()
    for m in modules:
        h.update(Path(m.__file__).read_bytes())
    return h.hexdigest()[:16]


def source_stats(path: str | Path) -> list:
    """(relative name, size, mtime_ns) of a database file or of every JSON file in a folder.

    Stat-based like ``make``: any added, removed, resized or touched file changes the fingerprint,
    without reading gigabytes on every cached load.
    """
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return [[path.name, st.st_size, st.st_mtime_ns]]
    out = []
    for p in sorted(path.rglob("*.json")):
        st = p.stat()
        out.append([str(p.relative_to(path)), st.st_size, st.st_mtime_ns])
    return out


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    A crash or exception mid-write leaves at most a stray hidden ``*.tmp`` file, never a
    truncated ``path`` that a later run would trust.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def file_lock(path: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a ``.lock`` file beside what it guards) while in the block.

    Two processes building the same cache or checkpoint then do the work once: the second waits
    here and finds the result when it gets the lock. POSIX ``flock``: released by the OS if the
    holder dies, so a crash never leaves a stale lock. Where ``fcntl`` is missing it does nothing.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write text atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
