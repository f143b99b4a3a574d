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


#: What a training run writes into its folder: the test metrics and the path of its best-validation checkpoint.
RUN_METRICS = "metrics.json"


def resolve_checkpoint(path: str | Path) -> Path:
    """The weights a path means: a training run's folder (``runs/tl300``) is its best-validation checkpoint (the model
    its metrics are of; found in the folder's ``checkpoints/`` also after the folder moved); a weight file or an
    ensemble folder is itself."""
    path = Path(path).expanduser()
    if not path.is_dir() or (path / ENSEMBLE_CARD).is_file() or not (path / RUN_METRICS).is_file():
        return path
    try:
        best = json.loads((path / RUN_METRICS).read_text()).get("best_checkpoint")
    except (OSError, ValueError, AttributeError) as err:
        raise ValueError(f"{path / RUN_METRICS}: unreadable ({err}); give the weight file itself, e.g. "
                         f"{path / 'checkpoints' / 'last.ckpt'}") from None
    if not best:
        raise ValueError(f"{path} is a training run that saved no checkpoint (best_checkpoint is empty in "
                         f"{RUN_METRICS}): give a weight file")
    for candidate in (path / "checkpoints" / Path(best).name, Path(best)):
        if candidate.is_file():
            return candidate
    raise ValueError(f"{path} is a training run whose best checkpoint {Path(best).name} is neither in "
                     f"{path / 'checkpoints'} nor at {best}: give a weight file")
