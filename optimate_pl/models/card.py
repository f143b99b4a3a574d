"""Model cards: a small JSON beside every checkpoint we keep, saying what its network is and where it came from.

Architecture, target, data source and fingerprint, cutoff, split, set sizes, test medians and the
package version: so that loading a checkpoint never has to guess (the same provenance also lives in
the checkpoint's saved hyperparameters, under ``data``). An ensemble's folder has its own card,
``ensemble.json``: its members, their seeds and the calibration of its uncertainty.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..utils.atomic import atomic_write_text

CARD_SUFFIX = ".card.json"
ENSEMBLE_CARD = "ensemble.json"


def package_version() -> str:
    """The installed optimate_pl version (from the package metadata, no import of the package root)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("optimate_pl")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown"


def card_path(checkpoint: str | Path) -> Path:
    """``best-042.ckpt`` -> ``best-042.ckpt.card.json``."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + CARD_SUFFIX)


def make_card(hparams: dict[str, Any], test: dict[str, float] | None = None, **extra: Any) -> dict[str, Any]:
    """The card of a :class:`~optimate_pl.models.SpectraModule` (its hyperparameters) and its test medians."""
    return {"optimate_pl_version": package_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "architecture": dict(hparams.get("net") or {}), "target": hparams.get("target", "eps_imag"),
            "data": dict(hparams.get("data") or {}), "test": dict(test or {}), **extra}


def write_card(checkpoint: str | Path, card: dict[str, Any]) -> Path:
    """Write ``card`` beside ``checkpoint`` (atomically); returns the card's path."""
    return atomic_write_text(json.dumps({**card, "checkpoint": Path(checkpoint).name}, indent=2, default=str) + "\n",
                             card_path(checkpoint))


def read_card(checkpoint: str | Path) -> dict[str, Any] | None:
    """The card beside ``checkpoint``, or ``None`` when there is none (published weights, older files)."""
    path = card_path(checkpoint)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def read_ensemble_card(path: str | Path) -> dict[str, Any] | None:
    """The card of an ensemble folder (or the ``ensemble.json`` itself), else ``None``."""
    path = Path(path)
    path = path if path.name == ENSEMBLE_CARD else path / ENSEMBLE_CARD
    return json.loads(path.read_text()) if path.is_file() else None
