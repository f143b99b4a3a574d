"""verify_file: a cache file is hashed once per process and version, and any rewrite is seen again."""
from __future__ import annotations

import os
import time

import pytest

from optimate_pl.utils import atomic
from optimate_pl.utils.atomic import atomic_open, checksum_path, verify_file


def _write(path, data: bytes, age_s: float = 0.0) -> None:
    with atomic_open(path, "wb", checksum=True) as fh:
        fh.write(data)
    if age_s:  # as if written that long ago (a cache from an earlier run)
        past = time.time_ns() - int(age_s * 1e9)
        for p in (path, checksum_path(path)):
            os.utime(p, ns=(past, past))


@pytest.fixture
def calls(monkeypatch) -> list:
    """The files ``verify_file`` hashes, in order (``_sha256`` counted, still run)."""
    seen: list = []
    real = atomic._sha256
    monkeypatch.setattr(atomic, "_sha256", lambda p: seen.append(p) or real(p))
    return seen


def test_a_settled_file_is_hashed_once_and_a_rewrite_is_hashed_again(tmp_path, calls):
    path = tmp_path / "store.pt"
    _write(path, b"x" * 4096, age_s=60)
    calls.clear()
    assert verify_file(path) is None and verify_file(path) is None and verify_file(path) is None
    assert len(calls) == 1
    # Damaged in place, same size: the new mtime makes it another version, hashed, and refused.
    with open(path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"y")
    assert "SHA-256 differs" in verify_file(path) and len(calls) == 2
    assert "SHA-256 differs" in verify_file(path) and len(calls) == 3  # a bad answer is never remembered
    # Rebuilt (a new inode and sidecar): hashed again.
    _write(path, b"z" * 4096, age_s=60)
    calls.clear()
    assert verify_file(path) is None and verify_file(path) is None and len(calls) == 1


def test_a_file_younger_than_a_second_is_hashed_every_time(tmp_path, calls):
    """A rewrite within the clock's coarse tick could keep size and mtime: a fresh file is not remembered."""
    path = tmp_path / "fresh.pt"
    _write(path, b"a" * 1000)
    calls.clear()
    assert verify_file(path) is None and verify_file(path) is None and len(calls) == 2
    st = path.stat()
    with open(path, "r+b") as fh:  # damaged at once, then given back its old mtime: still caught
        fh.write(b"b")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert "SHA-256 differs" in verify_file(path)
