"""Writes that a crash cannot leave half done, and a lock for work two processes must not do twice.

Every file the framework writes (caches, checkpoints it copies, tables, figures, predictions) goes
through :func:`atomic_open`: a temporary file beside the target, fsynced and renamed over it, created
with the permissions the user's umask gives (shared caches and results stay readable by colleagues).
A full disk (or quota) becomes a :class:`DiskFullError` naming the folder and about how much the
write needed, with nothing partial left behind. Files that later runs reuse without rebuilding them
(caches, automatic checkpoints) are written with ``checksum=True``: a sidecar ``<name>.sha256``
records their size and hash, and :func:`verify_file` tells a damaged one from a good one.
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Iterator

#: errno values of a full file system or an exhausted quota.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
CHECKSUM_SUFFIX = ".sha256"


class DiskFullError(OSError):
    """A write failed for lack of space; ``str()`` is one line naming the folder and the space needed."""

    def __init__(self, message: str, errno_: int = errno.ENOSPC, filename: str | None = None) -> None:
        super().__init__(errno_, message, filename)
        self.message = message

    def __str__(self) -> str:
        return self.message


def human_bytes(n: float) -> str:
    """``1536 -> '1.5 KiB'``."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def no_space_cause(err: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT ``OSError`` in ``err`` or its chain of causes (libraries wrap it), else ``None``."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in NO_SPACE:
            return err
        err = err.__cause__ or err.__context__
    return None


def _free_space(folder: Path) -> str:
    for candidate in (folder, *folder.parents):
        try:
            return human_bytes(shutil.disk_usage(candidate).free)
        except OSError:
            continue
    return "unknown"


def disk_full_error(err: BaseException, folder: str | Path | None = None, needed: int | None = None,
                    what: str | None = None) -> DiskFullError | None:
    """A :class:`DiskFullError` for ``err`` when it (or its cause) is a full disk or quota, else ``None``.

    ``folder`` is where the write went (default: the folder of the error's file name); ``needed``
    about how many bytes the write needed; ``what`` the file (default: the error's file name).
    """
    if isinstance(err, DiskFullError):
        return err
    cause = no_space_cause(err)
    if cause is None:
        return None
    if isinstance(cause, DiskFullError):
        return cause
    filename = what or (os.fsdecode(cause.filename) if cause.filename else None)
    if folder is None and filename:
        folder = Path(filename).parent
    folder = Path(folder) if folder is not None else None
    where = f"the folder {folder}" if folder is not None else "a folder this run writes to"
    kind = "quota exceeded" if cause.errno == errno.EDQUOT else "no space left on the device"
    need = f"; writing {Path(filename).name if filename else 'a file'} needed about {human_bytes(needed)}" \
        if needed else (f" (writing {Path(filename).name})" if filename else "")
    free = f" ({_free_space(folder)} free)" if folder is not None else ""
    return DiskFullError(f"{kind}: {where}{free}{need}. Free some space there or choose another folder; "
                         f"nothing partial was kept", cause.errno, filename)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def checksum_path(path: str | Path) -> Path:
    """``store.pt`` -> ``store.pt.sha256``: the sidecar holding a file's size and SHA-256."""
    path = Path(path)
    return path.with_name(path.name + CHECKSUM_SUFFIX)


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", checksum: bool = False,
                size_hint: int | None = None) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success fsync and rename it over ``path``.

    A crash or exception mid-write leaves at most a stray hidden ``*.tmp`` file, never a
    truncated ``path`` that a later run would trust. The file gets ``0o666 & ~umask``, as a plain
    ``open`` would give it (``mkstemp`` alone would make it private to the user). A full disk or
    quota raises :class:`DiskFullError` (the temporary file removed); ``size_hint`` (bytes) lets it
    say how much the write needed. ``checksum=True`` writes the sidecar of :func:`verify_file` after
    the file (a crash in between leaves a file without sidecar: not trusted, rebuilt).
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if checksum:  # the old sidecar goes first: a new file never sits beside a stale hash that fits
            checksum_path(path).unlink(missing_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        record = {"bytes": os.path.getsize(tmp), "sha256": _sha256(tmp)} if checksum else None
        os.replace(tmp, path)
        tmp = None
        if record is not None:
            atomic_write_text(json.dumps(record) + "\n", checksum_path(path))
    except BaseException as err:
        written = 0
        if tmp is not None:
            with contextlib.suppress(OSError):
                written = os.path.getsize(tmp)
            Path(tmp).unlink(missing_ok=True)
        full = disk_full_error(err, path.parent, max(written, size_hint or 0) or None, str(path))
        if full is not None and full is not err:
            raise full from err
        raise


def verify_file(path: str | Path) -> str | None:
    """Why the file at ``path`` cannot be trusted (missing, no sidecar, truncated, other bytes), or ``None``.

    Checks the size and SHA-256 recorded by ``atomic_open(..., checksum=True)``; reading the file
    once costs about a second per GB. A file is hashed once per process and version: while the file and
    its sidecar keep their inode, size and modification time, a second call trusts the first one's answer
    (a sweep's every job asks for the same caches several times).
    """
    path = Path(path)
    if not path.is_file():
        return "missing"
    key = str(path.resolve())
    version = _version(path)
    if version is not None and _VERIFIED.get(key) == version:
        return None
    problem = _verify(path)
    # As git does for its index: a version younger than a second is not remembered, since a rewrite within
    # the same coarse clock tick (a few ms) could keep size and mtime.
    settled = version is not None and time.time_ns() - max(v[3] for v in version) > 1_000_000_000
    if problem is None and settled and _version(path) == version:
        _VERIFIED[key] = version
    return problem


#: resolved path -> (file, sidecar) versions that hashed right in this process
_VERIFIED: dict[str, tuple] = {}


def _version(path: Path) -> tuple | None:
    """What changes when a file or its sidecar is rewritten: device, inode, size and mtime of both."""
    try:
        a, b = path.stat(), checksum_path(path).stat()
    except OSError:
        return None
    return tuple((s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns) for s in (a, b))


def _verify(path: Path) -> str | None:
    try:
        record = json.loads(checksum_path(path).read_text())
        size, digest = int(record["bytes"]), str(record["sha256"])
    except FileNotFoundError:
        return f"no checksum file {checksum_path(path).name} (written by an older version, or interrupted)"
    except (OSError, ValueError, KeyError, TypeError):
        return f"its checksum file {checksum_path(path).name} is unreadable"
    actual = path.stat().st_size
    if actual != size:
        return f"{actual} bytes where {size} were written (truncated or overwritten)"
    if _sha256(path) != digest:
        return "its SHA-256 differs from the one recorded when it was written (damaged on disk)"
    return None


def record_checksum(path: str | Path) -> Path:
    """Write the checksum sidecar of an existing, complete file (one written before sidecars existed)."""
    path = Path(path)
    return atomic_write_text(json.dumps({"bytes": path.stat().st_size, "sha256": _sha256(path)}) + "\n",
                             checksum_path(path))


def remove_with_checksum(path: str | Path) -> None:
    """Delete a file and its checksum sidecar (a damaged cache file before its rebuild)."""
    Path(path).unlink(missing_ok=True)
    checksum_path(path).unlink(missing_ok=True)


def atomic_write_text(text: str, path: str | Path) -> Path:
    """Write text atomically (see :func:`atomic_open`); returns ``path``."""
    with atomic_open(path, "w", size_hint=len(text.encode("utf-8", "surrogateescape"))) as fh:
        fh.write(text)
    return Path(path)


def tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors (and arrays) in ``obj``, nested containers included: about what saving it needs."""
    import numpy as np

    if hasattr(obj, "element_size") and hasattr(obj, "nelement"):
        return int(obj.element_size() * obj.nelement())
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


def atomic_torch_save(obj: Any, path: str | Path, checksum: bool = False) -> None:
    """``torch.save`` atomically (see :func:`atomic_open`); ``checksum=True`` for files reused later."""
    import torch

    with atomic_open(path, "wb", checksum=checksum, size_hint=tensor_bytes(obj)) as fh:
        torch.save(obj, fh)


class LockedError(RuntimeError):
    """Another process holds the lock (a non-blocking :func:`file_lock` did not get it)."""


@contextlib.contextmanager
def file_lock(path: str | Path, blocking: bool = True, what: str | None = None,
              shared: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a ``.lock`` file beside what it guards) while in the block.

    Two processes building the same cache or checkpoint then do the work once: the second waits
    here and finds the result when it gets the lock. POSIX ``flock``: released by the OS if the
    holder dies, so a crash never leaves a stale lock. Where ``fcntl`` is missing it does nothing.
    ``blocking=False`` raises :class:`LockedError` (naming ``what``, default the path) instead of waiting.
    ``shared=True`` takes a shared lock: many holders at once (the chunks of one array job), none beside an
    exclusive holder (a whole-folder run).
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
            fcntl.flock(fh.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            raise LockedError(f"{what or path} is in use by another process (lock {path})") from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def require_free_space(folder: str | Path, needed: int, what: str) -> None:
    """Raise :class:`DiskFullError` (one line: the folder, what is free, what ``what`` needs) when the file system
    of ``folder`` has fewer than ``needed`` bytes free: checked before expensive work whose result would be lost
    to a full disk (a DFT calculation), not after it."""
    folder = Path(folder)
    for candidate in (folder, *folder.parents):
        try:
            free = shutil.disk_usage(candidate).free
        except OSError:
            continue
        if free < needed:
            raise DiskFullError(f"no space for {what}: the folder {folder} has {human_bytes(free)} free, "
                                f"{human_bytes(needed)} needed. Free some space there or choose another folder, then "
                                f"run the command again")
        return


def writable_problem(path: str | Path) -> str | None:
    """Why the folder ``path`` cannot be created or written, or ``None`` when it can.

    It is tried for real (the folder created, a temporary file written and removed): permission
    bits alone mislead (root, network file systems, read-only mounts).
    """
    import tempfile

    path = Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        return err.strerror or str(err)
    return None
