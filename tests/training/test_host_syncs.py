"""No host round trip inside a training or validation step (issue #36): counted on the CPU."""
from __future__ import annotations

import collections

import pytest
import torch

from optimate_pl.training.syncs import HostSyncCounter, count_host_syncs


def test_the_counter_sees_every_kind_of_host_read():
    t = torch.arange(6.0)
    counts = collections.Counter()
    with count_host_syncs(counts):
        t.sum().item()
        bool(t.max() > 2)
        t[t > 2]           # a data-dependent shape
        t.tolist()
        t.to("cpu")
        t.to(torch.device("cpu"))  # generic code moving data to the module's device: not counted
        t[1:3]             # plain slicing: not counted
    assert counts == {"item": 1, "__bool__": 1, "mask index": 1, "tolist": 1, "to(cpu)": 1}
    assert torch.Tensor.item is not None and t.sum().item() == 15.0  # restored afterwards
    # ... exactly: no method left on the class itself (a __getitem__ set back there made 0-d tensors sequences,
    # and torch.tensor([0-d tensors]) in a later test failed with "len() of a 0-d tensor").
    assert not {"item", "to", "__getitem__", "__bool__"} & set(torch.Tensor.__dict__)
    assert torch.tensor([torch.tensor(2.0)] * 3).tolist() == [2.0, 2.0, 2.0]


#: ViSNet (equivariant) at a tiny width: its layers, like OPTIMATE's, make no host read (DimeNet++ builds its
#: triplets in the step: 4 a step, benchmarks/host_syncs.md).
TINY_VISNET = ["strategy=dl", "model=visnet", "model.net.width=16", "model.net.heads=4", "model.net.layers=1",
               "model.net.out_widths=[32]"]


@pytest.mark.parametrize("overrides", [["strategy=dl"], ["strategy=tl", "strategy.pretrain_epochs=1"],
                                       ["strategy=mf", "data.static_shapes=true"], TINY_VISNET],
                         ids=["dl", "tl", "mf-static-shapes", "visnet"])
def test_training_and_validation_steps_make_no_host_sync(overrides, tmp_path, cfg_train):
    from optimate_pl.training.stages import run

    run(cfg_train(tmp_path, *overrides, "data.subset=60", "test=false", "evaluate_train=false",
                  "+callbacks.host_syncs._target_=optimate_pl.training.syncs.HostSyncCounter"))
    counter = HostSyncCounter.last
    assert counter.train_steps >= 6 and counter.val_steps >= 2  # DL: 60 materials in batches of 20, 2 epochs
    assert counter.per_step() == {"train": 0.0, "val": 0.0}, counter.where.most_common(5)


def test_a_diverging_step_is_still_caught_before_validation(tmp_path, cfg_train):
    """The guard reads the device flag once per epoch, and names the first diverged step of it."""
    from optimate_pl.models.module import NonFiniteLossError
    from optimate_pl.training.stages import run

    with pytest.raises(NonFiniteLossError, match=r"non-finite training loss \((nan|inf|-inf)\) at epoch 0, step [1-9]"):
        run(cfg_train(tmp_path, "strategy=dl", "data.subset=60", "optimizer._target_=torch.optim.SGD",
                      "optimizer.lr=1e30", "~optimizer.weight_decay"))
