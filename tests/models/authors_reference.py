"""The authors' network, featurisation and weight layouts as the paper's description spells them out.

Written from the description (graph: main group + period one-hots, every neighbour within 5 Å with
51 Gaussians; network: torch_geometric ``MLP`` -> ``GATv2Conv`` stack with no activation in
between -> softmax attention pooling with ``global_add_pool`` -> ``MLP`` -> ``leaky_relu``), never
from ``optimate_pl``'s own modules, so that the tests comparing against it check something.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from pymatgen.core import Element, Lattice, Structure
from torch import nn
from torch_geometric.data import Batch, Data
from torch_geometric.nn import MLP, GATv2Conv, Sequential, global_add_pool
from torch_geometric.utils import softmax

#: The architectures of the paper: [node MLP widths], [[out, heads] per GAT], [output MLP widths], output size.
ARCHITECTURES = {
    "ipa": ([48, 48], [[48, 4], [96, 4]], [1024, 1024, 1024], 2001),
    "sc": ([48, 48], [[48, 4], [96, 4]], [1024, 1024, 1024], 1),
    "dl_100": ([96, 96, 96], [[192, 2]], [512, 512, 512], 2001),
    "dl_300": ([96, 96, 96], [[384, 4]], [512, 512], 2001),
    "dl_1000": ([96, 96, 96], [[192, 8], [96, 8], [96, 2]], [2048, 2048, 2048], 2001),
    "dl_3000": ([48, 48, 48], [[384, 8]], [2048, 2048, 2048], 2001),
    "dl_4610": ([96, 96], [[192, 8], [192, 2]], [2048, 2048, 2048], 2001),
}


# -- featurisation ------------------------------------------------------------------------------

def reference_graph(structure: Structure) -> Data:
    """Nodes: one-hot group (1, 2, 13-18 -> 8 classes) + one-hot period (5); edges: get_all_neighbors(5)."""
    x = []
    for site in structure:
        el = Element(site.specie.symbol)
        g = el.group - 1
        if g > 1:
            g -= 10
        row = np.zeros(13, dtype=np.float32)
        row[g] = 1.0
        row[8 + el.row - 1] = 1.0
        x.append(row)
    src, dst, dist = [], [], []
    for i, neighbours in enumerate(structure.get_all_neighbors(5.0)):
        for nb in neighbours:
            src.append(i)
            dst.append(nb.index)
            dist.append(nb.nn_distance)
    d = torch.tensor(dist, dtype=torch.float32).reshape(-1, 1)
    mu = torch.linspace(0, 5, 51).reshape(1, -1)
    edge_attr = math.sqrt(10 / math.pi) * torch.exp(-10 * (d - mu) ** 2)
    return Data(x=torch.tensor(np.stack(x)), edge_index=torch.tensor([src, dst], dtype=torch.long).reshape(2, -1),
                edge_attr=edge_attr, num_nodes=len(structure))


def crystals() -> list[Structure]:
    """A handful of real-looking crystals of 1 to 8 sites, one skewed, one with a long axis."""
    fcc = lambda a: Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])  # noqa: E731
    nacl = Structure(fcc(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    gaas = Structure(fcc(5.65), ["Ga", "As"], [[0, 0, 0], [0.25, 0.25, 0.25]])
    mg2si = Structure(fcc(6.35), ["Si", "Mg", "Mg"], [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]])
    aln = Structure(Lattice.hexagonal(3.11, 4.98), ["Al", "Al", "N", "N"],
                    [[1 / 3, 2 / 3, 0], [2 / 3, 1 / 3, 0.5], [1 / 3, 2 / 3, 0.382], [2 / 3, 1 / 3, 0.882]])
    kmgf3 = Structure(Lattice.cubic(3.99), ["K", "Mg", "F", "F", "F"],
                      [[0.5, 0.5, 0.5], [0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [0, 0, 0.5]])
    si = Structure(Lattice([[3.8, 0, 0], [1.9, 3.3, 0], [0.4, 1.1, 3.2]]), ["Si", "Si"],
                   [[0, 0, 0], [0.27, 0.23, 0.26]])  # a skewed cell
    sio2 = Structure(Lattice.tetragonal(4.18, 2.67), ["Si", "Si", "O", "O", "O", "O"],
                     [[0, 0, 0], [0.5, 0.5, 0.5], [0.3, 0.3, 0], [0.7, 0.7, 0], [0.8, 0.2, 0.5], [0.2, 0.8, 0.5]])
    bn = Structure(Lattice.hexagonal(2.50, 6.66), ["B", "B", "N", "N"],
                   [[1 / 3, 2 / 3, 0.25], [2 / 3, 1 / 3, 0.75], [2 / 3, 1 / 3, 0.25], [1 / 3, 2 / 3, 0.75]])
    ar = Structure(Lattice.cubic(3.7), ["Ar"], [[0, 0, 0]])  # one site: only periodic images as neighbours
    return [nacl, gaas, mg2si, aln, kmgf3, si, sio2, bn, ar]


def reference_batch(structures: list[Structure] | None = None) -> Batch:
    return Batch.from_data_list([reference_graph(s) for s in (structures or crystals())])


# -- the network --------------------------------------------------------------------------------

def pool_and_output(x: torch.Tensor, batch: torch.Tensor, mlp_att, mlp1) -> torch.Tensor:
    att = softmax(mlp_att(x), index=batch)
    return F.leaky_relu(mlp1(global_add_pool(x * att, batch)))


class IPALayout(nn.Module):
    """The IPA-model layout (``mlp_init_node``, ``gat1``, ``gat2``, ..., ``mlp_att``, ``mlp1``)."""

    def __init__(self, node, gats, out, out_dim):
        super().__init__()
        self.mlp_init_node = MLP([13, *node])
        width = node[-1]
        self.n_gat = len(gats)
        for i, (o, h) in enumerate(gats, start=1):
            setattr(self, f"gat{i}", GATv2Conv(width, o, heads=h, edge_dim=51, concat=True, add_self_loops=False))
            width = o * h
        self.mlp_att = MLP([width, width])
        self.mlp1 = MLP([width, *out, out_dim])

    def forward(self, g):
        x = self.mlp_init_node(g.x)
        for i in range(1, self.n_gat + 1):
            x = getattr(self, f"gat{i}")(x, g.edge_index, g.edge_attr)  # no activation in between
        return pool_and_output(x, g.batch, self.mlp_att, self.mlp1)


class DLLayout(nn.Module):
    """The per-size DL layout: each part a torch_geometric ``Sequential`` container."""

    def __init__(self, node, gats, out, out_dim):
        super().__init__()
        self.mlp_init_node = Sequential("x", [(MLP([13, *node]), "x -> x")])
        layers, width = [], node[-1]
        for o, h in gats:
            layers.append((GATv2Conv(width, o, heads=h, edge_dim=51, concat=True, add_self_loops=False),
                           "x, edge_index, edge_attr -> x"))
            width = o * h
        self.gat = Sequential("x, edge_index, edge_attr", layers)
        self.mlp_att = Sequential("x", [(MLP([width, width]), "x -> att")])
        self.mlp1 = Sequential("x", [(MLP([width, *out, out_dim]), "x -> x")])

    def forward(self, g):
        x = self.gat(self.mlp_init_node(g.x), g.edge_index, g.edge_attr)
        return pool_and_output(x, g.batch, self.mlp_att, self.mlp1)


class LightningHolder(nn.Module):
    """What the authors' LightningModule saves: the network as ``gatnn``."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.gatnn = net

    def forward(self, g):
        return self.gatnn(g)


def authors_network(name: str, layout: str, seed: int = 0) -> nn.Module:
    """The network ``name`` in a published ``layout`` (``ipa``, ``tl`` or ``dl``), eval mode, random weights.

    Every parameter and BatchNorm statistic is drawn at random, so that a missing or extra
    operation anywhere shows in the output.
    """
    torch.manual_seed(seed)
    node, gats, out, out_dim = ARCHITECTURES[name]
    net = DLLayout(node, gats, out, out_dim) if layout == "dl" else IPALayout(node, gats, out, out_dim)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if key.endswith("running_var"):
                t.copy_(torch.rand_like(t) + 0.5)
            elif key.endswith(".weight") and ".norms." in key:
                t.copy_(1 + 0.2 * torch.randn_like(t))
            elif t.dim() == 2:  # weight matrices: unit-variance activations, layer after layer
                t.copy_(torch.randn_like(t) / math.sqrt(t.shape[1]))
            elif t.is_floating_point():
                t.copy_(0.3 * torch.randn_like(t))
    net = LightningHolder(net) if layout in ("tl", "dl") else net
    return net.eval()
