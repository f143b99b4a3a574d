"""Predict spectra (or SC[RPA;IPA]) for new structures.

Command line (a Hydra app, ``conf/predict.yaml``; see :mod:`optimate_pl.cli`)::

    optimate-pl-predict checkpoint=PATH input=PATH [output=DIR] [format=csv|npz]

``input`` is a CIF/POSCAR file, a folder of them, or a real-format JSON database (folder or
.zip). Python::

    model = optimate_pl.load_model("best.ckpt")
    energy, spectra = model.energy, model.predict_structures([structure, ...])
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Batch

from .atomic import atomic_open, atomic_write_text
from .data.featurize import structure_to_graph
from .data.records import ENERGY_GRID
from .models.optimate import Optimate
from .models.weights import build_network, read_weights

log = logging.getLogger(__name__)
STRUCTURE_SUFFIXES = (".cif", ".vasp", ".poscar")


class Predictor(torch.nn.Module):
    """A trained network in eval mode with a NumPy-in, NumPy-out API."""

    def __init__(self, net: Optimate, batch_size: int = 256) -> None:
        super().__init__()
        self.net = net.eval()
        self.batch_size = batch_size
        self.energy = ENERGY_GRID
        self.is_sc_model = net.mlp1.channel_list[-1] == 1
        self.eval()

    @torch.no_grad()
    def predict_graphs(self, graphs: Sequence) -> np.ndarray:
        """Predictions [n, out_dim] for featurised graphs, evaluated in batches."""
        device = next(self.net.parameters()).device
        out = [self.net(Batch.from_data_list(list(graphs[i:i + self.batch_size])).to(device)).float().cpu()
               for i in range(0, len(graphs), self.batch_size)]
        return torch.cat(out).numpy() if out else np.zeros((0, self.net.mlp1.channel_list[-1]), dtype=np.float32)

    def predict_structures(self, structures: Sequence[Structure]) -> np.ndarray:
        """Spectra [n, 2001] on :attr:`energy` (or [n, 1] SC[RPA;IPA] for an SC model).

        Raises ``ValueError`` naming the structure for unsupported input.
        """
        graphs = [structure_to_graph(s, mat_id=f"structure {i} ({s.composition.reduced_formula})")
                  for i, s in enumerate(structures)]
        return self.predict_graphs(graphs)


def load_model(path: str | Path, device: str = "cpu") -> Predictor:
    """Load any supported weight file in eval mode: our Lightning checkpoints or the authors' published
    state_dicts (IPA ``eps_*.pt``, TL ``tl*.pt``, DL ``dl*.pt``), the architecture read from the file.

    Loading uses ``weights_only=True``; see :mod:`optimate_pl.models.weights`.
    """
    return Predictor(build_network(read_weights(path)).to(device))


def _is_structure_file(p: Path) -> bool:
    return p.suffix.lower() in STRUCTURE_SUFFIXES or p.name.upper().startswith(("POSCAR", "CONTCAR"))


@dataclass
class Inputs:
    """What was read: ids with structures, and per-file problems."""

    ids: list[str] = field(default_factory=list)
    structures: list[Structure] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def read_inputs(path: str | Path) -> Inputs:
    """CIF/POSCAR file(s) or a real-format JSON database; unreadable files are reported, not fatal."""
    path = Path(path)
    out = Inputs()
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    files = [path] if path.is_file() and _is_structure_file(path) else \
        sorted(p for p in path.iterdir() if p.is_file() and _is_structure_file(p)) if path.is_dir() else []
    if files:
        for p in files:
            try:
                out.structures.append(Structure.from_file(p))
                out.ids.append(p.stem)
            except Exception as err:  # pymatgen raises many types for malformed files
                out.errors.append(f"{p}: unreadable structure ({type(err).__name__}: {err})")
        return out
    from .data.readers import list_sources, read_entry
    from .data.records import SkippedRecord

    for src in list_sources(path):  # a JSON database: structures of whatever kind of entries
        rec = read_entry(src, "ipa")
        if isinstance(rec, SkippedRecord) and "epsI" in rec.reason:
            rec = read_entry(src, "rpa")
        if isinstance(rec, SkippedRecord):
            out.errors.append(str(rec))
        else:
            out.ids.append(rec.mat_id)
            out.structures.append(rec.structure)
    return out


def run_prediction(checkpoint: str | Path, input: str | Path, output: str | Path = "predictions",
                   format: str = "csv", plot: int = 6, batch_size: int = 256, device: str = "cpu") -> dict:
    """Predict for every input structure and write ``predictions.csv`` (or ``.npz``) and a PNG."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    predictor = load_model(checkpoint, device=device)
    predictor.batch_size = batch_size
    inputs = read_inputs(input)
    graphs, ids, errors = [], [], list(inputs.errors)
    for mid, s in zip(inputs.ids, inputs.structures):
        try:
            graphs.append(structure_to_graph(s, mat_id=mid))
            ids.append(mid)
        except ValueError as err:
            errors.append(f"{mid}: {err}")
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    preds = predictor.predict_graphs(graphs)
    written = []
    if predictor.is_sc_model:
        body = "mat_id,sc_rpa_ipa\n" + "".join(f"{m},{v:.6f}\n" for m, v in zip(ids, preds[:, 0]))
        atomic_write_text(body, out / "predictions.csv")
        written.append(out / "predictions.csv")
    elif format == "npz":
        with atomic_open(out / "predictions.npz", "wb") as fh:
            np.savez_compressed(fh, energy=ENERGY_GRID, mat_id=np.array(ids), eps_imag=preds)
        written.append(out / "predictions.npz")
    else:
        header = "energy_eV," + ",".join(ids)
        rows = [f"{e:.2f}," + ",".join(f"{v:.6g}" for v in preds[:, k]) for k, e in enumerate(ENERGY_GRID)]
        atomic_write_text(header + "\n" + "\n".join(rows) + "\n", out / "predictions.csv")
        written.append(out / "predictions.csv")
        if plot and len(ids):
            written.append(plot_predictions(ids[:plot], preds[:plot], out / "predictions.png"))
    if errors:
        atomic_write_text("\n".join(errors) + "\n", out / "errors.txt")
        for e in errors:
            log.warning("skipped %s", e)
    return {"n_predicted": len(ids), "errors": errors, "files": [str(p) for p in written]}


def plot_predictions(ids: Sequence[str], preds: np.ndarray, path: Path) -> Path:
    """Predicted Im eps for a handful of materials."""
    from .plots import plt, save_figure

    fig, ax = plt.subplots(figsize=(7, 4))
    for m, p in zip(ids, preds):
        ax.plot(ENERGY_GRID, p, label=m, lw=1.2)
    ax.set_xlabel("photon energy (eV)")
    ax.set_ylabel("predicted Im ε(ω)")
    ax.set_xlim(0, 20)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
