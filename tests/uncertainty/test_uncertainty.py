"""Calibrated uncertainty: the conformal band on constructed examples, and ensembles end to end."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import optimate_pl
from optimate_pl.spectra.calibration import band, calibrate, conformal_scale, coverage, expected_sc_error, spearman

# One pytest-xdist worker runs this module, so its module-scoped ensemble is built once.
pytestmark = pytest.mark.xdist_group("test_uncertainty")


def test_conformal_scale_is_the_right_order_statistic():
    scores = torch.arange(1.0, 11.0)  # 1..10
    assert conformal_scale(scores, 0.9) == 10.0  # ceil(11 * 0.9) = 10th smallest
    assert conformal_scale(scores, 0.5) == 6.0  # ceil(11 * 0.5) = 6th smallest


def constructed(n, rng, overconfidence=2.0):
    """Spectra y = mean + σ ε (ε standard normal); the ensemble reports σ / overconfidence."""
    w = np.linspace(0, 20, 401)
    mean = np.exp(-((w[None, :] - rng.uniform(4, 12, (n, 1))) / 2.0) ** 2) * rng.uniform(0.5, 1.5, (n, 1))
    sigma = 0.2 * (0.5 + rng.random((n, 1))) * np.ones_like(w)  # a different noise level per material
    y = mean + sigma * rng.standard_normal(mean.shape)
    return (torch.tensor(y), torch.tensor(mean), torch.tensor(sigma / overconfidence), sigma[:, 0])


def test_calibration_makes_the_nominal_coverage_hold_where_the_answer_is_known():
    rng = np.random.default_rng(0)
    y_val, m_val, s_val, _ = constructed(300, rng)
    y, mean, std, sigma = constructed(300, rng)
    raw_lower, raw_upper = mean - 1.645 * std, mean + 1.645 * std
    assert coverage(y, raw_lower, raw_upper) < 0.6  # the ensemble is overconfident by 2x: far too narrow
    cal = calibrate(y_val, m_val, s_val, level=0.9)
    lower, upper = band(mean, std, cal)
    assert coverage(y, lower, upper) == pytest.approx(0.9, abs=0.01)
    # Known answer: 1.645 standard deviations of the true noise, here (std + floor) * scale.
    assert cal.scale * (0.1 * 1.0 + cal.floor) == pytest.approx(1.645 * 0.2 * 1.0, rel=0.1)
    # The scalar ranks the materials by their real error.
    from optimate_pl.spectra.metrics import similarity_coefficient

    real = (1 - similarity_coefficient(mean, y)).numpy()
    predicted = expected_sc_error(mean, std, cal).numpy()
    assert spearman(predicted, real) > 0.6 and spearman(predicted, sigma) > 0.6
    assert np.median(predicted) == pytest.approx(np.median(real), rel=0.25)  # in SC units


@pytest.fixture(scope="module")
def ensemble(tmp_path_factory, cache_dir, cfg_train):
    from optimate_pl.cli.train import run

    root = tmp_path_factory.mktemp("ens")
    summary = run(cfg_train(root, "strategy=dl", "data.subset=40", "ensemble.size=2",
                          "model=dl_100", "trainer.max_epochs=2"))
    return root / "run", summary


def test_an_ensemble_of_tiny_members_predicts_a_mean_and_a_band(ensemble, structures):

    folder, summary = ensemble
    card = json.loads((folder / "ensemble.json").read_text())
    assert [m["seed"] for m in card["members"]] == [0, 1] and card["calibration"]["level"] == 0.9
    for name in ("uncertainty.csv", "uncertainty.md", "reliability.png", "reliability.pdf",
                 "ensemble_test_results.csv"):
        assert (folder / name).stat().st_size > 0, name
    assert (folder / "uncertainty.md").read_text().startswith("Data: SYNTHETIC (generated, not physics).")
    assert 0 <= summary["test_coverage"] <= 1 and -1 <= summary["spearman_expected_vs_real_sc_error"] <= 1
    model = optimate_pl.load_model(folder)
    assert model.is_ensemble and model.calibration is not None
    out = model.predict_structures(list(structures()), uncertainty=True)
    assert out["mean"].shape == out["std"].shape == out["lower"].shape == (2, 2001)
    assert out["expected_sc_error"].shape == (2,) and (out["expected_sc_error"] > 0).all()
    # The band is cut at 0 (Im ε >= 0); a tiny member's mean may dip below 0, the band's edges never do.
    assert (out["lower"] >= 0).all() and (out["lower"] <= np.maximum(out["mean"], 0)).all()
    assert (out["mean"] <= out["upper"]).all() and (out["lower"] < out["upper"]).any()
    members = [optimate_pl.load_model(folder / m["checkpoint"]).predict_structures(list(structures()))
               for m in card["members"]]
    assert not np.allclose(members[0], members[1])  # the seeds made different members
    np.testing.assert_allclose(out["mean"], (members[0] + members[1]) / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.predict_structures(list(structures())), out["mean"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="needs a calibrated ensemble"):
        optimate_pl.load_model(folder / card["members"][0]["checkpoint"]).predict_structures(
            list(structures()), uncertainty=True)


def test_ensemble_predictions_carry_the_band_into_tables_and_figures(ensemble, tmp_path, write_cifs):
    from optimate_pl.inference.screening import load_predictions, run_prediction


    folder, _ = ensemble
    res = run_prediction(folder, write_cifs(tmp_path / "cifs"), tmp_path / "out", workers=0, plot=2)
    assert res["model"]["ensemble"] == 2
    materials = pd.read_csv(tmp_path / "out" / "materials.csv")
    assert "expected_sc_error" in materials and (materials.expected_sc_error > 0).all()
    _, _, lower = load_predictions(tmp_path / "out", "eps_imag_lower")
    _, _, mean = load_predictions(tmp_path / "out")
    assert (lower <= np.maximum(mean, 0) + 1e-6).all() and (tmp_path / "out" / "predictions.png").stat().st_size > 0
    assert (lower >= 0).all()  # Im ε is never negative: the band once reached -0.6
    # Each derived scalar carries the members' spread (an onset is NaN where no member sees one).
    for key in ("onset_eV_std", "eps_static_std", "alpha_visible_mean_std", "peak_energy_eV_std", "onset_fraction"):
        assert key in materials, key
    # Two epochs on toy data: every prediction stays below optics.ONSET_FLOOR, flat as far as optics can tell, so no
    # member sees an onset and nothing is absorbed (the raw 1 %-of-the-maximum rule gave onsets near 0 eV here).
    assert (mean.max(axis=1) < 0.1).all() and materials.onset_eV.isna().all()
    assert (materials.onset_fraction == 0).all() and (materials.alpha_visible_mean == 0).all()


def test_members_that_agree_have_no_spread_and_disagreeing_onsets_are_counted():
    from optimate_pl.spectra import optics
    from optimate_pl.spectra.grid import ENERGY_GRID as W

    one = torch.tensor(np.where(W >= 3.0, 2.0, 0.0))
    same = optics.scalar_spread(torch.stack([one, one])[:, None])
    assert all(float(v[0]) == 0.0 for k, v in same.items() if k.endswith("_std")) and float(same["onset_fraction"]) == 1
    other = torch.tensor(np.where(W >= 4.0, 2.0, 0.0))
    flat = torch.full_like(one, 0.02)  # no onset in the window
    spread = optics.scalar_spread(torch.stack([one, other, flat])[:, None])
    assert float(spread["onset_eV_std"][0]) == pytest.approx(0.5, abs=0.01)  # onsets 3 and 4 eV
    assert float(spread["onset_fraction"][0]) == pytest.approx(2 / 3)


def test_members_as_separate_jobs_then_assembled(tmp_path, cache_dir, cfg_train):
    """One member per job (as a launcher runs them), then `python -m optimate_pl.uncertainty.ensemble FOLDER`."""
    from optimate_pl.uncertainty.ensemble import assemble
    from optimate_pl.cli.train import run

    for m in (0, 1):
        first = run(cfg_train(tmp_path, "strategy=dl", "data.subset=40", "ensemble.size=2", f"ensemble.member={m}",
                            "model=dl_100", "trainer.max_epochs=1", f"paths.output_dir={tmp_path / 'ens' / f'member-{m}'}"))
        assert (first.get("objective") is None) == (m == 0)  # assembled as soon as both are there
    assert (tmp_path / "ens" / "ensemble.json").is_file()
    again = assemble(tmp_path / "ens")
    assert again["members"] == 2 and math.isfinite(again["test_coverage"])


def test_a_rerun_ensemble_keeps_its_finished_members(tmp_path, cache_dir, cfg_train, caplog):
    """An interrupted ensemble run again trains only what is missing: a finished member of the same settings is kept
    (its files untouched), one of other settings is trained anew."""
    import logging

    from optimate_pl.cli.train import run

    args = ["strategy=dl", "data.subset=40", "ensemble.size=2", "model=dl_100", "trainer.max_epochs=1"]
    run(cfg_train(tmp_path, *args))
    members = sorted((tmp_path / "run").glob("member-*/metrics.json"))
    stamps = {p: p.stat().st_mtime_ns for p in members}
    (members[1].parent / "metrics.json").unlink()  # member 1 "interrupted"
    with caplog.at_level(logging.INFO, logger="optimate_pl"):
        summary = run(cfg_train(tmp_path, *args))
    assert "member 1 of 2 finished already" in caplog.text and "member 2 of 2 finished already" not in caplog.text
    assert members[0].stat().st_mtime_ns == stamps[members[0]] and members[1].is_file()
    assert summary["members"] == 2 and (tmp_path / "run" / "ensemble.json").is_file()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="optimate_pl"):
        run(cfg_train(tmp_path, *args[:-1], "trainer.max_epochs=2"))
    assert "finished already" not in caplog.text  # other settings: both trained anew


def test_a_requeued_ensemble_resumes_its_unfinished_member(tmp_path, cache_dir, cfg_train, caplog, monkeypatch):
    """SLURM requeues a pre-empted ensemble job: the finished member is kept and the other resumes from its own
    last.ckpt (it started anew), a TL member from the IPA model the job pretrained before."""
    import logging

    from optimate_pl.cli.train import run

    args = ["strategy=tl", "data.subset=40", "ensemble.size=2", "trainer.max_epochs=1", "strategy.pretrain_epochs=1",
            f"paths.checkpoint_dir={tmp_path / 'ckpts'}"]
    run(cfg_train(tmp_path, *args))
    (tmp_path / "run" / "member-1" / "metrics.json").unlink()  # member 1 pre-empted after its last.ckpt
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")
    with caplog.at_level(logging.INFO, logger="optimate_pl"):
        summary = run(cfg_train(tmp_path, *args))
    assert "member 1 of 2 finished already" in caplog.text  # member-0, kept
    assert f"resuming from {tmp_path / 'run' / 'member-1' / 'checkpoints' / 'last.ckpt'}" in caplog.text
    assert summary["members"] == 2
