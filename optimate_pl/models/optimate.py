"""OPTIMATE: graph attention network from a crystal graph to a spectrum (docs/domain.md §5).

node MLP -> GATv2Conv stack (edge features, concatenated heads, no self loops, and no activation
between the layers or after the last one, as in the authors' forward) -> softmax vector attention
pooling -> output MLP -> leaky_relu. Submodules carry the authors' names
(``mlp_init_node``, ``gat1``, ``gat2``, ..., ``mlp_att``, ``mlp1``), so their published plain
state_dicts load without renaming.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MLP, GATv2Conv
from torch_geometric.utils import scatter, softmax

from ..data.featurize import NUM_EDGE_FEATURES, NUM_NODE_FEATURES, gaussian_expand


class Optimate(nn.Module):
    """OPTIMATE network.

    Args:
        node_widths: hidden widths of the node MLP, e.g. ``[48, 48]``.
        gat_layers: ``[[out_channels, heads], ...]`` per GATv2 layer, e.g. ``[[48, 4], [96, 4]]``.
        out_widths: hidden widths of the output MLP, e.g. ``[1024, 1024, 1024]``.
        out_dim: 2001 for spectra, 1 for the SC[RPA;IPA] model.
        dropout: dropout inside the MLPs.
        norm: normalisation inside the MLPs (torch_geometric ``MLP``'s default, ``batch_norm``).

    Shapes: ``forward(batch)`` takes a PyG batch with ``x`` [N, 13], ``edge_index`` [2, E],
    ``edge_attr`` [E, 51] (or ``dist`` [E]) and ``batch`` [N] and returns [B, out_dim];
    ``latents(batch)`` returns the pooled material vectors [B, heads * out_channels of the last GAT].
    """

    def __init__(self, node_widths: Sequence[int] = (48, 48), gat_layers: Sequence[Sequence[int]] = ((48, 4), (96, 4)),
                 out_widths: Sequence[int] = (1024, 1024, 1024), out_dim: int = 2001, dropout: float = 0.0,
                 norm: str | None = "batch_norm", node_in: int = NUM_NODE_FEATURES,
                 edge_dim: int = NUM_EDGE_FEATURES) -> None:
        super().__init__()
        if not gat_layers:
            raise ValueError("OPTIMATE needs at least one GAT layer")
        self.mlp_init_node = MLP([node_in, *node_widths], dropout=dropout, norm=norm)
        width = node_widths[-1] if node_widths else node_in
        self.num_gat = len(gat_layers)
        for i, (out, heads) in enumerate(gat_layers, start=1):
            self.add_module(f"gat{i}", GATv2Conv(width, int(out), heads=int(heads), concat=True, edge_dim=edge_dim,
                                                  add_self_loops=False))
            width = int(out) * int(heads)
        self.mlp_att = MLP([width, width], dropout=dropout, norm=norm)
        self.mlp1 = MLP([width, *out_widths, out_dim], dropout=dropout, norm=norm)

    def gats(self) -> list[GATv2Conv]:
        """The GAT layers in order."""
        return [getattr(self, f"gat{i}") for i in range(1, self.num_gat + 1)]

    def latents(self, batch) -> Tensor:
        """Pooled material vectors [B, heads * out of the last GAT] (softmax attention over each graph's nodes)."""
        edge_attr = batch.edge_attr if getattr(batch, "edge_attr", None) is not None else gaussian_expand(batch.dist)
        h = self.mlp_init_node(batch.x)
        for gat in self.gats():
            h = gat(h, batch.edge_index, edge_attr=edge_attr)  # the authors apply no activation here
        num_graphs = int(batch.num_graphs) if hasattr(batch, "num_graphs") else int(batch.batch.max()) + 1
        # A score per node and channel, softmax over the nodes of each graph, weighted sum.
        weights = softmax(self.mlp_att(h), batch.batch, num_nodes=h.size(0), dim=0)
        return scatter(weights * h, batch.batch, dim=0, dim_size=num_graphs, reduce="sum")

    def forward(self, batch) -> Tensor:
        return F.leaky_relu(self.mlp1(self.latents(batch)))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
