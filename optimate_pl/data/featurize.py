"""Crystal structure -> PyG graph, exactly as the authors build it.

Nodes carry a one-hot main group (8 classes) and a one-hot period (5 classes); edges are every
neighbour within the cutoff as ``Structure.get_all_neighbors`` lists them (periodic images included,
so a multigraph, both directions, no self loops) with the distance expanded on 51 Gaussians. A site
with no neighbour within the cutoff simply has no edges, as in the authors' graphs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from pymatgen.core import Element, Structure
from torch_geometric.data import Data

#: Bumped whenever the graph construction changes; part of every cache fingerprint.
FEATURIZER_VERSION = "1"

NUM_NODE_FEATURES = 13
NUM_EDGE_FEATURES = 51
GAUSSIAN_CENTERS = torch.linspace(0.0, 5.0, NUM_EDGE_FEATURES)
GAUSSIAN_PREFACTOR = math.sqrt(10.0 / math.pi)
GAUSSIAN_WIDTH = 10.0


def group_index(group: int) -> int:
    """Index of a main group in the 8-class one-hot: groups 1, 2, 13..18 -> 0..7."""
    return group - 1 if group <= 2 else group - 11


def element_features(symbol: str, mat_id: str | None = None) -> np.ndarray:
    """13-vector for one element: one-hot main group (8) + one-hot period (5).

    Raises ``ValueError`` naming the element (and the material) when it is not a main-group
    element of rows 1-5.
    """
    el = Element(symbol)
    if not (el.group in (1, 2) or 13 <= el.group <= 18) or el.row > 5:
        where = f" in material {mat_id}" if mat_id else ""
        raise ValueError(
            f"unsupported element {symbol}{where}: only main-group elements (groups 1, 2, 13-18) "
            f"of periods 1-5 can be featurised (got group {el.group}, period {el.row})"
        )
    vec = np.zeros(NUM_NODE_FEATURES, dtype=np.float32)
    vec[group_index(el.group)] = 1.0
    vec[8 + el.row - 1] = 1.0
    return vec


def gaussian_expand(dist: torch.Tensor) -> torch.Tensor:
    """Distances [E] -> edge features [E, 51]: sqrt(10/pi) * exp(-10 (d - mu)^2), mu in linspace(0, 5, 51)."""
    centers = GAUSSIAN_CENTERS.to(device=dist.device, dtype=dist.dtype)
    return GAUSSIAN_PREFACTOR * torch.exp(-GAUSSIAN_WIDTH * (dist.unsqueeze(-1) - centers) ** 2)


def neighbour_list(structure: Structure, cutoff: float, mat_id: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Edges [2, E] (centre, neighbour) and distances [E] as listed by ``get_all_neighbors``.

    Raises ``ValueError`` for an empty structure or partial occupancies.
    """
    name = mat_id or structure.formula
    if len(structure) == 0:
        raise ValueError(f"material {name}: structure has no sites")
    if not structure.is_ordered:
        raise ValueError(f"material {name}: disordered sites (partial occupancies) are not supported")
    all_neighbours = structure.get_all_neighbors(cutoff)
    centres, neighbours, dists = [], [], []
    for i, nbrs in enumerate(all_neighbours):
        for nb in nbrs:
            centres.append(i)
            neighbours.append(nb.index)
            dists.append(nb.nn_distance)
    edge_index = np.asarray([centres, neighbours], dtype=np.int64).reshape(2, -1)
    return edge_index, np.asarray(dists, dtype=np.float32)


def isolated_sites(edge_index: np.ndarray, num_nodes: int) -> np.ndarray:
    """Indices of the sites with no neighbour within the cutoff (no incoming or outgoing edge)."""
    return np.setdiff1d(np.arange(num_nodes), edge_index.reshape(-1))


def node_features(structure: Structure, mat_id: str | None = None) -> np.ndarray:
    """[n, 13] node features of a structure."""
    return np.stack([element_features(site.specie.symbol, mat_id) for site in structure])


def graph_arrays(structure: Structure, cutoff: float = 5.0,
                 mat_id: str | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(x [n, 13], edge_index [2, E], dist [E])`` as NumPy arrays (what the caches store)."""
    edge_index, dist = neighbour_list(structure, cutoff, mat_id)
    return node_features(structure, mat_id), edge_index, dist


def structure_to_graph(structure: Structure, cutoff: float = 5.0, mat_id: str | None = None) -> Data:
    """Featurise one structure.

    Returns a ``Data`` with ``x`` [n, 13], ``edge_index`` [2, E], ``edge_attr`` [E, 51] and
    ``dist`` [E]. Invalid input raises ``ValueError`` naming the material and the reason.
    """
    x, edge_index, dist = graph_arrays(structure, cutoff, mat_id)
    dist_t = torch.from_numpy(dist)
    return Data(
        x=torch.from_numpy(x),
        edge_index=torch.from_numpy(edge_index),
        edge_attr=gaussian_expand(dist_t),
        dist=dist_t,
        num_nodes=len(structure),
    )
