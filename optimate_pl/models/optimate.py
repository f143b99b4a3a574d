"""OPTIMATE: graph attention network from a crystal graph to a spectrum (docs/domain.md §5).

node MLP -> GATv2Conv stack (edge features, concatenated heads, no self loops, and no activation
between the layers or after the last one, as in the authors' forward) -> softmax vector attention
pooling -> output MLP -> leaky_relu. Submodules carry the authors' names
(``mlp_init_node``, ``gat1``, ``gat2``, ..., ``mlp_att``, ``mlp1``), so their published plain
state_dicts load without renaming.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import MLP, GATv2Conv

from ..data.featurize import NUM_EDGE_FEATURES, NUM_NODE_FEATURES, gaussian_expand
from .masking import masked_mlp
from .readout import attention_pool, readout


def gatv2_edges(x_l: Tensor, x_r: Tensor, e: Tensor, att: Tensor, src: Tensor, dst: Tensor, num_nodes: int,
                negative_slope: float) -> Tensor:
    """The edge work of PyG's ``GATv2Conv`` (``concat``, no self loops, no attention dropout) as one function.

    ``x_l``, ``x_r`` [N, H, C] (``lin_l``/``lin_r`` of the nodes), ``e`` [E, H, C] (``lin_edge`` of the edge
    features), ``att`` [1, H, C]; returns the aggregated messages [N, H, C] (before ``bias``):
    ``alpha = softmax_dst(att . leaky_relu(x_l[src] + x_r[dst] + e))``, ``sum_dst(alpha * x_l[src])``, with
    the softmax of ``torch_geometric.utils.softmax`` (max-shifted, ``+ 1e-16`` in the denominator).

    Eager, it equals PyG's layer within float tolerance (no faster). Under ``torch.compile`` the gathers and
    element-wise ops fuse into a few loops over the edges instead of a dozen [E, H, C] temporaries: what
    :meth:`Optimate.compile_edges` uses (GATv2 layers ~1.5x faster on a 2-core CPU, see benchmarks/cpu_2core.md).
    """
    x_j = x_l.index_select(0, src)
    logits = (F.leaky_relu(x_j + x_r.index_select(0, dst) + e, negative_slope) * att).sum(-1)  # [E, H]
    heads = logits.size(1)
    top = torch.full((num_nodes, heads), float("-inf"), dtype=logits.dtype, device=logits.device)
    top = top.index_reduce_(0, dst, logits.detach(), "amax", include_self=True)
    w = (logits - top.index_select(0, dst)).exp()
    total = torch.zeros((num_nodes, heads), dtype=w.dtype, device=w.device).index_add_(0, dst, w) + 1e-16
    alpha = w / total.index_select(0, dst)
    msg = x_j * alpha.unsqueeze(-1)
    # The messages' dtype, not x_j's: under bf16 autocast the linears give bf16 and the fp32 `att` promotes
    # the attention to fp32, as in PyG's layer.
    out = torch.zeros((num_nodes, *x_l.shape[1:]), dtype=msg.dtype, device=msg.device)
    return out.index_add_(0, dst, msg)


_compiled_edges: Callable | None = None
#: Compiled versions of the edge function a process may hold (see :func:`_compiled_gatv2_edges`).
EDGE_RECOMPILE_LIMIT = 64


def dynamo_limit_name() -> str:
    """The name of dynamo's per-function limit of compiled versions (``cache_size_limit`` before torch 2.6)."""
    return "recompile_limit" if hasattr(torch._dynamo.config, "recompile_limit") else "cache_size_limit"


def _compiled_gatv2_edges() -> Callable:
    """``torch.compile(gatv2_edges, dynamic=True)``, made once per process (every batch has other N and E).

    Its C++ loops run on one thread (``cpp.threads=1``): on a 2-core CPU the edge work of the IPA network's
    gat2 (f+b, batch 128) took 39 ms with Inductor's OpenMP loops on 2 threads, 22 ms on 1 and 48 ms eager
    (benchmarks/cpu_2core.md); the node and edge linears around it stay eager and use every thread.
    """
    global _compiled_edges
    if _compiled_edges is None:
        # One graph per GAT layer width, edge-count range, grad mode (training/validation) and autocast state
        # (bf16-mixed training, fp32 test): about 20 on a TL run, above dynamo's default limit of 8, past
        # which the rest ran eager with a warning (seen on the GPAW TL run of 2026-11-28).
        config, name = torch._dynamo.config, dynamo_limit_name()
        setattr(config, name, max(getattr(config, name), EDGE_RECOMPILE_LIMIT))
        _compiled_edges = torch.compile(gatv2_edges, dynamic=True, options={"cpp.threads": 1})
    return _compiled_edges


def cxx_compiler() -> str | None:
    """The C++ compiler that Inductor's CPU code needs (``g++`` or ``c++`` on the PATH), or ``None``."""
    import shutil

    return shutil.which("g++") or shutil.which("c++")


def _gat_edges_supported(gat: GATv2Conv) -> bool:
    """Whether :func:`gatv2_edges` computes this layer (the configuration :class:`Optimate` builds)."""
    return (gat.concat and not gat.add_self_loops and not gat.share_weights and gat.res is None
            and gat.lin_edge is not None and gat.dropout == 0.0)


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
        self._edge_fn: Callable | None = None  # set by compile_edges(); a plain attribute, not in the state_dict

    def compile_edges(self, fn: Callable | None = None) -> None:
        """Run the GATv2 layers' edge work through ``torch.compile`` (:func:`gatv2_edges`); ``fn``: another
        implementation of it (the tests pass the eager function). Parameters and the state_dict are untouched."""
        if not all(_gat_edges_supported(g) for g in self.gats()):
            raise ValueError("compile_edges: a GAT layer has a configuration gatv2_edges does not implement")
        self._edge_fn = fn or _compiled_gatv2_edges()

    def uncompile_edges(self) -> None:
        """Back to PyG's GATv2 layers (undoes :meth:`compile_edges`)."""
        self._edge_fn = None

    def _gat(self, gat: GATv2Conv, h: Tensor, edge_index: Tensor, edge_attr: Tensor) -> Tensor:
        if self._edge_fn is None or edge_attr is None:
            return gat(h, edge_index, edge_attr=edge_attr)
        heads, out = gat.heads, gat.out_channels
        x_l, x_r = gat.lin_l(h).view(-1, heads, out), gat.lin_r(h).view(-1, heads, out)
        e = gat.lin_edge(edge_attr).view(-1, heads, out)
        agg = self._edge_fn(x_l, x_r, e, gat.att, edge_index[0], edge_index[1], h.size(0), gat.negative_slope)
        agg = agg.reshape(h.size(0), heads * out)
        return agg if gat.bias is None else agg + gat.bias

    def gats(self) -> list[GATv2Conv]:
        """The GAT layers in order."""
        return [getattr(self, f"gat{i}") for i in range(1, self.num_gat + 1)]

    def latents(self, batch) -> Tensor:
        """Pooled material vectors [B, heads * out of the last GAT] (softmax attention over each graph's nodes)."""
        edge_attr = batch.edge_attr if getattr(batch, "edge_attr", None) is not None else gaussian_expand(batch.dist)
        h = masked_mlp(self.mlp_init_node, batch.x, getattr(batch, "node_mask", None))
        for gat in self.gats():
            h = self._gat(gat, h, batch.edge_index, edge_attr)  # the authors apply no activation here
        return attention_pool(h, self.mlp_att, batch)

    def forward(self, batch) -> Tensor:
        return readout(self.mlp1, self.latents(batch), batch)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
