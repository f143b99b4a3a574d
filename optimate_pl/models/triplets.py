"""Triplets (angles) of a periodic crystal graph, for three-body message passing.

PyG's ``DimeNet.triplets`` pairs edges by atom index and drops the pair whose far ends are the same
atom. In a periodic multigraph that is wrong twice: an atom's own images are real neighbours (in a
one-site cell every edge joins an atom to itself), and two images of one atom are different
neighbours. Here a pair of edges is dropped only when it goes back to the same image, which the edge
vectors tell: ``v(k->j) + v(j->i) = 0``. Written by hand because no library on the package index
builds periodic triplets for PyG graphs.
"""
from __future__ import annotations

import torch
from torch import Tensor

#: |v(k->j) + v(j->i)| below this (Å) means i is k's own image: the edge pair goes back where it came from.
SAME_IMAGE_TOL = 1e-3


def triplets(edge_index: Tensor, vec: Tensor, num_nodes: int, use: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(idx_kj, idx_ji)`` [T]: every pair of edges k->j, j->i (PyG's flow: ``edge_index[0]`` is the source)
    whose far ends differ, among the edges ``use`` [E] (bool; all when ``None``).

    ``vec`` [E, 3] is each edge's vector from its source to its target's image. The angle at j is
    between ``vec[idx_kj]`` and ``vec[idx_ji]``, as ``DimeNetPlusPlus`` measures it.
    """
    cand = torch.arange(edge_index.size(1), device=edge_index.device)
    if use is not None:
        cand = cand[use]
    src, dst = edge_index[0, cand], edge_index[1, cand]
    # Outgoing edges grouped by their source j: the j->i of each incoming k->j.
    out_sorted = cand[torch.argsort(src, stable=True)]
    out_count = torch.bincount(src, minlength=num_nodes)
    out_start = torch.cumsum(out_count, 0) - out_count
    per = out_count[dst]  # for each incoming edge k->j: the edges leaving j
    total = int(per.sum())
    idx_kj = torch.repeat_interleave(cand, per, output_size=total)
    first = torch.repeat_interleave(torch.cumsum(per, 0) - per, per, output_size=total)
    local = torch.arange(total, device=cand.device) - first
    idx_ji = out_sorted[torch.repeat_interleave(out_start[dst], per, output_size=total) + local]
    back = (vec[idx_kj] + vec[idx_ji]).norm(dim=-1) < SAME_IMAGE_TOL
    return idx_kj[~back], idx_ji[~back]
