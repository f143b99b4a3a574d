"""strategy=mf: one network on both rungs, the leakage rule, and a weight file that is the RPA network."""
from __future__ import annotations

import pytest
import torch

from optimate_pl.data.multifidelity import IPA, RPA, MultiFidelityDataModule
from tests.conftest import TINY_SIZES


@pytest.fixture(scope="module")
def mf_data(tmp_path_factory):
    dm = MultiFidelityDataModule(source="synthetic", synthetic_sizes=TINY_SIZES, subset=50,
                                 cache_dir=str(tmp_path_factory.mktemp("cache")))
    dm.setup()
    return dm


def test_mf_fits_the_ipa_training_split_and_the_rpa_subset(mf_data):
    from optimate_pl.data.datamodule import IPADataModule

    ipa = IPADataModule(source="synthetic", synthetic_sizes=TINY_SIZES, cache_dir=mf_data.cache_dir)
    ipa.setup()
    fit = mf_data.fit_set.store
    ids_by_rung = {r: [m for m, f in zip(fit.mat_id, fit.fidelity.tolist()) if f == r] for r in (IPA, RPA)}
    assert sorted(ids_by_rung[IPA]) == sorted(ipa.train_set.mat_ids)  # every IPA training spectrum
    assert sorted(ids_by_rung[RPA]) == sorted(mf_data.train_set.mat_ids) and len(ids_by_rung[RPA]) == 50
    held_out = set(mf_data.val_set.mat_ids) | set(mf_data.test_set.mat_ids) | set(ipa.val_set.mat_ids) | \
        set(ipa.test_set.mat_ids)
    assert not held_out & set(fit.mat_id)  # no validation or test material's spectrum of either rung
    # The targets are each rung's own spectrum.
    i = fit.mat_id.index(ids_by_rung[IPA][0])
    j = ipa.train_set.store.mat_id.index(ids_by_rung[IPA][0])
    torch.testing.assert_close(fit.spectrum[i], ipa.train_set.store.spectrum[j])
    batch = next(iter(mf_data.train_dataloader()))
    assert batch.fidelity.shape == (batch.num_graphs,) and set(batch.fidelity.tolist()) <= {IPA, RPA}
    assert mf_data.describe()["ipa_train"] == len(ipa.train_set)


def test_mf_refuses_an_ipa_split_that_holds_rpa_test_materials(tmp_path):
    """Splits that disagree (an RPA test material in the IPA training split) would leak its IPA spectrum."""
    dm = MultiFidelityDataModule(source="synthetic", synthetic_sizes=TINY_SIZES, cache_dir=str(tmp_path))
    real = dm.ipa_assignment

    def ipa_split_with_a_leak(store, meta):
        assignment, origin = real(store, meta)
        return dict(assignment, **{dm.test_set.mat_ids[0]: "train"}), origin

    dm.ipa_assignment = ipa_split_with_a_leak
    with pytest.raises(ValueError, match="strategy=mf: 1 IPA training materials are RPA validation/test"):
        dm.setup()


def test_mf_run_saves_a_weight_file_that_predicts_the_rpa_rung(tmp_path, cfg_train):
    from optimate_pl.inference.predictor import load_model
    from optimate_pl.models.module import SpectraModule
    from optimate_pl.training.stages import run

    metrics = run(cfg_train(tmp_path, "strategy=mf", "data.subset=50", "trainer.max_epochs=3"))
    assert metrics["n_train"] == 50 and metrics["data"]["ipa_train"] == TINY_SIZES["ipa"][0]
    module = SpectraModule.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu").eval()
    assert module.fidelity.weight.abs().sum() > 0  # the rungs' embeddings were learned
    dm = MultiFidelityDataModule(source="synthetic", synthetic_sizes=TINY_SIZES, subset=50,
                                 cache_dir=str(tmp_path / "cache"))
    dm.setup()
    batch = dm.test_set.collate(range(8))
    with torch.no_grad():
        rpa = module(batch)
        batch.fidelity = torch.full((8,), IPA)
        ipa = module(batch)
        del batch.fidelity
        folded = load_model(metrics["best_checkpoint"])(batch)
    torch.testing.assert_close(folded, rpa, atol=1e-5, rtol=1e-4)  # the file alone is the RPA network
    assert (ipa - rpa).abs().max() > 1e-4  # and the rung matters


def test_mf_can_weigh_the_rpa_rung_by_repeating_it(mf_data, tmp_path):
    """data.rpa_repeat=3: each RPA training spectrum three times in the fitted set, the IPA ones once; the RPA
    training set (what data.subset means) is unchanged; a repeat below 1 or not whole is refused by name."""
    dm = MultiFidelityDataModule(source="synthetic", synthetic_sizes=TINY_SIZES, subset=50, rpa_repeat=3,
                                 cache_dir=mf_data.cache_dir)
    dm.setup()
    once, thrice = mf_data.fit_set.store, dm.fit_set.store
    assert int((thrice.fidelity == RPA).sum()) == 3 * int((once.fidelity == RPA).sum()) == 150
    assert int((thrice.fidelity == IPA).sum()) == int((once.fidelity == IPA).sum())
    rpa_ids = [m for m, f in zip(thrice.mat_id, thrice.fidelity.tolist()) if f == RPA]
    assert all(rpa_ids.count(m) == 3 for m in mf_data.train_set.mat_ids) and len(dm.train_set) == 50
    assert dm.describe()["rpa_repeat"] == 3
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="data.rpa_repeat"):
            MultiFidelityDataModule(source="synthetic", synthetic_sizes=TINY_SIZES, rpa_repeat=bad, cache_dir=str(tmp_path))


def test_mf_ipa_starts_from_the_ipa_model_that_tl_starts_from(tmp_path, cfg_train):
    """strategy=mf_ipa: the automatic IPA model is TL's very own file (one pretraining serves both), and a run from
    a given IPA weight file starts at those weights (with a learning rate of 1e-12 they are what it saves), the rung
    embeddings at zero; plain MF records no start, and a study's TL start (strategy.checkpoint) does not reach it."""
    from optimate_pl.config import start_checkpoint
    from optimate_pl.models.module import SpectraModule
    from optimate_pl.models.weights import read_weights
    from optimate_pl.training.pretrain import ipa_checkpoint_path
    from optimate_pl.training.stages import run

    mf_ipa = cfg_train(tmp_path, "strategy=mf_ipa", "data.subset=50", "strategy.pretrain_seed=3")
    assert mf_ipa.strategy.name == "mf" and mf_ipa.optimizer.lr == 4.430375245218267e-05  # its sweep's best
    assert mf_ipa.data.rpa_repeat == 4  # (the batch of 32 is the tests' 16 here)
    assert mf_ipa.strategy.epochs.synthetic == cfg_train(tmp_path, "strategy=tl").strategy.epochs.synthetic
    assert ipa_checkpoint_path(mf_ipa) == ipa_checkpoint_path(
        cfg_train(tmp_path, "strategy=tl", "data.subset=50", "strategy.pretrain_seed=3"))
    assert ipa_checkpoint_path(mf_ipa) != ipa_checkpoint_path(
        cfg_train(tmp_path, "strategy=tl", "data.subset=50", "strategy.pretrain_seed=4"))
    assert start_checkpoint(cfg_train(tmp_path, "strategy=mf", "++strategy.checkpoint=auto")) is None

    ipa = run(cfg_train(tmp_path / "ipa", "strategy=ipa", "trainer.max_epochs=1", "test=false"))
    start = read_weights(ipa["best_checkpoint"]).state_dict

    def saved_module(folder, *overrides):
        metrics = run(cfg_train(tmp_path / folder, "data.subset=50", "trainer.max_epochs=1",
                                "optimizer.lr=1e-12", "test=false", *overrides))
        return SpectraModule.load_from_checkpoint(metrics["best_checkpoint"], map_location="cpu"), metrics

    module, metrics = saved_module("mf_ipa", "strategy=mf_ipa", f"strategy.init={ipa['best_checkpoint']}")
    assert metrics["data"]["initial_weights"] == str(ipa["best_checkpoint"])
    for name, value in module.model.named_parameters():  # the weights (batch norms' running statistics move)
        torch.testing.assert_close(value.detach(), start[name], msg=name)
    assert module.fidelity.weight.abs().max() < 1e-9
    _, plain = saved_module("mf", "strategy=mf")
    assert plain["data"]["initial_weights"] is None


def test_mf_from_scratch_and_from_ipa_never_resume_each_other(tmp_path, cfg_train):
    """Both are task mf with the same settings; ckpt_path of the one in the other is refused, naming strategy.init."""
    from optimate_pl.config import ConfigError
    from optimate_pl.training.stages import run

    ipa = run(cfg_train(tmp_path / "ipa", "strategy=ipa", "trainer.max_epochs=1", "test=false"))
    scratch = run(cfg_train(tmp_path / "mf", "strategy=mf", "data.subset=50", "trainer.max_epochs=1", "test=false"))
    with pytest.raises(ConfigError, match="strategy.init .*started from scratch"):
        run(cfg_train(tmp_path / "mf2", "strategy=mf_ipa", f"strategy.init={ipa['best_checkpoint']}",
                      "optimizer=adam", "data.subset=50", "trainer.max_epochs=2", "test=false",
                      f"ckpt_path={scratch['best_checkpoint']}"))


def test_mf_splits_the_ipa_rung_as_the_ipa_module_does_on_ones_own_data(tmp_path, cache_dir):
    """data.split=auto on one's own database whose RPA rung holds a material the IPA rung lacks: MF's IPA split is
    the IPA module's (placed over both rungs), so MF fits no IPA spectrum that TL's pretraining holds out. (MF
    placed the IPA rung over the IPA rung alone, and on these six materials two moved.)"""
    from optimate_pl.data.datamodule import IPADataModule
    from optimate_pl.data.splits import grouped_split
    from tests.data.test_files_source import own_database

    db = own_database(tmp_path, cache_dir, n=6, start=47)  # six of the built-in v6 where the placements differ
    sorted((db / "ipa").glob("*.json"))[-1].unlink()  # an RPA-only material
    kw = dict(source="files", root=str(db), cache_dir=str(cache_dir))
    ipa, mf = IPADataModule(**kw), MultiFidelityDataModule(**kw)
    store, meta = ipa.load_rung()
    assignment, _ = ipa.split_assignment(store, meta)  # (its test split is empty here: it would not set up)
    # The case tells the two apart: placed over the IPA rung alone (MF's old split), some material moves.
    alone = grouped_split(list(store.mat_id), list(store.formula), seed=0)
    assert any(alone[m] != assignment[m] for m in store.mat_id)
    mf.setup()
    fit = mf.fit_set.store
    fitted = sorted(m for m, f in zip(fit.mat_id, fit.fidelity.tolist()) if f == IPA)
    assert fitted == sorted(m for m in store.mat_id if assignment[m] == "train") and len(fitted) == 4
