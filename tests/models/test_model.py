import pickle

import pytest
import torch

from optimate_pl.models import CheckpointError, Optimate, count_parameters, load_network_weights
from optimate_pl.config import model_net
from optimate_pl.training.trainer import compile_network

from .authors_reference import ARCHITECTURES, authors_network, crystals, reference_batch


@pytest.fixture
def batch(tiny_rpa):
    return tiny_rpa.val_set.collate(range(6))


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_network_equals_the_authors_forward_on_real_crystals(name):
    """Our Optimate against the network as the paper describes it, on crystals featurised in the test."""
    ref = authors_network(name, "ipa")  # plain names: mlp_init_node, gat1..gatN, mlp_att, mlp1
    net = Optimate(**model_net(name, "sc_rpa_ipa" if name == "sc" else "eps_imag")).eval()
    assert count_parameters(net) == count_parameters(ref)
    net.load_state_dict(ref.state_dict())
    graphs = reference_batch()
    with torch.no_grad():
        expected, got = ref(graphs), net(graphs)
    assert got.shape == (len(crystals()), ARCHITECTURES[name][3])
    assert expected.abs().max() > 1e-3  # a non-trivial output, so that 1e-5 means something
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    last_out, last_heads = ARCHITECTURES[name][1][-1]
    assert net.latents(graphs).shape == (len(crystals()), last_out * last_heads)


@pytest.mark.parametrize("name", ["ipa", "sc", "dl_100", "dl_300", "dl_1000", "dl_3000", "dl_4610"])
def test_every_architecture_builds_from_config(name, batch):
    cfg = model_net(name, "sc_rpa_ipa" if name == "sc" else "eps_imag")
    net = Optimate(**cfg).eval()
    out = net(batch)
    assert out.shape == (6, cfg["out_dim"])
    last_out, last_heads = cfg["gat_layers"][-1]
    assert net.latents(batch).shape == (6, last_out * last_heads)


def test_wrong_architecture_lists_mismatched_keys(tmp_path):
    path = tmp_path / "dl.pt"
    torch.save(Optimate(node_widths=[96, 96, 96], gat_layers=[[192, 2]], out_widths=[512, 512, 512]).state_dict(), path)
    with pytest.raises(CheckpointError) as err:
        load_network_weights(Optimate(), path)
    msg = str(err.value)
    assert "does not fit the configured architecture" in msg
    assert "shape mismatch: mlp1.lins.2.weight checkpoint (512, 512) vs model (1024, 1024)" in msg
    assert "more" in msg  # long lists are cut, with a count
    assert "missing in checkpoint: gat2.att" in msg


class Exploit:
    def __reduce__(self):
        return (print, ("this would run arbitrary code",))


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"state_dict": Exploit()}, fh)
    with pytest.raises(CheckpointError, match="would execute code"):
        load_network_weights(Optimate(), path)
    with pytest.raises(CheckpointError, match="not found"):
        load_network_weights(Optimate(), tmp_path / "missing.pt")


def test_compiled_network_keeps_parameter_names_and_outputs(tiny_rpa):
    torch.manual_seed(0)
    net = Optimate(node_widths=[16], gat_layers=[[16, 2]], out_widths=[32]).eval()
    keys = list(net.state_dict())
    batches = [tiny_rpa.train_set.collate(range(8)), tiny_rpa.train_set.collate(range(8, 21))]  # two graph sizes
    with torch.no_grad():
        eager = [net(b) for b in batches]
        compile_network(net)
        compiled = [net(b) for b in batches]
    assert net._compiled_call_impl is not None  # nn.Module.compile really wrapped the forward
    assert list(net.state_dict()) == keys  # checkpoints load with or without compile
    for e, c in zip(eager, compiled):
        torch.testing.assert_close(c, e, atol=1e-5, rtol=1e-4)


def _forward_and_grads(net, graphs):
    net.zero_grad()
    out = net(graphs)
    (out * torch.linspace(-1, 1, out.size(1))).sum().backward()
    return out.detach(), {k: p.grad.clone() for k, p in net.named_parameters()}


@pytest.mark.parametrize("name,compiled", [("ipa", False), ("dl_300", False), ("dl_1000", False), ("ipa", True)])
def test_edge_kernel_equals_the_authors_gatv2(name, compiled):
    """Optimate with its GATv2 edge work in :func:`gatv2_edges` (eager, and compiled for one architecture)
    against the authors' forward through torch_geometric's GATv2Conv: outputs and every parameter gradient."""
    from optimate_pl.models.optimate import gatv2_edges

    ref = authors_network(name, "ipa").train()  # training mode: BatchNorm on batch statistics, as in a step
    net = Optimate(**model_net(name, "sc_rpa_ipa" if name == "sc" else "eps_imag")).train()
    net.load_state_dict(ref.state_dict())
    keys = list(net.state_dict())
    net.compile_edges(None if compiled else gatv2_edges)
    assert list(net.state_dict()) == keys  # published weights load either way
    graphs = reference_batch()
    expected, ref_grads = _forward_and_grads(ref, graphs)
    got, grads = _forward_and_grads(net, graphs)
    assert expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # A Linear's bias before a training-mode BatchNorm has a zero gradient in exact arithmetic (rounding
    # noise here): every gradient is compared on the scale of its own size, at least 1e-2 of the largest.
    top = max(float(g.abs().max()) for g in ref_grads.values())
    for key, g in ref_grads.items():
        scale = max(float(g.abs().max()), 1e-2 * top)
        torch.testing.assert_close(grads[key] / scale, g / scale, atol=1e-4, rtol=1e-4, msg=key)


def test_edge_function_also_evaluates_and_equals_pyg_there():
    """Evaluation (no_grad in validation, inference_mode in test and predict) runs through the edge function
    too: compiled, it is ~2x PyG's inference on a CPU (benchmarks/cpu_2core.md). Its outputs equal PyG's."""
    from optimate_pl.models.optimate import gatv2_edges

    calls = []

    def counting(*args):
        calls.append(1)
        return gatv2_edges(*args)

    torch.manual_seed(0)
    net = Optimate(**model_net("dl_300")).eval()
    graphs = reference_batch()
    with torch.no_grad():
        plain = net(graphs)
    net.compile_edges(counting)
    with torch.no_grad():
        no_grad = net(graphs)
    with torch.inference_mode():
        inference = net(graphs)
    assert len(calls) == 2 * net.num_gat
    torch.testing.assert_close(no_grad, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(inference, plain, atol=1e-5, rtol=1e-5)


def test_edge_function_under_bf16_autocast_matches_pyg():
    """bf16-mixed (the authors' training precision): the linears give bf16, the fp32 attention vector promotes
    the attention and messages to fp32 in PyG's layer; the edge function must aggregate in that dtype too
    (it raised "index_add_(): self (BFloat16) and source (Float)" before)."""
    from optimate_pl.models.optimate import gatv2_edges

    torch.manual_seed(0)
    net = Optimate(**model_net("dl_300")).train()
    graphs = reference_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = net(graphs)
        net.compile_edges(gatv2_edges)
        edges = net(graphs)
    torch.testing.assert_close(edges.float(), plain.float(), atol=2e-2, rtol=2e-2)


def test_the_compiled_edge_function_may_hold_every_variant_of_a_tl_run():
    """A TL run needs one compiled edge graph per layer width x edge-count range x grad mode x autocast state
    (~10 in 20 epochs of the GPAW TL run, ~20 in longer ones); dynamo's default limit of 8 made the rest
    run eager. Making the compiled function raises the process's limit (no compilation happens here)."""
    import torch._dynamo

    from optimate_pl.models import optimate

    config, name = torch._dynamo.config, optimate.dynamo_limit_name()
    before, cached = getattr(config, name), optimate._compiled_edges
    try:
        setattr(config, name, 8)
        optimate._compiled_edges = None
        optimate._compiled_gatv2_edges()
        assert getattr(config, name) >= 24
    finally:
        setattr(config, name, before)
        optimate._compiled_edges = cached
