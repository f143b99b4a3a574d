"""A trained model, ready to predict: :func:`load_model` and :class:`Predictor`.

Python::

    model = optimate_pl.load_model("runs/tl300")         # a run folder (its best checkpoint), a weight file, or the authors' eps_300.pt
    spectra = model.predict_structures([structure, ...])  # [n, 2001] on model.energy (eV)

Any weight file of :mod:`optimate_pl.models.weights`, or an ensemble folder (its members' mean, with the
calibrated band of :mod:`optimate_pl.spectra.calibration`).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.featurize import MIN_DISTANCE, graph_arrays
from ..models.card import ENSEMBLE_CARD, RUN_METRICS, read_card, read_ensemble_card, resolve_checkpoint
from ..models.targets import target_of_weights
from ..models.weights import CheckpointError, Weights, build_network, read_weights
from ..spectra.calibration import Calibration
from ..spectra.grid import ENERGY_GRID

log = logging.getLogger("optimate_pl")


def trained_on(data: dict[str, Any]) -> tuple[str, str]:
    """``(source, words)``: the data a model card's ``data`` says the model learned from. Entries written by
    optimate-pl-compute or -import count as one's own data also when read as ``data.source=figshare`` (they were
    once labelled "the authors' databases")."""
    source = data.get("source") or "unknown"
    if source == "figshare" and any(str(o).startswith("files:") for o in data.get("origins") or {}):
        source = "files"
    words = ("SYNTHETIC data (generated, not physics)" if data.get("synthetic") else
             "real DFT data (figshare)" if source == "figshare" else
             f"real DFT data (the GPAW-computed ladder packed at {data['root']})" if source == "gpaw" and data.get("root")
             else "real DFT data (the built-in GPAW-computed ladder)" if source == "gpaw" else
             "your own data (" + ", ".join(f"{n} from {o}" for o, n in (data.get("origins") or {}).items())
             + ")" if source == "files" else
             "unknown data (a weight file without a model card, e.g. the authors' published weights)")
    return source, words


def model_info(weights: Weights) -> dict[str, Any]:
    """What a weight file says about itself: target, the data it was trained on, its cutoff."""
    data = weights.hparams.get("data") or (read_card(weights.path) or {}).get("data") or {}
    source, words = trained_on(data)
    return {"checkpoint": str(weights.path), "layout": weights.layout, "architecture": weights.net,
            "target": target_of_weights(weights),
            "data_source": source, "data_root": data.get("root") if source == "gpaw" else None,
            "ladder": data.get("ladder"),
            "synthetic": bool(data.get("synthetic")), "trained_on": words,
            "cutoff": float(data.get("cutoff") or 5.0), "split": data.get("split"),
            "fingerprint": data.get("fingerprint"), "domain": data.get("domain")}


class Predictor(torch.nn.Module):
    """One trained network, or the members of an ensemble, in eval mode with a NumPy-in, NumPy-out API.

    ``info`` says what the model was trained on; featurisation uses its cutoff (``info["cutoff"]``) and
    the checks for new structures (overlapping atoms, graphs without edges). An ensemble predicts the
    members' mean, and with a ``calibration`` (:mod:`optimate_pl.spectra.calibration`) its calibrated band and
    expected SC error.
    """

    def __init__(self, nets: torch.nn.Module | Sequence[torch.nn.Module], info: dict[str, Any] | None = None,
                 batch_size: int = 256, calibration: Calibration | None = None) -> None:
        super().__init__()
        self.nets = torch.nn.ModuleList(list(nets) if isinstance(nets, (list, tuple)) else [nets]).eval()
        self.info = info or {"cutoff": 5.0, "synthetic": False, "trained_on": "unknown data", "target": "eps_imag"}
        self.batch_size = batch_size
        self.calibration = calibration
        self.energy = ENERGY_GRID
        self.eval()

    @property
    def net(self) -> torch.nn.Module:
        """The (first) network: its architecture and latents."""
        return self.nets[0]

    @property
    def out_dim(self) -> int:
        """Outputs per material: 2001 spectral points, or 1 for an SC[RPA;IPA] model."""
        return self.net.mlp1.channel_list[-1]

    @property
    def is_sc_model(self) -> bool:
        return self.out_dim == 1

    @property
    def is_ensemble(self) -> bool:
        return len(self.nets) > 1

    @property
    def cutoff(self) -> float:
        return float(self.info.get("cutoff", 5.0))

    @torch.no_grad()
    def members(self, batch) -> torch.Tensor:
        """Every network's prediction [members, B, out_dim], in fp32."""
        return torch.stack([net(batch).float() for net in self.nets])

    @torch.no_grad()
    def forward(self, batch) -> torch.Tensor:
        """Predictions [B, out_dim] of a batch (an ensemble's mean), in fp32."""
        return self.net(batch).float() if len(self.nets) == 1 else self.members(batch).mean(0)

    @torch.no_grad()
    def uncertainty(self, batch, preds: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """An ensemble's ``mean``, ``std``, calibrated band ``lower``/``upper`` [B, points] and
        ``expected_sc_error`` [B]; ``preds``: the members' predictions of ``batch`` when the caller has them."""
        from ..spectra.calibration import band, expected_sc_error

        if not self.is_ensemble or self.calibration is None:
            raise ValueError("uncertainty needs a calibrated ensemble: train one with ensemble.size=5 and load its "
                             "folder (a single model has no spread to calibrate)")
        preds = self.members(batch) if preds is None else preds
        mean, std = preds.mean(0), preds.std(0, unbiased=False)
        lower, upper = band(mean, std, self.calibration)
        # Im ε is never negative: the band of mean ± k·std is cut at 0 (it reached -0.6). Its coverage of true
        # spectra, all >= 0, is unchanged by the cut.
        lower, upper = torch.clamp(lower, min=0.0), torch.clamp(upper, min=0.0)
        return {"mean": mean, "std": std, "lower": lower, "upper": upper,
                "expected_sc_error": expected_sc_error(mean, std, self.calibration)}

    def _device(self) -> torch.device:
        return next(self.net.parameters()).device

    def predict_graphs(self, graphs: Sequence) -> np.ndarray:
        """Predictions [n, out_dim] for featurised ``Data`` graphs, evaluated in batches."""
        from torch_geometric.data import Batch

        out = [self(Batch.from_data_list(list(graphs[i:i + self.batch_size])).to(self._device())).cpu()
               for i in range(0, len(graphs), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.out_dim), dtype=np.float32)

    def predict_structures(self, structures: Sequence, uncertainty: bool = False) -> np.ndarray | dict[str, np.ndarray]:
        """Spectra [n, 2001] on :attr:`energy` (or [n, 1] SC[RPA;IPA] for an SC model).

        With ``uncertainty=True`` (a calibrated ensemble): a dict of ``mean``, ``std``, ``lower``,
        ``upper`` [n, 2001] and ``expected_sc_error`` [n]. Raises ``ValueError`` naming the structure
        for input the model cannot take.
        """
        from ..data.batching import batch_from_arrays

        arrays = [graph_arrays(s, self.cutoff, f"structure {i} ({s.composition.reduced_formula})",
                               min_distance=MIN_DISTANCE, require_edges=True) for i, s in enumerate(structures)]
        batches = [batch_from_arrays(arrays[i:i + self.batch_size]).to(self._device())
                   for i in range(0, len(arrays), self.batch_size)]
        if uncertainty:
            parts = [self.uncertainty(b) for b in batches]
            return {k: torch.cat([p[k].cpu() for p in parts]).numpy() for k in parts[0]} if parts else {}
        out = [self(b).cpu() for b in batches]
        return torch.cat(out).numpy() if out else np.zeros((0, self.out_dim), dtype=np.float32)


def load_model(path: str | Path | Sequence[str | Path], device: str = "cpu") -> Predictor:
    """Load a model in eval mode: any weight file (our Lightning checkpoints or the authors' published
    ``eps_*.pt``, ``tl*.pt``, ``dl*.pt``, the architecture read from the file), a training run's folder (its best
    checkpoint), an ensemble folder (with its ``ensemble.json``: members and calibration), or a list of weight files
    (an uncalibrated ensemble).

    Loading uses ``weights_only=True``; see :mod:`optimate_pl.models.weights`.
    """
    if isinstance(path, (list, tuple)):
        weights = [read_weights(p) for p in path]
        return Predictor([build_network(w).to(device) for w in weights], model_info(weights[0]))
    path = resolve_checkpoint(path)
    card = read_ensemble_card(path) if path.is_dir() or path.name == ENSEMBLE_CARD else None
    if card is not None:
        folder = Path(path) if Path(path).is_dir() else Path(path).parent
        weights = [read_weights(folder / m["checkpoint"]) for m in card["members"]]
        info = {**model_info(weights[0]), "checkpoint": str(folder), "ensemble": len(weights),
                "level": card["calibration"]["level"]}
        return Predictor([build_network(w).to(device) for w in weights], info,
                         calibration=Calibration(**card["calibration"]))
    if Path(path).is_dir():
        raise CheckpointError(f"{path} is a folder with neither an ensemble.json nor a training run's {RUN_METRICS}: "
                              f"give a weight file, or assemble the ensemble with "
                              f"`python -m optimate_pl.uncertainty.ensemble {path}`")
    weights = read_weights(path)
    return Predictor(build_network(weights).to(device), model_info(weights))
