"""Device-resident batches: the whole featurised split lives on the device, batches are gathered by index.

Small crystal graphs leave a GPU mostly idle when a ``DataLoader`` builds every batch in Python on
the CPU (one ``Data`` per material, PyG collation, host-to-device copy). Here the concatenated
tensors of a :class:`GraphStore` are moved to the device once; a batch is a handful of
``repeat_interleave``/gather ops on the device. The result equals PyG's collation of the same
materials (tested), so the loss is identical to the plain path. On the CPU the same gather (with
``device="cpu"``, no copies of the graph tensors) is how :meth:`GraphDataset.collate` builds the
batches of our ordinary ``DataLoader``.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch_geometric.data import Batch

from .featurize import gaussian_expand

if TYPE_CHECKING:  # store.py uses this module for its own collation
    from .store import GraphDataset


class DeviceGraphBatcher:
    """Gathers PyG batches of a :class:`GraphDataset` on ``device`` without per-graph Python work."""

    def __init__(self, dataset: "GraphDataset", device: torch.device | str = "cpu") -> None:
        s = dataset.store
        self.dataset = dataset
        self.device = torch.device(device)
        rows = dataset.rows
        # Node/edge counts stay on the CPU: batch sizes are known without a device sync.
        self.n_nodes = (s.node_ptr[rows + 1] - s.node_ptr[rows])
        self.n_edges = (s.edge_ptr[rows + 1] - s.edge_ptr[rows])
        self.node_start = s.node_ptr[rows].to(self.device)
        self.edge_start = s.edge_ptr[rows].to(self.device)
        self.x = s.x.to(self.device)
        self.edge_index = s.edge_index.to(self.device)
        self.dist = s.dist.to(self.device)
        self.y = dataset.y[rows].to(self.device)
        self.ipa = s.ipa[rows].to(self.device) if s.ipa is not None else None
        self.nsites = s.nsites[rows].to(self.device)

    def __len__(self) -> int:
        return len(self.dataset)

    def _ranges(self, starts: Tensor, counts_cpu: Tensor, counts_dev: Tensor) -> tuple[Tensor, Tensor]:
        total = int(counts_cpu.sum())
        offsets = torch.cumsum(counts_dev, 0) - counts_dev  # exclusive prefix sum: where each graph starts
        rep_offsets = torch.repeat_interleave(offsets, counts_dev, output_size=total)
        local = torch.arange(total, device=self.device) - rep_offsets
        return torch.repeat_interleave(starts, counts_dev, output_size=total) + local, offsets

    def batch(self, k: Sequence[int] | Tensor) -> Batch:
        """The batch of dataset items ``k`` (positions in the dataset), built on the device."""
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
        rows = self.dataset.rows[k_cpu].tolist()
        batch.mat_id = [self.dataset.store.mat_id[i] for i in rows]
        batch.formula = [self.dataset.store.formula[i] for i in rows]
        batch._num_graphs = b
        return batch

    def iterate(self, batch_size: int, shuffle: bool, drop_last: bool = False,
                generator: torch.Generator | None = None) -> Iterator[Batch]:
        """Batches over the whole dataset (a shuffled permutation when ``shuffle``)."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last and n >= batch_size else n
        for i in range(0, stop, batch_size):
            yield self.batch(order[i:i + batch_size])


class DeviceBatchLoader:
    """An iterable a Lightning ``Trainer`` can use as a dataloader: re-shuffles every epoch."""

    def __init__(self, batcher: DeviceGraphBatcher, batch_size: int, shuffle: bool, drop_last: bool = False,
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
