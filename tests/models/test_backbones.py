"""The backbones beside OPTIMATE: geometry they read, invariances, every strategy, weight files, a user's own."""
from __future__ import annotations

import itertools
import math
import sys

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure

from optimate_pl.data.batching import batch_from_arrays
from optimate_pl.data.featurize import graph_arrays
from optimate_pl.models.backbones import architecture, make_network
from optimate_pl.models.triplets import triplets
from tests.docs_blocks import code_block

SMALL = {"dimenet": dict(_target_="optimate_pl.models.dimenet.DimeNetCrystal", hidden=16, width=16, blocks=1,
                         int_emb=8, basis_emb=4, out_emb=16, out_widths=[32], triplet_cutoff=3.0,
                         num_spherical=3, num_radial=3),  # PyG builds the 7x6 bases with sympy: 32 s, 3x3: 2.5 s
         "visnet": dict(_target_="optimate_pl.models.visnet.ViSNetCrystal", width=16, layers=2, heads=4,
                        out_widths=[32])}


def _wurtzite() -> Structure:
    """A polar, non-centrosymmetric 4-site cell (ZnO-like wurtzite with Mg/O), where angles matter."""
    return Structure.from_spacegroup("P6_3mc", Lattice.hexagonal(3.25, 5.2), ["Mg", "O"],
                                     [[1 / 3, 2 / 3, 0.0], [1 / 3, 2 / 3, 0.38]])


def test_edge_vectors_are_pymatgens_neighbour_vectors():
    """vec = the neighbour image's position minus the centre's, |vec| = dist (reference: get_all_neighbors)."""
    s = _wurtzite()
    x, edge_index, dist, vec = graph_arrays(s, 4.0)
    np.testing.assert_allclose(np.linalg.norm(vec, axis=1), dist, atol=1e-5)
    def key(i, j, v):
        return (int(i), int(j), *(round(float(c), 3) + 0.0 for c in v))

    ours = sorted(key(i, j, v) for (i, j), v in zip(edge_index.T, vec))
    ref = sorted(key(i, n.index, n.coords - s[i].coords)
                 for i, neighbours in enumerate(s.get_all_neighbors(4.0)) for n in neighbours)
    assert len(ours) == len(ref) > 20
    np.testing.assert_allclose(np.array(ours), np.array(ref), atol=2e-3)


def test_triplets_are_every_pair_of_distinct_neighbour_images():
    """Reference from pymatgen: for each atom j, ordered pairs of its neighbours (site, image) that differ; the
    angle between the two bonds as the DimeNet++ convention gives it (between v(k->j) and v(j->i))."""
    s = Structure(Lattice.cubic(3.0), ["Si"], [[0, 0, 0]])  # one site: every neighbour is the atom's own image
    x, edge_index, dist, vec = graph_arrays(s, 4.3)
    ei, v = torch.from_numpy(edge_index), torch.from_numpy(vec)
    idx_kj, idx_ji = triplets(ei, v, num_nodes=1)
    neighbours = s.get_all_neighbors(4.3)[0]
    bonds = [n.coords - s[0].coords for n in neighbours]  # j -> neighbour
    expected = sorted(round(math.degrees(math.acos(np.clip(np.dot(-a, b) / np.linalg.norm(a) / np.linalg.norm(b),
                                                                   -1, 1))), 3)
                      for a, b in itertools.permutations(bonds, 2))
    # k->j is the reverse of j->k: v(k->j) = -bond_k; the angle DimeNet++ takes is between v(k->j) and v(j->i).
    got = torch.rad2deg(torch.atan2(torch.cross(v[idx_ji], v[idx_kj], dim=1).norm(dim=-1),
                                    (v[idx_ji] * v[idx_kj]).sum(-1)))
    assert len(idx_kj) == len(neighbours) * (len(neighbours) - 1) == 18 * 17
    assert sorted(round(float(a), 3) for a in got) == pytest.approx(expected, abs=1e-3)
    # The edges of each triplet meet: k->j ends where j->i starts.
    assert torch.equal(ei[1, idx_kj], ei[0, idx_ji])


def test_triplets_respect_the_edges_asked_for():
    s = _wurtzite()
    x, edge_index, dist, vec = graph_arrays(s, 5.0)
    ei, v, d = torch.from_numpy(edge_index), torch.from_numpy(vec), torch.from_numpy(dist)
    short = d <= 3.0
    kj, ji = triplets(ei, v, 4, short)
    assert bool(short[kj].all()) and bool(short[ji].all())
    assert len(kj) < len(triplets(ei, v, 4)[0])


@pytest.mark.parametrize("name", sorted(SMALL))
def test_backbones_are_invariant_to_rotation_and_site_order(name):
    s = _wurtzite()
    torch.manual_seed(0)
    net = make_network(SMALL[name]).eval()
    rotated = s.copy()
    rotated.apply_operation(__import__("pymatgen.core.operations", fromlist=["SymmOp"]).SymmOp.from_axis_angle_and_translation(
        [1, 2, 3], 37.0))
    shuffled = Structure.from_sites([s[i] for i in (2, 0, 3, 1)])
    outs = [net(batch_from_arrays([graph_arrays(t, 5.0)])) for t in (s, rotated, shuffled)]
    assert outs[0].shape == (1, 2001)
    torch.testing.assert_close(outs[1], outs[0], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(outs[2], outs[0], atol=1e-5, rtol=1e-4)


def test_three_body_backbone_reads_angles_not_only_distances():
    """Edge directions scrambled (every |vec| kept): a two-body network could not tell; DimeNet++ must."""
    s = _wurtzite()
    torch.manual_seed(0)
    net = make_network(SMALL["dimenet"]).eval()
    batch = batch_from_arrays([graph_arrays(s, 5.0)])
    out = net(batch)
    g = torch.Generator().manual_seed(1)
    rot = torch.linalg.qr(torch.randn(batch.vec.size(0), 3, 3, generator=g))[0]
    batch.vec = torch.einsum("eij,ej->ei", rot, batch.vec)
    assert (net(batch) - out).abs().max() > 1e-4


def test_a_geometric_backbone_refuses_graphs_without_edge_vectors():
    net = make_network(SMALL["visnet"]).eval()
    x, edge_index, dist, _ = graph_arrays(_wurtzite(), 5.0)
    with pytest.raises(ValueError, match="edge vectors.*data cache"):
        net(batch_from_arrays([(x, edge_index, dist)]))


def test_unknown_backbone_class_is_a_clear_error():
    with pytest.raises(ValueError, match="model.net._target_=nowhere.Net: cannot import"):
        make_network({"_target_": "nowhere.Net"})


def test_architecture_compares_a_backbones_whole_net_and_optimates_widths():
    opt = {"node_widths": [48], "gat_layers": [[48, 4]], "out_widths": [64], "out_dim": 2001}
    assert architecture({**opt, "dropout": 0.3}) == architecture(opt)
    assert architecture(SMALL["dimenet"]) != architecture({**SMALL["dimenet"], "blocks": 2})
    assert architecture(SMALL["dimenet"]) != architecture(opt)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_a_backbones_weight_file_loads_without_naming_it(name, tmp_path, cfg_train, write_cifs):
    """DL run with a small backbone -> its checkpoint -> the predictor builds that backbone from the file alone."""
    from optimate_pl.inference.predictor import load_model
    from optimate_pl.training.stages import run

    overrides = [f"model={name}", "strategy=dl", "data.subset=30"]
    overrides += [f"model.net.{k}={v}" for k, v in SMALL[name].items() if k != "_target_"]
    metrics = run(cfg_train(tmp_path, *overrides))
    model = load_model(metrics["best_checkpoint"])
    assert type(model.net).__name__ == SMALL[name]["_target_"].rsplit(".", 1)[-1]
    preds = model.predict_structures([_wurtzite()]) if hasattr(model, "predict_structures") else None
    if preds is not None:
        assert np.asarray(preds).shape[-1] == 2001


@pytest.fixture()
def toy_backbone(tmp_path, monkeypatch):
    """The backbones guide's own backbone in its two files: ``my_backbone.py`` on the path, ``model/schnetlike.yaml`` on
    Hydra's search path (so the worked example cannot rot)."""
    code = tmp_path / "code"
    code.mkdir()
    (code / "my_backbone.py").write_text(code_block("# my_backbone.py"))
    (tmp_path / "conf" / "model").mkdir(parents=True)
    (tmp_path / "conf" / "model" / "schnetlike.yaml").write_text(code_block("# my_conf/model/schnetlike.yaml"))
    monkeypatch.syspath_prepend(str(code))
    yield f"hydra.searchpath=[file://{tmp_path / 'conf'}]"
    sys.modules.pop("my_backbone", None)


@pytest.mark.parametrize("strategy", ["ipa", "dl", "tl", "sc", "mf", "mf_ipa"])
def test_a_users_backbone_in_two_files_runs_every_strategy(strategy, toy_backbone, tmp_path, cfg_train):
    from optimate_pl.training.stages import run

    extra = ["strategy.pretrain_epochs=1"] if strategy in ("tl", "mf_ipa") else []
    cfg = cfg_train(tmp_path, toy_backbone, "model=schnetlike", f"strategy={strategy}", "data.subset=100",
                    "+model.net.out_widths=[32]", *extra)
    metrics = run(cfg)
    ckpt = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["net"]["_target_"] == "my_backbone.SchNetLike"
    key = "test/ae_median" if strategy == "sc" else "test/mse_median"  # the SC model's score is its abs. error
    assert 0.0 < metrics["n_train"] and np.isfinite(metrics[key])
    if strategy in ("tl", "mf_ipa"):  # the pretraining was the toy backbone's too
        assert "my_backbone.SchNetLike" in str(torch.load(metrics["data"]["initial_weights"], map_location="cpu",
                                                       weights_only=True)["hyper_parameters"]["net"])


def test_model_optimate_is_the_papers_network_per_strategy(tmp_path, cfg_train):
    from optimate_pl.config import resolve_config

    dl = resolve_config(cfg_train(tmp_path, "model=optimate", "strategy=dl", "data.subset=300"))
    assert dl.model.name == "dl_300" and dl.model.net.gat_layers == [[384, 4]]
    ipa = resolve_config(cfg_train(tmp_path, "model=optimate", "strategy=ipa"))
    assert ipa.model.name == "ipa"


def test_debug_runs_pretrain_one_batch_not_the_full_budget(tmp_path, cfg_train):
    """debug=fast on TL: the automatic IPA pretraining is a fast_dev_run too, and named apart from a real one."""
    from optimate_pl.config import resolve_config
    from optimate_pl.training.pretrain import ipa_checkpoint_path, ipa_pretraining_config

    debug = resolve_config(cfg_train(tmp_path, "strategy=tl", "debug=fast"))
    real = resolve_config(cfg_train(tmp_path, "strategy=tl"))
    assert ipa_pretraining_config(debug).trainer.fast_dev_run is True
    assert not ipa_pretraining_config(real).trainer.get("fast_dev_run")
    assert ipa_checkpoint_path(debug) != ipa_checkpoint_path(real)


def test_dimenets_sympy_basis_is_cached_on_disk_and_unchanged(tmp_path, monkeypatch):
    """The spherical Bessel basis read back from the cache file gives PyG's own basis layer's numbers."""
    from torch_geometric.nn.models.dimenet import SphericalBasisLayer

    from optimate_pl.models import dimenet

    monkeypatch.setenv("OPTIMATE_PL_CACHE", str(tmp_path))
    monkeypatch.setattr(dimenet, "_BESSEL", {})
    dist, angle, idx = torch.rand(6) * 4 + 0.5, torch.rand(6) * 3.1, torch.arange(6)
    reference = SphericalBasisLayer(3, 3)(dist, angle, idx)  # PyG alone, no cache
    with dimenet._bessel_basis_cached():
        SphericalBasisLayer(3, 3)
    files = list((tmp_path / "dimenet").glob("bessel_3x3_*.json"))
    assert len(files) == 1
    monkeypatch.setattr(dimenet, "_BESSEL", {})  # a new process: only the file is left
    with dimenet._bessel_basis_cached():
        cached = SphericalBasisLayer(3, 3)(dist, angle, idx)
    torch.testing.assert_close(cached, reference)
    files[0].write_text("not json")  # a damaged file is recomputed, never trusted
    monkeypatch.setattr(dimenet, "_BESSEL", {})
    with dimenet._bessel_basis_cached():
        torch.testing.assert_close(SphericalBasisLayer(3, 3)(dist, angle, idx), reference)
    assert files[0].read_text().startswith("[[")


def test_the_shipped_dimenet_basis_is_the_normalised_spherical_bessel_basis(tmp_path, monkeypatch):
    """The 7 x 6 basis shipped with the package (the default network's; no sympy derivation on a fresh machine) is
    DimeNet's: j_l(z_li x) / sqrt(j_{l+1}(z_li)^2 / 2), z_li the i-th positive zero of j_l (Klicpera et al. 2020),
    here from scipy's spherical Bessel functions and root finding, not from PyG or sympy."""
    import sympy
    from scipy.optimize import brentq
    from scipy.special import spherical_jn

    from optimate_pl.models import dimenet

    monkeypatch.setenv("OPTIMATE_PL_CACHE", str(tmp_path))  # an empty cache: only the shipped file can answer
    monkeypatch.setattr(dimenet, "_BESSEL", {})

    def never(*_):
        raise AssertionError("the shipped basis was not used: sympy derived it again")

    forms = dimenet.cached_bessel_basis(never, 7, 6)
    x = np.linspace(0.05, 1.0, 40)
    for l in range(7):
        grid = np.linspace(0.5, 40, 20000)
        values = spherical_jn(l, grid)
        zeros = [brentq(lambda z: spherical_jn(l, z), a, b) for a, b, va, vb in
                 zip(grid[:-1], grid[1:], values[:-1], values[1:]) if va * vb < 0][:6]
        for i, z in enumerate(zeros):
            reference = spherical_jn(l, z * x) / np.sqrt(0.5 * spherical_jn(l + 1, z) ** 2)
            shipped = sympy.lambdify(sympy.Symbol("x"), forms[l][i], "numpy")(x)
            np.testing.assert_allclose(shipped, reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


@pytest.mark.parametrize("lmax", [1, 2])
def test_visnet_layers_fast_path_equals_pygs_own_layer(lmax):
    """vis_mp (node-level projections, the rejections' dot product in closed form) against PyG's ViS_MP.forward,
    the same weights, on a graph with self-loops (periodic images) and repeated edges, values and gradients."""
    from torch_geometric.nn.models.visnet import Sphere, ViS_MP

    from optimate_pl.models.visnet import vis_mp

    torch.manual_seed(0)
    n, e, width = 7, 40, 16
    edge_index = torch.randint(0, n, (2, e))
    edge_index[:, :3] = torch.tensor([[0, 1, 1], [0, 1, 1]])  # an atom's images; one edge twice
    d_ij = Sphere(lmax)(torch.nn.functional.normalize(torch.randn(e, 3, dtype=torch.float64), dim=1))
    r_ij = torch.rand(e, dtype=torch.float64) * 4 + 0.5
    for last in (False, True):
        layer = ViS_MP(num_heads=4, hidden_channels=width, cutoff=5.0, vecnorm_type=None, trainable_vecnorm=False,
                       last_layer=last).double()
        x = torch.randn(n, width, dtype=torch.float64, requires_grad=True)
        vec = torch.randn(n, (lmax + 1) ** 2 - 1, width, dtype=torch.float64, requires_grad=True)
        f_ij = torch.randn(e, width, dtype=torch.float64)
        ours, theirs = vis_mp(layer, x, vec, edge_index, r_ij, f_ij, d_ij), layer(x, vec, edge_index, r_ij, f_ij, d_ij)
        assert (ours[2] is None) == (theirs[2] is None) == last
        for a, b in zip(ours, theirs):
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
        loss = lambda out: sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum()
                               for o in out if o is not None)
        g_ours = torch.autograd.grad(loss(ours), [x, vec, *layer.parameters()], allow_unused=True)
        g_theirs = torch.autograd.grad(loss(theirs), [x, vec, *layer.parameters()], allow_unused=True)
        for a, b in zip(g_ours, g_theirs):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)


def test_visnet_fast_path_is_as_accurate_as_pygs_layer_under_bf16_autocast():
    """bf16-mixed (a CPU with bf16 units picks it): vis_mp's error against an fp64 run of PyG's layer is no larger
    than the layer's own bf16 error, on each output (the closed-form dot product must not lose precision)."""
    from torch_geometric.nn.models.visnet import ViS_MP

    from optimate_pl.models.visnet import vis_mp

    torch.manual_seed(0)
    n, e, width = 60, 1200, 32
    edge_index = torch.randint(0, n, (2, e))
    d_ij = torch.nn.functional.normalize(torch.randn(e, 3), dim=1)
    r_ij = torch.rand(e) * 4 + 0.5
    x, vec, f_ij = torch.randn(n, width), torch.randn(n, 3, width), torch.randn(e, width)
    layer = ViS_MP(num_heads=4, hidden_channels=width, cutoff=5.0, vecnorm_type=None, trainable_vecnorm=False)
    with torch.no_grad():
        exact = layer.double()(x.double(), vec.double(), edge_index, r_ij.double(), f_ij.double(), d_ij.double())
        layer.float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ours = vis_mp(layer, x, vec, edge_index, r_ij, f_ij, d_ij)
            theirs = layer(x, vec, edge_index, r_ij, f_ij, d_ij)
    for mine, pygs, ref in zip(ours, theirs, exact):
        err_ours, err_theirs = ((out.double() - ref).abs().mean() for out in (mine, pygs))
        assert 0 < err_ours <= 1.02 * err_theirs


def test_dimenet_fast_path_equals_pygs_own_blocks():
    """DimeNetCrystal.encode (interaction_pp on the triplets' edges only, fused silu) against PyG's own
    InteractionPPBlock.forward and swish on every edge, the same weights, two blocks, fp64, values and every
    gradient: on a batch of a wurtzite cell and a one-site cell (an atom's own images) where many edges lie beyond
    the triplet cutoff, and on a cell whose every edge does (no triplet at all)."""
    from torch_geometric.nn.resolver import swish

    from optimate_pl.models.readout import edge_vectors

    torch.manual_seed(0)
    net = make_network({**SMALL["dimenet"], "blocks": 2}).double()
    sparse = batch_from_arrays([graph_arrays(Structure(Lattice.cubic(4.5), ["Na"], [[0, 0, 0]]), 5.0)])
    batch = batch_from_arrays([graph_arrays(_wurtzite(), 5.0),
                               graph_arrays(Structure(Lattice.cubic(2.9), ["Si"], [[0, 0, 0]]), 5.0)])
    for b in (batch, sparse):
        b.x, b.dist, b.vec = b.x.double(), b.dist.double(), b.vec.double()
    use = batch.dist <= net.triplet_cutoff
    assert 0.05 < float(use.double().mean()) < 0.95  # both kinds of edges present
    assert sparse.dist.numel() > 0 and not bool((sparse.dist <= net.triplet_cutoff).any())

    def pygs_encode(batch):
        acts = {}
        for module in net.modules():  # PyG's unfused swish wherever DimeNet++ takes its activation
            if "act" in module.__dict__ and not isinstance(module.act, torch.nn.Module):
                acts[module], module.act = module.act, swish
        vec, (j, i), n = edge_vectors(batch), batch.edge_index, batch.x.size(0)
        idx_kj, idx_ji = triplets(batch.edge_index, vec, n, batch.dist <= net.triplet_cutoff)
        v_jk, v_ij = vec[idx_kj], vec[idx_ji]
        angle = torch.atan2(torch.cross(v_ij, v_jk, dim=1).norm(dim=-1), (v_ij * v_jk).sum(dim=-1))
        rbf, sbf = net.rbf(batch.dist), net.sbf(batch.dist, angle, idx_kj)
        x = net.emb(batch.x, rbf, i, j)
        h = net.output_blocks[0](x, rbf, i, num_nodes=n)
        for interaction, output in zip(net.interaction_blocks, net.output_blocks[1:]):
            x = interaction(x, rbf, sbf, idx_kj, idx_ji)
            h = h + output(x, rbf, i, num_nodes=n)
        for module, act in acts.items():
            module.act = act
        return h

    torch.testing.assert_close(net.encode(sparse), pygs_encode(sparse), rtol=1e-10, atol=1e-10)
    ours = net.encode(batch)
    g_ours = torch.autograd.grad((ours * torch.linspace(-1, 1, ours.numel(), dtype=ours.dtype).view_as(ours)).sum(),
                                 list(net.parameters()), allow_unused=True)
    theirs = pygs_encode(batch)
    g_theirs = torch.autograd.grad((theirs * torch.linspace(-1, 1, theirs.numel(),
                                                            dtype=theirs.dtype).view_as(theirs)).sum(),
                                   list(net.parameters()), allow_unused=True)
    assert ours.abs().max() > 1e-3
    torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-10)
    assert sum(g is not None for g in g_ours) > 20
    for a, b in zip(g_ours, g_theirs):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
