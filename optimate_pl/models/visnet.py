"""An equivariant backbone: PyG's ViSNet layers on periodic crystal graphs, under OPTIMATE's readout.

ViSNet (Wang et al., Nat. Commun. 2024) carries a vector feature per atom beside the scalar one and
mixes them through the edge directions: E(3)-equivariant message passing in the family of PaiNN,
GotenNet and eSCN (the equivariant backbones the field reports for optical spectra: GotenNetOpt, the
eSCN variant of OptiMetal). The layers are PyG's (``torch_geometric.nn.models.visnet``: ``ViSNetBlock``'s
radial basis, neighbour and edge embeddings, ``ViS_MP`` layers, norms); what its ``forward`` does for
molecules is replaced:

* the graph is the crystal's periodic multigraph with the data's edge vectors (no ``radius_graph``);
* ViSNet drops edges whose two ends are one atom (its self-loops); in a crystal those are an atom's
  periodic images, real neighbours (every edge of a one-site cell), so they are kept;
* atoms are embedded from OPTIMATE's 13 node features by a linear map instead of by atomic number.

The readout pools the scalar channel (invariant, as the trace of Im ε is).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..data.featurize import NUM_NODE_FEATURES
from .readout import GraphNetwork, edge_vectors


class ViSNetCrystal(GraphNetwork):
    """Equivariant backbone (ViSNet layers) + OPTIMATE readout.

    Args:
        width: ViSNet's ``hidden_channels`` (scalar and vector features per atom; what the readout pools).
        layers: message-passing layers.
        heads: attention heads.
        num_rbf: radial basis functions.
        lmax: degree of the edge directions' spherical harmonics (1 or 2).
        cutoff: the graph's cutoff (Å; ``data.cutoff``), where the cosine cutoff reaches 0.
        out_widths, out_dim, dropout, norm: the readout's (as :class:`~optimate_pl.models.Optimate`).
    """

    def __init__(self, width: int = 96, layers: int = 3, heads: int = 8, num_rbf: int = 32, lmax: int = 1,
                 cutoff: float = 5.0, out_widths: Sequence[int] = (1024, 1024, 1024), out_dim: int = 2001,
                 dropout: float = 0.0, norm: str | None = "batch_norm", node_in: int = NUM_NODE_FEATURES) -> None:
        super().__init__()
        from torch_geometric.nn.models.visnet import ViSNetBlock

        if width % heads:
            raise ValueError(f"ViSNet: width {width} must be a multiple of heads {heads}")
        block = ViSNetBlock(lmax=lmax, num_heads=heads, num_layers=layers, hidden_channels=width, num_rbf=num_rbf,
                            cutoff=cutoff)
        self.lmax = int(lmax)
        self.embedding = nn.Linear(node_in, width, bias=False)
        block.neighbor_embedding.embedding = nn.Linear(node_in, width, bias=False)
        self.sphere, self.distance_expansion = block.sphere, block.distance_expansion
        self.neighbor_embedding, self.edge_embedding = block.neighbor_embedding, block.edge_embedding
        self.vis_mp_layers, self.out_norm, self.vec_out_norm = block.vis_mp_layers, block.out_norm, block.vec_out_norm
        self.build_readout(width, out_widths, out_dim, dropout, norm)

    def encode(self, batch) -> Tensor:
        edge_index, dist = batch.edge_index, batch.dist
        # PyG's convention: the source's position minus the target's, normalised (our vectors point the other way).
        edge_vec = self.sphere(-edge_vectors(batch) / dist.unsqueeze(1))
        edge_attr = self.distance_expansion(dist)
        x = self.embedding(batch.x)
        # NeighborEmbedding.forward without its self-loop mask (see the module docstring).
        ne = self.neighbor_embedding
        w = ne.distance_proj(edge_attr) * ne.cutoff(dist).view(-1, 1)
        neighbours = ne.propagate(edge_index, x=ne.embedding(batch.x), W=w)
        x = ne.combine(torch.cat([x, neighbours], dim=1))
        vec = torch.zeros(x.size(0), (self.lmax + 1) ** 2 - 1, x.size(1), dtype=x.dtype, device=x.device)
        edge_attr = self.edge_embedding(edge_index, edge_attr, x)
        for layer in self.vis_mp_layers:
            dx, dvec, dedge = layer(x, vec, edge_index, dist, edge_attr, edge_vec)
            x, vec = x + dx, vec + dvec
            if dedge is not None:
                edge_attr = edge_attr + dedge
        return self.out_norm(x)
