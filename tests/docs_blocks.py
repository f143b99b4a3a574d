"""The fenced code blocks of the README and of ``docs/``: the tests run them, so the documentation cannot rot."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Block:
    """One fenced code block: the page, its first line number, the language and the body."""

    page: Path
    line: int
    lang: str
    body: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    """The README and every Markdown page of the documentation."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of ``page`` (```lang ... ```), in order."""
    out, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if m:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            out.append(Block(page, i + 1, m.group(1), "\n".join(lines[i + 1:j]) + "\n"))
            i = j
        i += 1
    return out


def code_block(first_line: str) -> str:
    """The body of the documentation's code block that starts with ``first_line`` (a worked example)."""
    for page in pages():
        for block in blocks(page):
            if block.body.startswith(first_line):
                return block.body
    raise AssertionError(f"no code block of the README or docs/ starts with {first_line!r}")
