import lightning.pytorch as pl
import torch

from optimate_pl.models import SpectraModule
from optimate_pl.models.targets import SPECTRUM
from optimate_pl.training.outputs import summarise_rows, write_results_csv

SMALL_NET = dict(node_widths=[32], gat_layers=[[32, 2]], out_widths=[128], out_dim=2001)


def trainer(tmp_path, **kw):
    return pl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0, **kw)


def test_two_epoch_fit_lowers_validation_loss(tiny_rpa, tmp_path):
    pl.seed_everything(0)
    module = SpectraModule(net=SMALL_NET, optimizer={"_target_": "torch.optim.Adam", "lr": 3e-3})
    t = trainer(tmp_path, max_epochs=2, enable_checkpointing=False)
    before = t.validate(module, datamodule=tiny_rpa, verbose=False)[0]["val/loss"]
    t.fit(module, datamodule=tiny_rpa)
    after = t.validate(module, datamodule=tiny_rpa, verbose=False)[0]["val/loss"]
    assert after < 0.95 * before, (before, after)


def test_test_metrics_baseline_csv_and_checkpoint_resume(tiny_rpa, tmp_path):
    pl.seed_everything(0)
    module = SpectraModule(net=SMALL_NET)
    t = trainer(tmp_path, max_epochs=1)
    t.fit(module, datamodule=tiny_rpa)
    res = t.test(module, datamodule=tiny_rpa, verbose=False)[0]
    rows = module.test_rows
    assert len(rows) == 20 and {"mat_id", "formula", "nsites", "sc", "mse", "mae", "ipa_sc", "ipa_mse"} <= set(rows[0])
    summary = summarise_rows(rows, SPECTRUM)
    assert abs(res["test/sc_median"] - summary["sc_median"]) < 1e-5
    assert abs(res["test/ipa_sc_median"] - summary["ipa_sc_median"]) < 1e-5
    # The IPA baseline is SC[IPA; RPA] of the data itself, independent of the model.
    from optimate_pl.spectra.metrics import median, similarity_coefficient
    ds = tiny_rpa.test_set
    ipa = torch.cat([ds[i].ipa for i in range(len(ds))]); rpa = torch.cat([ds[i].y for i in range(len(ds))])
    assert abs(res["test/ipa_sc_median"] - float(median(similarity_coefficient(ipa, rpa)))) < 1e-5
    path = write_results_csv(rows, tmp_path / "r.csv")
    assert path.read_text().splitlines()[0].startswith("mat_id,formula,nsites,sc,mse,mae,ipa_sc,ipa_mse")
    # Lightning checkpoints load without extra arguments and resume training.
    ckpt = t.checkpoint_callback.best_model_path
    loaded = SpectraModule.load_from_checkpoint(ckpt, weights_only=False)
    b = tiny_rpa.test_set.collate(range(4))
    module.eval(); loaded.eval()
    torch.testing.assert_close(loaded(b), module(b))
    t2 = trainer(tmp_path, max_epochs=2)
    t2.fit(SpectraModule(net=SMALL_NET), datamodule=tiny_rpa, ckpt_path=ckpt)
    assert t2.current_epoch == 2
    out = t2.predict(loaded, dataloaders=tiny_rpa.test_dataloader())
    assert out[0]["pred"].shape == (20, 2001) and out[0]["mat_id"] == tiny_rpa.test_set.mat_ids


def test_sc_target_module(tmp_path, cache_dir):
    from optimate_pl.data import RPADataModule
    from tests.conftest import TINY_SIZES

    dm = RPADataModule(source="synthetic", cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES, target="sc_rpa_ipa", batch_size=16,
                       drop_last=True)
    module = SpectraModule(net={**SMALL_NET, "out_dim": 1}, target="sc_rpa_ipa")
    t = trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    t.fit(module, datamodule=dm)
    res = t.test(module, datamodule=dm, verbose=False)[0]
    assert "test/ae_median" in res and {"true", "pred", "abs_error"} <= set(module.test_rows[0])


def test_bf16_mixed_training_is_tested_in_fp32(tiny_rpa, tmp_path):
    """The authors trained in bf16-mixed and evaluated in fp32: so does the test step."""
    from optimate_pl.spectra.metrics import similarity_coefficient

    pl.seed_everything(0)
    module = SpectraModule(net=SMALL_NET)
    t = trainer(tmp_path, max_epochs=1, precision="bf16-mixed", enable_checkpointing=False)
    t.fit(module, datamodule=tiny_rpa)
    t.test(module, datamodule=tiny_rpa, verbose=False)
    got = torch.tensor([r["sc"] for r in module.test_rows])
    batch = tiny_rpa.test_set.collate(range(len(tiny_rpa.test_set)))
    module.eval()
    with torch.no_grad():
        fp32 = similarity_coefficient(module(batch), batch.y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = similarity_coefficient(module(batch).float(), batch.y)
    torch.testing.assert_close(got, fp32, atol=2e-6, rtol=0)
    assert (bf16 - fp32).abs().max() > 1e-5  # bf16 would have been visibly different


def test_adam_is_fused_on_cpu_unless_the_config_chooses(tmp_path):
    """On a CPU Adam/AdamW get ``fused=True`` (one kernel instead of a per-parameter loop with an item() each);
    a config that names ``fused``/``foreach`` keeps its choice. Fused and the loop give the same update."""
    module = SpectraModule(net=SMALL_NET, optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3, "weight_decay": 1e-4})
    opt = module.configure_optimizers()
    assert opt.defaults["fused"] is True
    chosen = SpectraModule(net=SMALL_NET, optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-3, "foreach": False})
    assert not chosen.configure_optimizers().defaults["fused"]
    loop = SpectraModule(net=SMALL_NET, optimizer={"_target_": "torch.optim.Adam", "lr": 1e-3, "weight_decay": 1e-4,
                                                   "fused": False})
    loop.load_state_dict(module.state_dict())
    loop_opt = loop.configure_optimizers()
    for _ in range(3):
        for m in (module, loop):
            for i, p in enumerate(m.parameters()):
                p.grad = torch.sin(torch.arange(p.numel(), dtype=torch.float32) + i).reshape(p.shape)
        opt.step()
        loop_opt.step()
    for a, b in zip(module.parameters(), loop.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    # fp16 (a GPU without bf16) keeps the default: Lightning's grad scaler refuses clipping with a fused one.
    from types import SimpleNamespace

    for precision, fused in (("16-mixed", False), ("bf16-mixed", True), ("32-true", True)):
        m = SpectraModule(net=SMALL_NET)
        m._trainer = SimpleNamespace(precision=precision)
        assert bool(m.configure_optimizers().defaults["fused"]) is fused, precision
