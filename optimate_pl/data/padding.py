"""Static-shape batches (``data.static_shapes=true``): batches padded to a few fixed sizes ("buckets").

Crystal graphs give every batch other node and edge counts, so a compiled step sees a new shape at every
batch and cannot be replayed as a recorded CUDA graph, which is what removes the per-kernel launch cost
that made the H200's training steps host-bound (benchmarks/gpu/nvidia-h200.md). Padding each batch to
``graphs`` = the batch size and its node and edge counts up to the next :func:`bucket` size leaves a
handful of shapes per run: ``torch.compile(mode="reduce-overhead")`` records one CUDA graph per shape and
replays it from then on. The buckets are 8 per octave, so padding adds less than 12.5 % of rows. (Padding
every batch to the largest one a split can make, a single shape, added 2.5x the edges at batch 128 and
4.5x at batch 20 on the synthetic data, whose edge counts have a long tail: 2.4x and 4.5x slower steps.)

Padding never changes a number of the real materials:

* pad nodes (zero features) all belong to an extra "trash" graph after the last one, so the attention
  pooling of the real graphs never sees them;
* pad edges are self-loops of the last pad node (length :data:`PAD_DISTANCE`, a finite direction), so no
  real node receives a message from them;
* pad graphs (when the last batch is short) have no nodes and a zero target;
* ``node_mask`` [N] and ``graph_mask`` [B] say which rows are real: batch-norm statistics and the loss
  and metrics are taken over those rows only (:mod:`optimate_pl.models.masking`).

Shapes are read from the host-side counts, so padding makes no device-to-host synchronisation.
"""
from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.data import Batch

from .featurize import gaussian_expand

#: Length (Å) and direction of the pad edges: finite and non-zero, so that no backbone divides by zero.
PAD_DISTANCE = 1.0
#: The smallest bucket.
MIN_BUCKET = 16


def bucket(n: int) -> int:
    """The smallest size >= ``n`` of the form ``m * 2**k`` with ``8 <= m < 16`` (8 sizes per octave, so
    less than 12.5 % above ``n``), at least :data:`MIN_BUCKET`."""
    if n <= MIN_BUCKET:
        return MIN_BUCKET
    k = n.bit_length() - 4  # n >> k has 4 bits: 8 <= n >> k < 16
    return -(-n >> k) << k  # ceil(n / 2**k) * 2**k


def _pad_rows(t: Tensor, rows: int, value: float | int = 0) -> Tensor:
    if rows == 0:
        return t
    return torch.cat([t, t.new_full((rows, *t.shape[1:]), value)])


def pad_batch(batch: Batch, graphs: int) -> Batch:
    """``batch`` padded to ``graphs`` graphs and to :func:`bucket` node and edge counts (at least one pad node),
    with ``node_mask``, ``graph_mask`` and ``num_real`` (the real graphs, an int).

    The real materials keep their rows (first ``num_real`` graphs, first ``N`` nodes, first ``E`` edges).
    Raises ``ValueError`` for a batch of more than ``graphs`` graphs.
    """
    b, n, e = batch.num_graphs, batch.x.size(0), batch.edge_index.size(1)
    if b > graphs:
        raise ValueError(f"a batch of {b} graphs does not fit a padded batch of {graphs} graphs")
    nodes, edges = bucket(n + 1), bucket(e)  # + the pad node that takes the pad edges
    dev = batch.x.device
    pad_n, pad_e, pad_g = nodes - n, edges - e, graphs - b
    pad_node = nodes - 1
    dist = _pad_rows(batch.dist, pad_e, PAD_DISTANCE)
    out = Batch(x=_pad_rows(batch.x, pad_n),
                edge_index=torch.cat([batch.edge_index, batch.edge_index.new_full((2, pad_e), pad_node)], dim=1),
                dist=dist,
                # the trash graph, index `graphs`, takes the pad nodes (readout.attention_pool drops it)
                batch=_pad_rows(batch.batch, pad_n, graphs),
                ptr=_pad_rows(batch.ptr, pad_g, n),
                y=_pad_rows(batch.y, pad_g),
                node_mask=torch.arange(nodes, device=dev) < n,
                graph_mask=torch.arange(graphs, device=dev) < b)
    if getattr(batch, "edge_attr", None) is not None:
        out.edge_attr = torch.cat([batch.edge_attr, gaussian_expand(dist[e:])]) if pad_e else batch.edge_attr
    for key, value in (("nsites", 0), ("ipa", 0.0), ("fidelity", 1)):  # fidelity 1: the RPA rung
        if getattr(batch, key, None) is not None:
            out[key] = _pad_rows(batch[key], pad_g, value)
    if getattr(batch, "vec", None) is not None:
        vec = batch.vec.new_zeros((pad_e, 3))
        vec[:, 0] = PAD_DISTANCE
        out.vec = torch.cat([batch.vec, vec])
    for key in ("mat_id", "formula"):  # the real materials' only
        if getattr(batch, key, None) is not None:
            out[key] = batch[key]
    out.num_real = b
    return out


def real_graphs(batch) -> int:
    """How many of a batch's graphs are materials (``num_real`` of a padded batch, else ``num_graphs``)."""
    return int(getattr(batch, "num_real", None) or batch.num_graphs)


class PadCollate:
    """``collate_fn`` of a ``DataLoader`` over a :class:`~optimate_pl.data.store.GraphDataset`: the batch its
    ``__getitems__`` built, padded to ``graphs`` (a class, not a closure, so worker processes can pickle it)."""

    def __init__(self, graphs: int) -> None:
        self.graphs = graphs

    def __call__(self, items: list[Batch]) -> Batch:
        return pad_batch(items[0], self.graphs)


class PaddedLoader:
    """The batches of a :class:`~optimate_pl.data.batching.BatchLoader` (device-resident splits), each padded
    to ``graphs`` (:func:`pad_batch`). Length and order as the wrapped loader's."""

    def __init__(self, loader, graphs: int) -> None:
        self.loader, self.graphs = loader, graphs

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        for batch in self.loader:
            yield pad_batch(batch, self.graphs)
