"""Batches gathered by index from a :class:`~optimate_pl.data.store.GraphStore`, on the CPU or on the device.

One batcher serves both paths. Our ``DataLoader`` gathers each batch on the CPU from the store's
concatenated tensors (a few index ops and one Gaussian expansion per batch, instead of one ``Data``
per material and PyG collation). On a single GPU the same batcher holds the split on the device
and a :class:`BatchLoader` hands out batches gathered there: small crystal graphs would otherwise
leave the GPU waiting for Python collation and host-to-device copies. Either way the result equals
PyG's collation of the same materials (tested), so the loss is identical.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch_geometric.data import Batch

from .featurize import gaussian_expand


class GraphBatcher:
    """Gathers PyG batches of the materials ``rows`` of a store on ``device``, without per-graph Python work.

    Args:
        store: a :class:`~optimate_pl.data.store.GraphStore` (its concatenated tensors and ids).
        rows: [n] the store rows this batcher serves; batches are requested by position in ``rows``.
        targets: [M, D] the target of every store row (``store.target(name)``).
        device: where the tensors live and batches are built (no copy on the CPU).
    """

    def __init__(self, store: Any, rows: Tensor, targets: Tensor, device: torch.device | str = "cpu") -> None:
        self.store, self.rows = store, rows
        self.device = torch.device(device)
        # Node/edge counts stay on the CPU: batch sizes are known without a device sync.
        self.n_nodes = (store.node_ptr[rows + 1] - store.node_ptr[rows])
        self.n_edges = (store.edge_ptr[rows + 1] - store.edge_ptr[rows])
        self.node_start = store.node_ptr[rows].to(self.device)
        self.edge_start = store.edge_ptr[rows].to(self.device)
        self.x = store.x.to(self.device)
        self.edge_index = store.edge_index.to(self.device)
        self.dist = store.dist.to(self.device)
        self.vec = store.vec.to(self.device) if getattr(store, "vec", None) is not None else None
        self.y = targets[rows].to(self.device)
        self.ipa = store.ipa[rows].to(self.device) if store.ipa is not None else None
        self.nsites = store.nsites[rows].to(self.device)
        fidelity = getattr(store, "fidelity", None)
        self.fidelity = fidelity[rows].to(self.device) if fidelity is not None else None

    def __len__(self) -> int:
        return len(self.rows)

    def _ranges(self, starts: Tensor, counts_cpu: Tensor, counts_dev: Tensor) -> tuple[Tensor, Tensor]:
        total = int(counts_cpu.sum())
        offsets = torch.cumsum(counts_dev, 0) - counts_dev  # exclusive prefix sum: where each graph starts
        rep_offsets = torch.repeat_interleave(offsets, counts_dev, output_size=total)
        local = torch.arange(total, device=self.device) - rep_offsets
        return torch.repeat_interleave(starts, counts_dev, output_size=total) + local, offsets

    def batch(self, k: Sequence[int] | Tensor) -> Batch:
        """The batch of items ``k`` (positions in ``rows``), built on the device; ``num_graphs`` from ``ptr``."""
        k_cpu = torch.as_tensor(k, dtype=torch.long).cpu()
        k_dev = k_cpu.to(self.device, non_blocking=True)
        nn_cpu, ne_cpu = self.n_nodes[k_cpu], self.n_edges[k_cpu]
        nn_dev, ne_dev = nn_cpu.to(self.device), ne_cpu.to(self.device)
        node_idx, node_off = self._ranges(self.node_start[k_dev], nn_cpu, nn_dev)
        edge_idx, _ = self._ranges(self.edge_start[k_dev], ne_cpu, ne_dev)
        shift = torch.repeat_interleave(node_off, ne_dev, output_size=int(ne_cpu.sum()))
        dist = self.dist[edge_idx]
        b = len(k_cpu)
        ptr = torch.zeros(b + 1, dtype=torch.long, device=self.device)
        ptr[1:] = torch.cumsum(nn_dev, 0)
        batch = Batch(x=self.x[node_idx], edge_index=self.edge_index[:, edge_idx] + shift,
                      edge_attr=gaussian_expand(dist), dist=dist, y=self.y[k_dev], nsites=self.nsites[k_dev],
                      batch=torch.repeat_interleave(torch.arange(b, device=self.device), nn_dev,
                                                    output_size=int(nn_cpu.sum())), ptr=ptr)
        if self.ipa is not None:
            batch.ipa = self.ipa[k_dev]
        if self.vec is not None:
            batch.vec = self.vec[edge_idx]
        if self.fidelity is not None:
            batch.fidelity = self.fidelity[k_dev]
        rows = self.rows[k_cpu].tolist()
        batch.mat_id = [self.store.mat_id[i] for i in rows]
        batch.formula = [self.store.formula[i] for i in rows]
        return batch

    def iterate(self, batch_size: int, shuffle: bool, drop_last: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Batches over the whole dataset (a shuffled permutation when ``shuffle``)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for i in range(0, stop, batch_size):
            yield self.batch(order[i:i + batch_size])


class BatchLoader:
    """Batches of a :class:`GraphBatcher` as an iterable a Lightning ``Trainer`` takes as a dataloader.

    Re-shuffles every epoch with its own seeded generator. Used for device-resident splits.
    """

    def __init__(self, batcher: GraphBatcher, batch_size: int, shuffle: bool, drop_last: bool = False,
                 seed: int = 0) -> None:
        self.batcher, self.batch_size, self.shuffle, self.drop_last = batcher, batch_size, shuffle, drop_last
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        n = len(self.batcher)
        if self.drop_last and n >= self.batch_size:
            return n // self.batch_size
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        return self.batcher.iterate(self.batch_size, self.shuffle, self.drop_last, self.generator)


def collate_prebatched(items: list[Batch]) -> Batch:
    """``collate_fn`` for a ``DataLoader`` over a dataset whose ``__getitems__`` already built the batch."""
    return items[0]


def batch_from_arrays(graphs: Sequence[tuple[Any, ...]]) -> Batch:
    """A PyG batch of featurised ``(x [n, 13], edge_index [2, E], dist [E], vec [E, 3])`` arrays (``vec``
    optional), as PyG would collate them.

    The edge features are left to the network (``Optimate`` expands ``dist`` on its device); an
    empty sequence gives a batch of zero graphs.
    """
    import numpy as np

    n_nodes = np.array([len(g[0]) for g in graphs], dtype=np.int64)
    node_off = np.concatenate([[0], np.cumsum(n_nodes)])
    x = np.concatenate([g[0] for g in graphs]) if graphs else np.zeros((0, 13), np.float32)
    edges = np.concatenate([g[1] + off for g, off in zip(graphs, node_off[:-1])], axis=1) if graphs else \
        np.zeros((2, 0), np.int64)
    dist = np.concatenate([g[2] for g in graphs]) if graphs else np.zeros(0, np.float32)
    batch = Batch(x=torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                  edge_index=torch.from_numpy(np.ascontiguousarray(edges, dtype=np.int64)),
                  dist=torch.from_numpy(np.ascontiguousarray(dist, dtype=np.float32)),
                  batch=torch.from_numpy(np.repeat(np.arange(len(graphs)), n_nodes)),
                  ptr=torch.from_numpy(node_off), nsites=torch.from_numpy(n_nodes))
    if graphs and all(len(g) > 3 for g in graphs):
        vec = np.concatenate([np.asarray(g[3]).reshape(-1, 3) for g in graphs])
        batch.vec = torch.from_numpy(np.ascontiguousarray(vec, dtype=np.float32))
    return batch
