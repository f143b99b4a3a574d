"""The reference screening pipeline, as the authors' notebook runs a model on new structures.

    python benchmarks/reference_screen.py WEIGHTS INPUT.json.bz2 N OUT.npz

Reads the entries, and for each one: ``Structure.from_dict``, the graph as their notebook builds it
(``get_all_neighbors(5)`` walked in Python, the Gaussian expansion in NumPy, one PyG ``Data``), a PyG
``DataLoader`` at batch size 1, the model, and the same derived optical properties as ours
(``optimate_pl.spectra.optics`` on each spectrum), so both pipelines do the same work. Tooling for
``benchmarks/bench.py``; not part of the package.
"""
from __future__ import annotations

import bz2
import json
import sys

import numpy as np
import torch
from pymatgen.core import Structure
from torch_geometric.data import Data
from torch_geometric.loader import DataLoader

from optimate_pl.spectra import optics
from optimate_pl.models import build_network


def notebook_graph(structure: Structure) -> Data:
    """A graph the way the authors' notebook builds one (loops over get_all_neighbors)."""
    centres, neighbours, distances = [], [], []
    for site, nbrs in enumerate(structure.get_all_neighbors(5)):
        for nb in nbrs:
            centres.append(site)
            neighbours.append(nb.index)
            distances.append(nb.nn_distance)
    d = np.array(distances)
    edge_attr = np.sqrt(10 / np.pi) * np.array([np.exp(-10 * (d - mu) ** 2) for mu in np.linspace(0, 5, 51)])
    x = []
    for specie in structure.species:
        group = specie.group - 1
        group = group - 10 if group > 1 else group
        x.append(np.concatenate([np.eye(8)[group], np.eye(5)[specie.row - 1]]))
    return Data(x=torch.tensor(np.array(x), dtype=torch.float32),
                edge_index=torch.tensor([centres, neighbours], dtype=torch.long),
                edge_attr=torch.tensor(edge_attr.T, dtype=torch.float32))


def main() -> None:
    weights, source, n, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    model = build_network(weights)
    with bz2.open(source, "rt") as fh:
        entries = json.load(fh)["entries"][:n]
    graphs = [notebook_graph(Structure.from_dict(e["structure"])) for e in entries]
    scalars = []
    with torch.no_grad():
        for batch in DataLoader(graphs, batch_size=1, shuffle=False):
            spectrum = model(batch)
            scalars.append({k: float(v) for k, v in optics.scalars(spectrum).items()})
    np.savez(out, onset=np.array([s["onset_eV"] for s in scalars]))


if __name__ == "__main__":
    main()
