"""What every backbone shares: OPTIMATE's readout, from node features to a spectrum (or the SC scalar).

A backbone is a node encoder: crystal graph -> features per site [N, width]. The readout is the one of
the authors' network (docs/domain.md §5): a softmax attention over each graph's sites per channel
(``mlp_att``), the weighted sum as the material's vector, then ``mlp1`` to ``out_dim`` outputs and a
leaky ReLU. Keeping it identical for every backbone makes a comparison one of encoders only, and keeps
the names (``mlp_att``, ``mlp1``) that the prediction and latent-space tools read.

To add a backbone, subclass :class:`GraphNetwork`, build the encoder in ``__init__``, call
:meth:`GraphNetwork.build_readout` last, and implement :meth:`GraphNetwork.encode`; then point a
``conf/model/<name>.yaml`` at the class (docs/guides/backbones.md).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MLP
from torch_geometric.utils import scatter, softmax

from .masking import masked_mlp


def attention_pool(h: Tensor, mlp_att: nn.Module, batch) -> Tensor:
    """[B, width]: per channel a softmax over each graph's nodes of ``mlp_att(h)``, then the weighted sum.

    In a padded batch (``node_mask``; :mod:`optimate_pl.data.padding`) the pad nodes belong to an extra
    graph after the last one, which is pooled and dropped, and ``mlp_att``'s batch norm sees the real nodes only.
    """
    num_graphs = int(batch.num_graphs) if hasattr(batch, "num_graphs") else int(batch.batch.max()) + 1
    node_mask = getattr(batch, "node_mask", None)
    segments = num_graphs + (node_mask is not None)  # the trash graph of a padded batch is the last segment
    weights = softmax(masked_mlp(mlp_att, h, node_mask), batch.batch, num_nodes=segments, dim=0)
    pooled = scatter(weights * h, batch.batch, dim=0, dim_size=segments, reduce="sum")
    return pooled[:num_graphs]


def readout(mlp1: nn.Module, latents: Tensor, batch) -> Tensor:
    """The output MLP and leaky ReLU on the pooled vectors [B, width] -> [B, out_dim] (batch norm over the
    real graphs of a padded batch)."""
    return F.leaky_relu(masked_mlp(mlp1, latents, getattr(batch, "graph_mask", None)))


class GraphNetwork(nn.Module):
    """A backbone (node encoder, :meth:`encode`) under OPTIMATE's readout.

    Shapes: ``forward(batch)`` [B, out_dim]; ``latents(batch)`` [B, width]; ``encode(batch)`` [N, width].
    The batch carries ``x`` [N, 13], ``edge_index`` [2, E], ``dist`` [E], ``vec`` [E, 3] (centre -> neighbour
    image, Å; :func:`~optimate_pl.data.featurize.graph_arrays`) and ``batch`` [N].
    """

    def build_readout(self, width: int, out_widths: Sequence[int], out_dim: int, dropout: float = 0.0,
                      norm: str | None = "batch_norm") -> None:
        """The attention pooling and output MLP of OPTIMATE, on ``width`` node features (call it last in
        ``__init__``: parameters are created, and drawn from the seed, in the order they are built)."""
        self.mlp_att = MLP([width, width], dropout=dropout, norm=norm)
        self.mlp1 = MLP([width, *out_widths, out_dim], dropout=dropout, norm=norm)

    def encode(self, batch) -> Tensor:
        """Node features [N, width] of a batch of crystal graphs."""
        raise NotImplementedError

    def latents(self, batch) -> Tensor:
        """The pooled material vectors [B, width]."""
        return attention_pool(self.encode(batch), self.mlp_att, batch)

    def forward(self, batch) -> Tensor:
        return readout(self.mlp1, self.latents(batch), batch)


def edge_vectors(batch) -> Tensor:
    """The batch's edge vectors [E, 3], or a clear error for data featurised without them."""
    vec = getattr(batch, "vec", None)
    if vec is None:
        raise ValueError("this backbone needs edge vectors (batch.vec), which graphs featurised before featurizer "
                         "version 3 lack: delete the data cache (data.cache_dir) so that it is rebuilt")
    return vec
