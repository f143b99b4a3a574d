"""Figure primitives shared by every writer: a headless matplotlib, atomic saving, quantile picks."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_open  # noqa: E402

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def quantile_rows(rows: list[dict[str, Any]], key: str = "sc", quantiles=QUANTILES) -> list[dict[str, Any]]:
    """The rows whose ``key`` sits at each quantile of that column (nearest rank)."""
    ordered = sorted(rows, key=lambda r: r[key])
    return [ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] for q in quantiles]


def save_figure(fig, path: Path, dpi: int = 130, close: bool = True) -> Path:
    """Save a figure atomically in the format its suffix names (png, pdf, ...); then close it."""
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=path.suffix.lstrip("."), dpi=dpi, bbox_inches="tight")
    if close:
        plt.close(fig)
    return path


def save_with_statement(fig, folder: Path, name: str, statement: str, dpi: int = 150) -> list[Path]:
    """``name.png`` and ``name.pdf`` in ``folder``, the data statement at the foot (red for SYNTHETIC data)."""
    synthetic = statement.startswith("SYNTHETIC")
    fig.text(0.5, -0.01, statement, ha="center", va="top", fontsize=7, color="tab:red" if synthetic else "0.3")
    png = save_figure(fig, Path(folder) / f"{name}.png", dpi=dpi, close=False)
    return [png, save_figure(fig, Path(folder) / f"{name}.pdf", dpi=dpi)]
