"""Writes that a crash cannot leave half done, and a lock for work two processes must not do twice.

Every file the framework writes (caches, checkpoints it copies, tables, figures, predictions) goes
through :func:`atomic_open`: a temporary file beside the target, fsynced and renamed over it, created
with the permissions the user's umask gives (shared caches and results stay readable by colleagues).
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    A crash or exception mid-write leaves at most a stray hidden ``*.tmp`` file, never a
    truncated ``path`` that a later run would trust. The file gets ``0o666 & ~umask``, as a plain
    ``open`` would give it (``mkstemp`` alone would make it private to the user).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write text atomically (see :func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (see :func:`atomic_open`)."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


class LockedError(RuntimeError):
    """Another process holds the lock (a non-blocking :func:`file_lock` did not get it)."""


@contextlib.contextmanager
def file_lock(path: str | Path, blocking: bool = True, what: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a ``.lock`` file beside what it guards) while in the block.

    Two processes building the same cache or checkpoint then do the work once: the second waits
    here and finds the result when it gets the lock. POSIX ``flock``: released by the OS if the
    holder dies, so a crash never leaves a stale lock. Where ``fcntl`` is missing it does nothing.
    ``blocking=False`` raises :class:`LockedError` (naming ``what``, default the path) instead of waiting.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(f"{what or path} is in use by another process (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
