import torch
from torch_geometric.data import Batch

from optimate_pl.data.batching import BatchLoader
from optimate_pl.models import Optimate


def test_gathered_batches_equal_pyg_collation_and_give_the_same_loss(tiny_rpa):
    ds = tiny_rpa.train_set
    batcher = ds.batcher("cpu")
    k = [5, 0, 17, 3, 42, 8]
    ours, ref = batcher.batch(k), Batch.from_data_list([ds[i] for i in k])
    assert torch.equal(ds.collate(k).edge_attr, ref.edge_attr)  # the DataLoader path gathers the same way
    for key in ("x", "edge_index", "edge_attr", "dist", "y", "batch", "ptr", "ipa"):
        assert torch.equal(getattr(ours, key), getattr(ref, key)), key
    assert ours.mat_id == ref.mat_id and ours.num_graphs == 6
    torch.manual_seed(0)
    net = Optimate(node_widths=[16], gat_layers=[[16, 2]], out_widths=[32]).eval()
    l1 = torch.nn.functional.l1_loss
    assert torch.equal(l1(net(ours), ours.y), l1(net(ref), ref.y))


def test_batch_loader_covers_every_material_once_per_epoch(tiny_rpa):
    loader = BatchLoader(tiny_rpa.train_set.batcher(), batch_size=16, shuffle=True, drop_last=False)
    seen = [m for b in loader for m in b.mat_id]
    assert sorted(seen) == sorted(tiny_rpa.train_set.mat_ids) and len(loader) == 7
    dropped = BatchLoader(tiny_rpa.train_set.batcher(), batch_size=16, shuffle=True, drop_last=True)
    assert len(dropped) == 6 and sum(b.num_graphs for b in dropped) == 96
    epoch1, epoch2 = [b.mat_id for b in loader][0], [b.mat_id for b in loader][0]
    assert epoch1 != epoch2  # reshuffled every epoch


def test_evaluation_batches_cover_the_items_in_order(tiny_rpa):
    ds = tiny_rpa.test_set  # every evaluation (test medians, ensembles, studies) iterates these
    sizes = [b.num_graphs for b in ds.batches(7)]
    assert sizes == [7] * (len(ds) // 7) + ([len(ds) % 7] if len(ds) % 7 else [])
    assert [m for b in ds.batches(7) for m in b.mat_id] == ds.mat_ids
    picked = [4, 1, 9]
    (only,) = ds.batches(256, picked)
    assert only.mat_id == [ds.mat_ids[k] for k in picked]
    assert torch.equal(torch.cat([b.y for b in ds.batches(7)]), ds.targets)
    assert torch.equal(ds.targets[picked], torch.cat([ds[k].y for k in picked]))
