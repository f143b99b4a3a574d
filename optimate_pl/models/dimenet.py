"""A three-body backbone: PyG's DimeNet++ blocks on periodic crystal graphs, under OPTIMATE's readout.

DimeNet++ (Gasteiger et al., 2020) passes messages between edges, weighted by the angle between
them: the directional, three-body information a two-body network such as OPTIMATE lacks (the
authors' follow-up OptiMetal3B adds triplet message passing for the same reason). The layers are
PyG's own (``torch_geometric.nn.models.DimeNetPlusPlus``: Bessel and spherical bases, embedding,
interaction and output blocks); only what PyG's ``forward`` does for molecules is replaced:

* the graph is the crystal's periodic multigraph from the data (no ``radius_graph`` on positions),
  with the triplets of :func:`~optimate_pl.models.triplets.triplets` (images of one atom are distinct);
* an atom's embedding is a linear map of OPTIMATE's 13 node features (main group, period) instead of
  a lookup by atomic number, so every backbone sees the same input;
* triplets are formed among the edges up to ``triplet_cutoff`` (4 Å: M3GNet's three-body cutoff),
  every edge of the 5 Å graph still carries its two-body message: a crystal has ~50 neighbours within
  5 Å and ~2,500 triplets per atom at that range, too many for a CPU;
* the output blocks' sum per atom is the node feature [N, out_channels] that the readout pools;
* each interaction block runs through :func:`interaction_pp` (same parameters, same result), which
  computes the triplet part only on the edges that take part in triplets: less work on a crystal
  graph, where half the edges lie beyond ``triplet_cutoff``;
* the activation is ``torch.nn.functional.silu``, the same swish as PyG's ``x * x.sigmoid()`` in one
  fused kernel (forward and backward).
"""
from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from ..data.cache import default_cache_dir
from ..data.featurize import NUM_NODE_FEATURES
from ..utils.atomic import atomic_write_text
from .readout import GraphNetwork, edge_vectors
from .triplets import triplets

log = logging.getLogger(__name__)
_BESSEL: dict[tuple[int, int], list] = {}


def _bessel_file(num_spherical: int, num_radial: int) -> Path:
    import sympy
    import torch_geometric

    return default_cache_dir() / "dimenet" / (f"bessel_{num_spherical}x{num_radial}_pyg{torch_geometric.__version__}"
                                              f"_sympy{sympy.__version__}.json")


#: The default network's basis (7 spherical x 6 radial), shipped: PyG 2.8.1's formulas as ``sympy.srepr`` text,
#: checked against scipy's spherical Bessel functions in the tests. A first DimeNet++ run on a fresh machine (and
#: every CI run) skips the 25 s of sympy.
SHIPPED_BESSEL = {(7, 6): Path(__file__).with_name("dimenet_bessel_7x6.json")}


def cached_bessel_basis(original, num_spherical: int, num_radial: int) -> list:
    """PyG's ``dimenet_utils.bessel_basis`` (``original``), kept in this process and on disk.

    PyG derives DimeNet++'s spherical Bessel basis with sympy at every construction: 25 s of the 32 s that
    building the default network (7 x 6 basis) took on a 2-core CPU, paid again by every run, prediction,
    pretraining and ensemble member. The formulas depend on the two sizes only; they are stored as
    ``sympy.srepr`` text under ``$OPTIMATE_PL_CACHE/dimenet/`` (keyed by the PyG and sympy versions) and read
    back in well under a second; the default sizes' are shipped with the package (:data:`SHIPPED_BESSEL`).
    An unreadable file is recomputed and rewritten.
    """
    import sympy

    key = (num_spherical, num_radial)
    if key in _BESSEL:
        return _BESSEL[key]
    path = _bessel_file(*key)
    forms = None
    for source in (path, SHIPPED_BESSEL.get(key)):
        if forms is None and source is not None and source.exists():
            try:
                forms = [[sympy.sympify(text) for text in row] for row in json.loads(source.read_text())]
            except Exception as err:  # noqa: BLE001 - a damaged cache file is rebuilt, never trusted
                log.warning("DimeNet++ basis file %s unreadable (%s): not used", source, err)
    if forms is None:
        forms = original(num_spherical, num_radial)
        with contextlib.suppress(OSError):  # a read-only cache folder only costs the time again
            atomic_write_text(json.dumps([[sympy.srepr(f) for f in row] for row in forms]), path)
    _BESSEL[key] = forms
    return forms


@contextlib.contextmanager
def _bessel_basis_cached() -> Iterator[None]:
    """While DimeNet++ is built, its ``SphericalBasisLayer`` takes the basis from :func:`cached_bessel_basis`."""
    from torch_geometric.nn.models import dimenet_utils

    original = dimenet_utils.bessel_basis
    dimenet_utils.bessel_basis = lambda n, k: cached_bessel_basis(original, n, k)
    try:
        yield
    finally:
        dimenet_utils.bessel_basis = original


def interaction_pp(block, x: Tensor, rbf: Tensor, sbf: Tensor, sub: Tensor, kj: Tensor, ji: Tensor) -> Tensor:
    """PyG's ``InteractionPPBlock.forward`` with the block's own parameters, less work on a crystal graph.

    ``x`` [E, hidden] and ``rbf`` [E, num_radial] are per edge, ``sbf`` [T, num_spherical * num_radial] per
    triplet; ``sub`` [S] lists the edges that take part in triplets and ``kj``/``ji`` [T] are each triplet's two
    edges as positions in ``sub``. Equal to ``block(x, rbf, sbf, sub[kj], sub[ji])`` (tested in fp64, values and
    gradients) because the down-projected message ``x_kj`` is only read at the triplets' ``kj`` edges, and the
    aggregated one is zero off their ``ji`` edges, where ``act(lin_up(0)) = 0`` (``lin_up`` has no bias and the
    activation, swish, is 0 at 0; another activation would need the up-projection on every edge): both run on
    ``sub`` only (the edges of 4-5 Å, about half of a 5 Å crystal graph, have no triplets).
    """
    act = block.act
    x_ji = act(block.lin_ji(x))
    x_kj = act(block.lin_kj(x[sub])) * block.lin_rbf2(block.lin_rbf1(rbf[sub]))
    x_kj = act(block.lin_down(x_kj))
    sbf = block.lin_sbf2(block.lin_sbf1(sbf))
    x_kj = scatter(x_kj[kj] * sbf, ji, dim=0, dim_size=sub.numel(), reduce="sum")
    h = x_ji.index_add(0, sub, act(block.lin_up(x_kj)))
    for layer in block.layers_before_skip:
        h = layer(h)
    h = act(block.lin(h)) + x
    for layer in block.layers_after_skip:
        h = layer(h)
    return h


class DimeNetCrystal(GraphNetwork):
    """Three-body backbone (DimeNet++ blocks) + OPTIMATE readout.

    Args:
        hidden: DimeNet++'s ``hidden_channels`` (edge message width).
        width: node features given to the readout (DimeNet++'s ``out_channels``).
        blocks: interaction blocks.
        int_emb, basis_emb, out_emb: DimeNet++'s ``int_emb_size``, ``basis_emb_size``, ``out_emb_channels``.
        num_spherical, num_radial: sizes of the angular and radial bases.
        cutoff: the graph's cutoff (Å; the data's ``data.cutoff``), where the radial envelope reaches 0.
        triplet_cutoff: edges up to this length (Å) take part in triplets.
        out_widths, out_dim, dropout, norm: the readout's (as :class:`~optimate_pl.models.Optimate`).
    """

    def __init__(self, hidden: int = 64, width: int = 128, blocks: int = 3, int_emb: int = 32, basis_emb: int = 8,
                 out_emb: int = 128, num_spherical: int = 7, num_radial: int = 6, cutoff: float = 5.0,
                 triplet_cutoff: float = 4.0, out_widths: Sequence[int] = (1024, 1024, 1024), out_dim: int = 2001,
                 dropout: float = 0.0, norm: str | None = "batch_norm", node_in: int = NUM_NODE_FEATURES) -> None:
        super().__init__()
        from torch_geometric.nn.models import DimeNetPlusPlus

        self.triplet_cutoff = float(triplet_cutoff)
        with _bessel_basis_cached():
            dimenet = DimeNetPlusPlus(hidden_channels=hidden, out_channels=width, num_blocks=blocks, int_emb_size=int_emb,
                                      basis_emb_size=basis_emb, out_emb_channels=out_emb,
                                      num_spherical=num_spherical, num_radial=num_radial, cutoff=cutoff,
                                      output_initializer="glorot_orthogonal", act=nn.functional.silu)
        # Same inputs as every backbone: OPTIMATE's node features, not a lookup by atomic number.
        dimenet.emb.emb = nn.Linear(node_in, hidden, bias=False)
        self.rbf, self.sbf, self.emb = dimenet.rbf, dimenet.sbf, dimenet.emb
        self.interaction_blocks, self.output_blocks = dimenet.interaction_blocks, dimenet.output_blocks
        self.build_readout(width, out_widths, out_dim, dropout, norm)

    def encode(self, batch) -> Tensor:
        vec = edge_vectors(batch)
        edge_index, dist = batch.edge_index, batch.dist
        j, i = edge_index  # PyG's flow: messages from edge_index[0] to edge_index[1]
        num_nodes = batch.x.size(0)
        # The edges that take part in triplets, and each triplet's two edges as positions among them.
        sub = (dist <= self.triplet_cutoff).nonzero().squeeze(1)
        kj, ji = triplets(edge_index[:, sub], vec[sub], num_nodes)
        # The angle DimeNetPlusPlus.forward measures, from the edge vectors instead of positions.
        v_jk, v_ij = vec[sub[kj]], vec[sub[ji]]
        angle = torch.atan2(torch.cross(v_ij, v_jk, dim=1).norm(dim=-1), (v_ij * v_jk).sum(dim=-1))
        rbf = self.rbf(dist)
        sbf = self.sbf(dist[sub], angle, kj)
        x = self.emb(batch.x, rbf, i, j)
        h = self.output_blocks[0](x, rbf, i, num_nodes=num_nodes)
        for interaction, output in zip(self.interaction_blocks, self.output_blocks[1:]):
            x = interaction_pp(interaction, x, rbf, sbf, sub, kj, ji)
            h = h + output(x, rbf, i, num_nodes=num_nodes)
        return h
