"""data.static_shapes: padded batches give the unpadded numbers (outputs, loss, gradients, batch-norm statistics,
metrics, a whole fit), and training/validation batches come in a few bucket shapes."""
from __future__ import annotations

import copy

import lightning.pytorch as pl
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import MLP

from optimate_pl.data import RPADataModule
from optimate_pl.data.padding import bucket, pad_batch, real_graphs
from optimate_pl.models import SpectraModule
from optimate_pl.models.backbones import make_network
from optimate_pl.models.masking import masked_loss, masked_mlp
from tests.conftest import TINY_SIZES
from tests.models.test_backbones import SMALL as SMALL_BACKBONES

SMALL_NET = dict(node_widths=[32], gat_layers=[[32, 2]], out_widths=[128], out_dim=2001)


def test_buckets_are_eight_per_octave_and_never_12_5_percent_above():
    assert [bucket(n) for n in (1, 16, 17, 31, 32, 33, 450, 6700)] == [16, 16, 18, 32, 32, 36, 480, 7168]
    sizes = [bucket(n) for n in range(1, 70000)]
    assert all(n <= b < 1.125 * n or b == 16 for n, b in zip(range(1, 70000), sizes))
    assert len(set(s for s in sizes if 1024 <= s < 2048)) == 8


def _bn_stats(net):
    return {k: v for k, v in net.state_dict().items() if "running" in k or "num_batches" in k}


def test_masked_mlp_is_torchs_batch_norm_on_the_real_rows():
    """Reference: PyG's MLP (torch's BatchNorm1d) on the 7 real rows alone; the 5 pad rows are huge on purpose."""
    torch.manual_seed(0)
    mlp = MLP([5, 16, 16, 3], norm="batch_norm")
    ref = copy.deepcopy(mlp)
    x = torch.randn(7, 5)
    padded = torch.cat([x, 1e3 * torch.randn(5, 5)])
    mask = torch.arange(12) < 7
    for _ in range(3):  # the running statistics move the same way step after step
        torch.testing.assert_close(masked_mlp(mlp, padded, mask)[:7], ref(x), rtol=1e-4, atol=1e-5)
    for (k, a), b in zip(_bn_stats(mlp).items(), _bn_stats(ref).values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=k)
    assert int(mlp.norms[0].module.num_batches_tracked) == 3
    mlp.eval(); ref.eval()
    torch.testing.assert_close(masked_mlp(mlp, padded, mask)[:7], ref(x))


def test_masked_loss_is_the_loss_of_the_real_rows():
    pred, y = torch.randn(5, 11), torch.randn(5, 11)
    pad_pred, pad_y = torch.cat([pred, torch.full((3, 11), 9.0)]), torch.cat([y, torch.zeros(3, 11)])
    mask = torch.arange(8) < 5
    for loss in (F.l1_loss, F.mse_loss):
        torch.testing.assert_close(masked_loss(loss, pad_pred, pad_y, mask), loss(pred, y))


@pytest.mark.parametrize("backbone", ["optimate", "visnet", "dimenet"])
def test_a_padded_batch_gives_the_unpadded_numbers(tiny_rpa, backbone):
    """A short batch (5 of 8 graphs) padded: the same predictions, loss, gradients and batch-norm statistics
    as the batch itself, in training mode."""
    ds = tiny_rpa.train_set
    plain = ds.collate(range(5))
    padded = pad_batch(plain, 8)
    assert padded.num_graphs == 8 and real_graphs(padded) == 5 and padded.x.size(0) > plain.x.size(0)
    torch.manual_seed(0)
    net = make_network(SMALL_NET if backbone == "optimate" else SMALL_BACKBONES[backbone])
    twin = copy.deepcopy(net)
    net.train(); twin.train()
    out_pad, out = net(padded), twin(plain)
    torch.testing.assert_close(out_pad[:5], out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(masked_loss(F.l1_loss, out_pad, padded.y, padded.graph_mask), F.l1_loss(out, plain.y),
                               rtol=1e-5, atol=1e-7)
    # Gradients through the MSE: L1's sign(pred - y) flips where a prediction meets a zero of the spectrum to
    # within rounding, which moves the last layer's gradient by 1e-4 between 1 and 2 threads on the plain batch alone.
    loss_pad = masked_loss(F.mse_loss, out_pad, padded.y, padded.graph_mask)
    loss = F.mse_loss(out, plain.y)
    torch.testing.assert_close(loss_pad, loss, rtol=1e-5, atol=1e-7)
    loss_pad.backward(); loss.backward()
    # Tolerance on the network's gradient scale: a bias right before a batch norm has a gradient of 0 in exact
    # arithmetic, so its float value is rounding noise of that scale, in either run alike.
    scale = max(float(q.grad.abs().max()) for q in twin.parameters() if q.grad is not None)
    for (name, p), q in zip(net.named_parameters(), twin.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-4 * scale, msg=name)
    for (k, a), b in zip(_bn_stats(net).items(), _bn_stats(twin).values()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=k)


def test_a_batch_larger_than_the_padded_size_is_refused(tiny_rpa):
    with pytest.raises(ValueError, match="a batch of 16 graphs does not fit a padded batch of 8 graphs"):
        pad_batch(tiny_rpa.train_set.collate(range(16)), 8)


def _static_dm(cache_dir, static):
    dm = RPADataModule(source="synthetic", cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES, batch_size=16,
                       eval_batch_size=32, static_shapes=static)
    dm.setup()
    return dm


def test_training_and_validation_batches_come_in_bucket_shapes(cache_dir):
    dm = _static_dm(cache_dir, True)
    for loader, ds, graphs in ((dm.train_dataloader(), dm.train_set, 16), (dm.val_dataloader(), dm.val_set, 20)):
        batches = list(loader)
        for b in batches:
            n, e = b.x.size(0), b.edge_index.size(1)
            assert (b.num_graphs, b.graph_mask.numel(), b.node_mask.numel()) == (graphs, graphs, n)
            assert n == bucket(int(b.node_mask.sum()) + 1) and e == bucket(e) == b.dist.size(0) == b.edge_attr.size(0)
        ids = [m for b in batches for m in b.mat_id]
        assert sorted(ids) == sorted(ds.mat_ids) and sum(real_graphs(b) for b in batches) == len(ds)
    test_batch = next(iter(dm.test_dataloader()))
    assert getattr(test_batch, "graph_mask", None) is None  # test and prediction stay unpadded


def test_a_fit_with_static_shapes_gives_the_same_numbers(cache_dir, tmp_path):
    """Two epochs of the same seeded run with and without padding: the same validation loss and test scores."""
    results = []
    for static in (False, True):
        pl.seed_everything(0)
        # Plain SGD: Adam divides by the gradients' running size, which turns the float rounding of parameters
        # with (near) zero gradient into steps of the learning rate, in either run alike.
        module = SpectraModule(net=SMALL_NET, optimizer={"_target_": "torch.optim.SGD", "lr": 0.05})
        trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                             enable_model_summary=False, default_root_dir=tmp_path / str(static),
                             num_sanity_val_steps=0, max_epochs=2, enable_checkpointing=False)
        dm = _static_dm(cache_dir, static)
        trainer.fit(module, datamodule=dm)
        val = trainer.callback_metrics
        res = trainer.test(module, datamodule=dm, verbose=False)[0]
        results.append((float(val["val/loss"]), float(val["val/sc_median"]), res["test/sc_median"],
                        res["test/mse_median"]))
    plain, padded = results
    assert plain == pytest.approx(padded, rel=1e-5, abs=1e-6), results
