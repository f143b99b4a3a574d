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


def attention_pool(h: Tensor, mlp_att: nn.Module, batch) -> Tensor:
    """[B, width]: per channel a softmax over each graph's nodes of ``mlp_att(h)``, then the weighted sum."""
    num_graphs = int(batch.num_graphs) if hasattr(batch, "num_graphs") else int(batch.batch.max()) + 1
    weights = softmax(mlp_att(h), batch.batch, num_nodes=h.size(0), dim=0)
    return scatter(weights * h, batch.batch, dim=0, dim_size=num_graphs, reduce="sum")


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
        return F.leaky_relu(self.mlp1(self.latents(batch)))


def edge_vectors(batch) -> Tensor:
    """The batch's edge vectors [E, 3], or a clear error for data featurised without them."""
    vec = getattr(batch, "vec", None)
    if vec is None:
        raise ValueError("this backbone needs edge vectors (batch.vec), which graphs featurised before featurizer "
                         "version 3 lack: delete the data cache (data.cache_dir) so that it is rebuilt")
    return vec
