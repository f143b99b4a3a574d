"""A featurised database held as a few concatenated tensors (like PyG's collated in-memory data).

One ``GraphStore`` holds every material of a database: node features, edges and distances of all
graphs back to back with pointer arrays, plus the spectra. It saves and loads as one file. A
``GraphDataset`` serves some of its materials: single graphs by index, or whole batches gathered by
:class:`~optimate_pl.data.batching.GraphBatcher`.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Batch, Data

from ..utils.atomic import atomic_torch_save
from ..spectra.metrics import similarity_coefficient
from .batching import GraphBatcher
from .featurize import gaussian_expand

#: The targets a store can yield (what a model predicts from them: optimate_pl.models.targets).
TARGETS = ("eps_imag", "sc_rpa_ipa")


@dataclass
class GraphStore:
    """All graphs of one database, concatenated.

    Shapes: ``x`` [N, 13], ``edge_index`` [2, E] (node indices local to each graph), ``dist`` [E],
    ``node_ptr``/``edge_ptr`` [M + 1], ``spectrum`` [M, 2001], ``ipa`` [M, 2001] or None,
    ``nsites`` [M]; ``mat_id``/``formula`` lists of M strings; ``vec`` [E, 3] the edge vectors (for the
    geometric backbones; None in a store built from distances only).
    """

    x: Tensor
    edge_index: Tensor
    dist: Tensor
    node_ptr: Tensor
    edge_ptr: Tensor
    spectrum: Tensor
    nsites: Tensor
    mat_id: list[str]
    formula: list[str]
    ipa: Tensor | None = None
    vec: Tensor | None = None
    #: [M] the rung of each row's spectrum in a store of both (0 IPA, 1 RPA: data.multifidelity); else None.
    fidelity: Tensor | None = None
    #: where each material comes from (``gpaw``, ``figshare``, ``files:<folder>``) in a mixed store; else None.
    origin: list[str] | None = None
    #: [M] the cell's volume per site (Å³), for the model's domain (data.domain); None in a store without it.
    volume: Tensor | None = None

    def __len__(self) -> int:
        return len(self.mat_id)

    @classmethod
    def from_graphs(cls, graphs: Sequence[tuple[np.ndarray, ...]], spectra: np.ndarray,
                    mat_ids: Sequence[str], formulas: Sequence[str], ipa: np.ndarray | None = None) -> "GraphStore":
        """Build from per-material ``(x [n,13], edge_index [2,E], dist [E], vec [E,3])`` arrays (``vec`` optional)."""
        n_nodes = np.array([g[0].shape[0] for g in graphs])
        n_edges = np.array([g[1].shape[1] for g in graphs])
        return cls(
            x=torch.from_numpy(np.concatenate([g[0] for g in graphs]).astype(np.float32)),
            edge_index=torch.from_numpy(np.concatenate([g[1] for g in graphs], axis=1).astype(np.int64)),
            dist=torch.from_numpy(np.concatenate([g[2] for g in graphs]).astype(np.float32)),
            node_ptr=torch.from_numpy(np.concatenate([[0], np.cumsum(n_nodes)])),
            edge_ptr=torch.from_numpy(np.concatenate([[0], np.cumsum(n_edges)])),
            spectrum=torch.from_numpy(np.asarray(spectra, dtype=np.float32)),
            nsites=torch.from_numpy(n_nodes),
            mat_id=list(mat_ids), formula=list(formulas),
            ipa=None if ipa is None else torch.from_numpy(np.asarray(ipa, dtype=np.float32)),
            vec=torch.from_numpy(np.concatenate([g[3] for g in graphs]).astype(np.float32).reshape(-1, 3))
            if graphs and all(len(g) > 3 for g in graphs) else None,
        )

    @classmethod
    def concat(cls, stores: Sequence["GraphStore"]) -> "GraphStore":
        """The materials of ``stores`` in one store, in order (edge indices are local to each graph, so the
        graphs are stacked as they are; the pointers are offset)."""
        def cat_ptr(name: str) -> Tensor:
            parts, offset = [getattr(stores[0], name)[:1]], 0
            for s in stores:
                ptr = getattr(s, name)
                parts.append(ptr[1:] - ptr[0] + offset)
                offset += int(ptr[-1] - ptr[0])
            return torch.cat(parts)

        def cat_optional(name: str) -> Tensor | None:
            values = [getattr(s, name) for s in stores]
            return None if any(v is None for v in values) else torch.cat(values)

        return cls(x=torch.cat([s.x for s in stores]), edge_index=torch.cat([s.edge_index for s in stores], dim=1),
                   dist=torch.cat([s.dist for s in stores]), node_ptr=cat_ptr("node_ptr"), edge_ptr=cat_ptr("edge_ptr"),
                   spectrum=torch.cat([s.spectrum for s in stores]), nsites=torch.cat([s.nsites for s in stores]),
                   mat_id=[m for s in stores for m in s.mat_id], formula=[f for s in stores for f in s.formula],
                   ipa=cat_optional("ipa"), vec=cat_optional("vec"), fidelity=cat_optional("fidelity"),
                   volume=cat_optional("volume"),
                   origin=None if any(s.origin is None for s in stores) else [o for s in stores for o in s.origin])

    def subset(self, rows: Sequence[int]) -> "GraphStore":
        """The materials ``rows`` as a store of their own."""
        rows = list(rows)
        out = GraphStore.from_graphs([self.arrays(i) for i in rows], self.spectrum[rows].numpy(),
                                     [self.mat_id[i] for i in rows], [self.formula[i] for i in rows],
                                     None if self.ipa is None else self.ipa[rows].numpy())
        out.fidelity = None if self.fidelity is None else self.fidelity[rows]
        out.origin = None if self.origin is None else [self.origin[i] for i in rows]
        out.volume = None if self.volume is None else self.volume[rows]
        return out

    def save(self, path: str | Path, meta: dict | None = None) -> None:
        """Atomically write the store (and a metadata dict) to one file, with its checksum sidecar
        (:func:`~optimate_pl.utils.atomic.verify_file` tells a damaged cache file from a good one)."""
        payload = {f.name: getattr(self, f.name) for f in fields(self)}
        payload["meta"] = meta or {}
        atomic_torch_save(payload, path, checksum=True)

    @classmethod
    def load(cls, path: str | Path) -> tuple["GraphStore", dict]:
        """Load a store written by :meth:`save` (tensors and plain lists only: ``weights_only``)."""
        payload = torch.load(path, map_location="cpu", weights_only=True)
        meta = payload.pop("meta")
        return cls(**payload), meta

    def index_of(self) -> dict[str, int]:
        """``mat_id -> row``."""
        return {m: i for i, m in enumerate(self.mat_id)}

    def arrays(self, i: int) -> tuple[np.ndarray, ...]:
        """``(x, edge_index, dist, vec)`` of material ``i`` as NumPy arrays (without ``vec`` where the store has none)."""
        n0, n1 = int(self.node_ptr[i]), int(self.node_ptr[i + 1])
        e0, e1 = int(self.edge_ptr[i]), int(self.edge_ptr[i + 1])
        out = (self.x[n0:n1].numpy(), self.edge_index[:, e0:e1].numpy(), self.dist[e0:e1].numpy())
        return out if self.vec is None else (*out, self.vec[e0:e1].numpy())

    def target(self, name: str) -> Tensor:
        """The regression target per material: ``eps_imag`` [M, 2001] or ``sc_rpa_ipa`` [M, 1]."""
        if name == "eps_imag":
            return self.spectrum
        if name == "sc_rpa_ipa":
            if self.ipa is None:
                raise ValueError("target sc_rpa_ipa needs RPA data (with the IPA spectra of the RPA workflow)")
            # SC[RPA; IPA]: the IPA spectrum is the reference here (the paper's SC predictor).
            return similarity_coefficient(self.spectrum, self.ipa).unsqueeze(-1)
        raise ValueError(f"unknown target {name!r}; choose one of {TARGETS}")


class GraphDataset(torch.utils.data.Dataset):
    """Materials ``rows`` of a :class:`GraphStore` as PyG ``Data`` objects with target ``y``.

    Each item has ``x``, ``edge_index``, ``edge_attr`` (Gaussian expansion, computed on access so
    the cache holds distances only), ``dist``, ``y`` [1, D], ``mat_id``, ``formula``, ``nsites``
    and, for RPA data, ``ipa`` [1, 2001] (the baseline spectrum).
    """

    def __init__(self, store: GraphStore, rows: Sequence[int], target: str = "eps_imag") -> None:
        self.store = store
        self.rows = torch.as_tensor(list(rows), dtype=torch.long)
        self.target_name = target
        self.y = store.target(target)
        self._cpu_batcher: GraphBatcher | None = None

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def mat_ids(self) -> list[str]:
        return [self.store.mat_id[i] for i in self.rows.tolist()]

    @property
    def targets(self) -> Tensor:
        """[n, D] the target ``y`` of every item, in order (without gathering any graph)."""
        return self.y[self.rows]

    def __getitem__(self, k: int) -> Data:
        s, i = self.store, int(self.rows[k])
        n0, n1 = int(s.node_ptr[i]), int(s.node_ptr[i + 1])
        e0, e1 = int(s.edge_ptr[i]), int(s.edge_ptr[i + 1])
        dist = s.dist[e0:e1]
        data = Data(x=s.x[n0:n1], edge_index=s.edge_index[:, e0:e1], edge_attr=gaussian_expand(dist), dist=dist,
                    y=self.y[i:i + 1], mat_id=s.mat_id[i], formula=s.formula[i], nsites=int(s.nsites[i]),
                    num_nodes=n1 - n0)
        if s.ipa is not None:
            data.ipa = s.ipa[i:i + 1]
        if s.vec is not None:
            data.vec = s.vec[e0:e1]
        if s.fidelity is not None:
            data.fidelity = s.fidelity[i:i + 1]
        return data

    def batcher(self, device: torch.device | str = "cpu") -> GraphBatcher:
        """A :class:`GraphBatcher` over this dataset's materials, its tensors on ``device``."""
        return GraphBatcher(self.store, self.rows, self.y, device)

    def collate(self, ks: Sequence[int]) -> Batch:
        """A batch of items ``ks``, equal to ``Batch.from_data_list([self[k] for k in ks])`` (tested).

        Gathered from the concatenated store with a few tensor ops instead of building one ``Data``
        per material, and with the Gaussian edge features expanded once per batch: this is what
        keeps our ``DataLoader`` at least as fast as a list of precomputed ``Data`` objects.
        """
        if self._cpu_batcher is None:
            self._cpu_batcher = self.batcher("cpu")
        return self._cpu_batcher.batch(ks)

    def batches(self, batch_size: int = 256, ks: Sequence[int] | None = None) -> Iterator[Batch]:
        """Consecutive batches of at most ``batch_size`` of the items ``ks`` (default: all), in order:
        what every evaluation over a dataset iterates."""
        ks = range(len(self)) if ks is None else list(ks)
        for i in range(0, len(ks), batch_size):
            yield self.collate(ks[i:i + batch_size])

    def __getitems__(self, ks: list[int]) -> list[Batch]:
        # torch's DataLoader fetches a whole batch of indices through this hook (see
        # ``batching.collate_prebatched``), so a batch is one gather, not ``batch_size`` ``__getitem__`` calls.
        return [self.collate(ks)]
