"""A study's outputs: tables as CSV + Markdown and figures as PNG + PDF, each headed by its data statement."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..utils.atomic import atomic_write_text
from ..utils.plots import save_with_statement


def write_table(df: pd.DataFrame, out: Path, name: str, statement: str, note: str = "") -> list[Path]:
    """``name.csv`` and ``name.md`` (headed by the data statement and a note)."""
    out.mkdir(parents=True, exist_ok=True)
    csv = atomic_write_text(df.to_csv(index=False), out / f"{name}.csv")
    head = f"Data: {statement}." + (f" {note}" if note else "")
    md = atomic_write_text(f"{head}\n\n{df.to_markdown(index=False, floatfmt='.4f')}\n", out / f"{name}.md")
    return [csv, md]


def save(fig, out: Path, name: str, statement: str) -> list[Path]:
    """A figure as PNG and PDF, its data statement at the foot (in red for SYNTHETIC data)."""
    return save_with_statement(fig, out, name, statement)
