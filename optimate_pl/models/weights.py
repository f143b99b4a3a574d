"""Loading network weights: the authors' published plain state_dicts and our Lightning checkpoints."""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
from torch import nn


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unsafe, unreadable, or of the wrong architecture."""


def safe_load(path: str | Path) -> dict:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only.

    A file that would run code when unpickled is refused with a clear message.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects that would execute code on load "
            f"(only plain tensors/state_dicts are accepted; weights_only=True said: {str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"cannot read checkpoint {path}: {err}") from None


def network_state_dict(obj: dict, prefix: str = "model.") -> dict:
    """The network's state_dict from a Lightning checkpoint (``state_dict`` with ``model.`` keys) or a plain one."""
    if "state_dict" in obj and isinstance(obj["state_dict"], dict):
        sd = obj["state_dict"]
        return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return obj


def load_network_weights(model: nn.Module, path: str | Path, checkpoint: dict | None = None) -> nn.Module:
    """Load weights from ``path`` into ``model``; any mismatch is an error listing the keys and shapes.

    ``checkpoint``: the content of ``path`` when the caller has already read it with :func:`safe_load`.
    """
    sd = network_state_dict(safe_load(path) if checkpoint is None else checkpoint)
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(f"{path} is not a state_dict (a mapping of parameter names to tensors)")
    own = model.state_dict()
    problems = []
    for k in sorted(set(own) | set(sd)):
        if k not in sd:
            problems.append(f"  missing in checkpoint: {k} {tuple(own[k].shape)}")
        elif k not in own:
            problems.append(f"  unexpected in checkpoint: {k} {tuple(sd[k].shape)}")
        elif own[k].shape != sd[k].shape:
            problems.append(f"  shape mismatch: {k} checkpoint {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}")
    if problems:
        shown = problems[:20] + ([f"  ... and {len(problems) - 20} more"] if len(problems) > 20 else [])
        raise CheckpointError(f"checkpoint {path} does not fit the configured architecture:\n" + "\n".join(shown))
    model.load_state_dict(sd)
    return model
