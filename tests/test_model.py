import pickle

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from torch import nn
from torch_geometric.nn import MLP, GATv2Conv

from optimate_pl.models import CheckpointError, Optimate, count_parameters, load_network_weights
from optimate_pl.train import compile_network, load_group_config


class AuthorsLayout(nn.Module):
    """An independent OPTIMATE (IPA architecture) built from torch_geometric parts, per-graph pooling by hand."""

    def __init__(self):
        super().__init__()
        self.mlp_init_node = MLP([13, 48, 48])
        self.gat1 = GATv2Conv(48, 48, heads=4, edge_dim=51, add_self_loops=False)
        self.gat2 = GATv2Conv(192, 96, heads=4, edge_dim=51, add_self_loops=False)
        self.mlp_att = MLP([384, 384])
        self.mlp1 = MLP([384, 1024, 1024, 1024, 2001])

    def forward(self, b):
        h = self.mlp_init_node(b.x)
        h = F.relu(self.gat1(h, b.edge_index, edge_attr=b.edge_attr))
        h = F.relu(self.gat2(h, b.edge_index, edge_attr=b.edge_attr))
        scores = self.mlp_att(h)
        pooled = []
        for g in range(b.num_graphs):
            m = b.batch == g
            w = torch.exp(scores[m] - scores[m].max(0).values)
            pooled.append(((w / w.sum(0)) * h[m]).sum(0))
        return F.leaky_relu(self.mlp1(torch.stack(pooled)))


@pytest.fixture
def batch(tiny_rpa):
    return tiny_rpa.val_set.collate(range(6))


def test_ipa_architecture_matches_an_independent_construction(batch, tmp_path):
    torch.manual_seed(1)
    ref = AuthorsLayout().eval()
    net = Optimate(**OmegaConf.to_container(load_group_config("model", "ipa").net)).eval()
    assert count_parameters(net) == count_parameters(ref)
    # The authors' published weights are plain state_dicts with these keys: load them directly.
    path = tmp_path / "ipa_published.pt"
    torch.save(ref.state_dict(), path)
    assert {k.split(".")[0] for k in torch.load(path, weights_only=True)} == {"mlp_init_node", "gat1", "gat2", "mlp_att", "mlp1"}
    load_network_weights(net, path)
    with torch.no_grad():
        expected, got = ref(batch), net(batch)
    assert got.shape == (6, 2001) and (got >= -0.1 * got.abs().max()).all()
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    assert net.latents(batch).shape == (6, 384)


@pytest.mark.parametrize("name", ["ipa", "sc", "dl_100", "dl_300", "dl_1000", "dl_3000", "dl_4610"])
def test_every_architecture_builds_from_config(name, batch):
    cfg = OmegaConf.to_container(load_group_config("model", name).net)
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
