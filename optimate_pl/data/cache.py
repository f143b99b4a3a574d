"""Where featurised databases are cached and under which key: a fingerprint of what produced them."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

#: Where a database comes from: the built-in generator (not physics), the built-in GPAW-computed ladder
#: (real physics, this project's PBE/GPAW settings), the authors' real-format files (figshare), or one's own
#: files in that format (``files``: imported with ``optimate-pl-import`` or computed with ``optimate-pl-compute``).
SOURCES = ("synthetic", "gpaw", "figshare", "files")
#: How every output names its data.
def gpaw_ladder_words(root: str | None = None) -> str:
    """Which GPAW ladder, in words: the built-in one, or the one packed at ``root`` (``data.root``)."""
    return f"the PBE ladder of Alexandria materials packed at {root}" if root else \
        "the built-in PBE ladder of Alexandria materials"


SOURCE_LABELS = {"synthetic": "SYNTHETIC (generated, not physics)",
                 "gpaw": f"GPAW-computed (real physics: {gpaw_ladder_words()})",
                 "figshare": "the authors' databases (figshare)",
                 "files": "your own data (imported or computed files)"}


def source_label(source: str | None, root: str | None = None) -> str:
    """What a data source is, in words, for logs, tables and figures (``root``: another packed GPAW ladder)."""
    if source == "gpaw" and root:
        return f"GPAW-computed (real physics: {gpaw_ladder_words(root)})"
    return SOURCE_LABELS.get(str(source), f"unknown data ({source})")


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
