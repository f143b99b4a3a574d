"""Prediction: the API, the command, the output tables a scientist loads."""

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

import optimate_pl
from optimate_pl.models import Optimate, SpectraModule
from optimate_pl.inference.screening import load_predictions, run_prediction


NET = dict(node_widths=[32], gat_layers=[[32, 2]], out_widths=[128], out_dim=2001)
#: Small runs: no worker processes (their start-up would dominate), small chunks.
QUICK = dict(workers=0, chunk_size=4, plot=2)


@pytest.fixture
def checkpoint(tiny_rpa, tmp_path):
    pl.seed_everything(0)
    module = SpectraModule(net=NET, data={"source": "synthetic", "synthetic": True, "cutoff": 5.0})
    t = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    t.fit(module, datamodule=tiny_rpa)
    return t.checkpoint_callback.best_model_path


def test_api_matches_predict_step(checkpoint, tiny_rpa, structures):
    model = optimate_pl.load_model(checkpoint)
    assert not model.training and model.energy.shape == (2001,)
    assert model.info["synthetic"] and "SYNTHETIC" in model.info["trained_on"] and model.cutoff == 5.0
    module = SpectraModule.load_from_checkpoint(checkpoint, weights_only=False).eval()
    batch = tiny_rpa.test_set.collate(range(5))
    with torch.no_grad():
        expected = module.predict_step(batch, 0)["pred"].numpy()
    got = model.predict_graphs([tiny_rpa.test_set[i] for i in range(5)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    spectra = model.predict_structures(list(structures()))
    assert spectra.shape == (2, 2001)


def test_a_training_run_folder_means_its_best_checkpoint(checkpoint, tmp_path, structures):
    """``checkpoint=runs/tl300``: the best-validation model (the one its metrics are of), not ``last.ckpt``, found in
    the folder's checkpoints/ also after the folder moved (metrics.json holds the path it was written at)."""
    import json
    import shutil

    run = tmp_path / "moved" / "tl300"
    (run / "checkpoints").mkdir(parents=True)
    best = run / "checkpoints" / "best-007.ckpt"
    shutil.copy(checkpoint, best)
    state = torch.load(checkpoint, weights_only=False)
    state["state_dict"] = {k: v + 0.05 if v.is_floating_point() else v for k, v in state["state_dict"].items()}
    torch.save(state, run / "checkpoints" / "last.ckpt")  # another model: the one to avoid
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": "/old/place/tl300/checkpoints/best-007.ckpt"}))
    nacl = [next(iter(structures()))]
    got = optimate_pl.load_model(run).predict_structures(nacl)
    np.testing.assert_array_equal(got, optimate_pl.load_model(best).predict_structures(nacl))
    assert np.abs(got - optimate_pl.load_model(run / "checkpoints" / "last.ckpt").predict_structures(nacl)).max() > 1e-3
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": None}))
    with pytest.raises(ValueError, match="a training run that saved no checkpoint"):
        optimate_pl.load_model(run)
    (run / "metrics.json").write_text(json.dumps({"best_checkpoint": "/old/place/best-009.ckpt"}))
    with pytest.raises(ValueError, match=r"best checkpoint best-009.ckpt is neither in .*moved/tl300/checkpoints"):
        optimate_pl.load_model(run)
    (run / "metrics.json").unlink()
    with pytest.raises(ValueError, match="neither an ensemble.json nor a training run's metrics.json"):
        optimate_pl.load_model(run)


def test_cli_on_cif_and_poscar_folder(checkpoint, tmp_path, predict_cli, structures):
    folder = tmp_path / "candidates"
    folder.mkdir()
    nacl, gaas = structures()
    nacl.to(filename=str(folder / "nacl.cif"))
    gaas.to(filename=str(folder / "POSCAR_gaas"), fmt="poscar")
    Structure(Lattice.cubic(2.9), ["Fe"], [[0, 0, 0]]).to(filename=str(folder / "iron.cif"))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a oops\n")
    r = predict_cli(f"checkpoint={checkpoint}", f"input={folder}", f"output={tmp_path / 'out'}", "workers=0",
                    cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "predicted 2 of 4 materials" in r.stdout and "SYNTHETIC" in r.stderr
    out = tmp_path / "out"
    materials = pd.read_csv(out / "materials.csv")
    assert list(materials.id) == ["POSCAR_gaas", "nacl.cif"] and list(materials.source) == ["POSCAR_gaas", "nacl.cif"]
    assert set(materials.model_trained_on) == {"SYNTHETIC"}
    errors = pd.read_csv(out / "errors.csv").set_index("id")
    assert errors.loc["iron.cif", "reason"] == "unsupported_element" and "Fe" in errors.loc["iron.cif", "detail"]
    assert errors.loc["broken.cif", "reason"] == "unreadable"
    assert (out / "predictions.png").is_file()
    spectra = pd.read_csv(out / "spectra.csv")  # one row a material, one column an energy
    assert list(spectra.columns[:3]) == ["id", "0.00", "0.01"] and spectra.shape == (2, 2002)
    expected = optimate_pl.load_model(checkpoint).predict_structures([nacl])[0]
    np.testing.assert_allclose(spectra.set_index("id").loc["nacl.cif"].to_numpy(), expected, rtol=1e-4, atol=1e-5)


def test_structures_outside_the_training_domain_are_flagged(tiny_rpa, tmp_path, structures, caplog):
    """MgF2 and SnO2 (6 sites) on a model of 1-5-site cells were predicted without a word; now every structure is
    judged against the model card's domain, in the table and the summary."""
    pl.seed_everything(0)
    domain = {"elements": ["As", "Cl", "Ga", "Na"], "sites": [2, 2], "volume_per_site": [20.0, 25.0]}
    module = SpectraModule(net=NET, data={"source": "synthetic", "synthetic": True, "cutoff": 5.0, "domain": domain})
    t = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    t.fit(module, datamodule=tiny_rpa)
    folder = tmp_path / "in"
    folder.mkdir()
    nacl, gaas = structures()
    nacl.to(filename=str(folder / "nacl.cif"))
    gaas.to(filename=str(folder / "gaas.cif"))
    Structure(Lattice.cubic(4.2), ["K", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]).to(filename=str(folder / "kcl.cif"))
    big = nacl.copy()
    big.make_supercell([2, 1, 1])
    big.to(filename=str(folder / "nacl_x2.cif"))
    squeezed = nacl.copy()
    squeezed.scale_lattice(nacl.volume * 0.5)
    squeezed.to(filename=str(folder / "nacl_squeezed.cif"))
    with caplog.at_level("WARNING"):
        summary = run_prediction(t.checkpoint_callback.best_model_path, folder, tmp_path / "out", **QUICK)
    flags = pd.read_csv(tmp_path / "out" / "materials.csv", keep_default_na=False).set_index("id").outside_domain
    assert flags["nacl.cif"] == "" and flags["gaas.cif"] == ""
    assert flags["kcl.cif"] == "element never in training: K; 37.0 Å³ per site (training: 20.0-25.0)"
    assert flags["nacl_x2.cif"] == "4 sites (training cells: 2-2)"
    assert flags["nacl_squeezed.cif"] == "11.2 Å³ per site (training: 20.0-25.0)"
    assert summary["outside_domain"]["count"] == 3 and "3 of 5 structures lie outside" in caplog.text


def test_sc_model_predicts_one_number_a_material(tmp_path, structures):
    torch.manual_seed(0)
    path = tmp_path / "sc_published.pt"
    torch.save(Optimate(out_dim=1).state_dict(), path)
    nacl, _ = structures()
    nacl.to(filename=str(tmp_path / "nacl.cif"))
    # ranked by its one number, lowest first (where RPA changes most): a table, no spectra to draw
    res = run_prediction(path, tmp_path / "nacl.cif", tmp_path / "o", rank_by="sc_rpa_ipa", rank_ascending=True,
                         **QUICK)
    assert res["n_predicted"] == 1 and res["model"]["target"] == "sc_rpa_ipa"
    assert list(pd.read_csv(tmp_path / "o" / "top_20_sc_rpa_ipa.csv").id) == ["nacl.cif"]
    table = pd.read_csv(tmp_path / "o" / "materials.csv")
    expected = optimate_pl.load_model(path).predict_structures([nacl])[0, 0]
    assert list(table.id) == ["nacl.cif"] and table.sc_rpa_ipa[0] == pytest.approx(expected, rel=1e-5)
    assert not (tmp_path / "o" / "spectra").exists() or not list((tmp_path / "o" / "spectra").iterdir())


def test_parquet_tables_align_with_the_api(tmp_path, structures, write_cifs):
    torch.manual_seed(0)
    path = tmp_path / "ipa_published.pt"
    torch.save(Optimate().state_dict(), path)
    folder = write_cifs(tmp_path / "in")
    res = run_prediction(path, folder, tmp_path / "o", format="parquet", spectra=["eps_imag", "n"], **QUICK)
    materials, energy, eps = load_predictions(tmp_path / "o")
    assert res["n_predicted"] == 2 and list(materials.id) == ["s0.cif", "s1.cif"] and energy[-1] == 20.0
    expected = optimate_pl.load_model(path).predict_structures(list(structures()))
    np.testing.assert_allclose(eps, expected, rtol=1e-5, atol=1e-6)
    _, _, n = load_predictions(tmp_path / "o", spectrum="n")
    assert n.shape == (2, 2001) and (n > 0).all()
    assert not (tmp_path / "o" / "materials.csv").exists()  # format=parquet: no CSV copies


def test_a_long_cpu_prediction_compiles_the_edge_work_midway_with_the_same_results(tmp_path, structures, monkeypatch):
    """compile_edges=auto: the first COMPILE_AFTER materials on PyG's layers, the rest through the (here
    eager, counted) edge function; the predictions are the same either way. false: never switches. A
    compilation that fails at its first call falls back to PyG's layers instead of ending the run."""
    from optimate_pl.inference import screening
    from optimate_pl.models import optimate as optimate_module

    calls = []

    def counting(*args):
        calls.append(args[0].shape[0])  # nodes of the batch
        return optimate_module.gatv2_edges(*args)

    monkeypatch.setattr(optimate_module, "_compiled_gatv2_edges", lambda: counting)
    monkeypatch.setattr(optimate_module, "cxx_compiler", lambda: "/usr/bin/g++")
    monkeypatch.setattr(screening, "COMPILE_AFTER", 6)
    torch.manual_seed(0)
    path = tmp_path / "ipa_published.pt"
    torch.save(Optimate().state_dict(), path)
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(6):  # 12 structures, batches of 4: materials 1-4, 5-8 before the switch, 9-12 after
        for j, s in enumerate(structures()):
            s.to(filename=str(folder / f"s{i:02d}{j}.cif"))
    settings = dict(workers=0, chunk_size=100, plot=0, batch_size=4, format="parquet")
    run_prediction(path, folder, tmp_path / "never", compile_edges=False, **settings)
    assert calls == []
    run_prediction(path, folder, tmp_path / "auto", compile_edges="auto", **settings)
    assert len(calls) == 2  # the third batch only (8 >= 6 materials before it), through both GAT layers
    _, _, eps_never = load_predictions(tmp_path / "never")
    _, _, eps_auto = load_predictions(tmp_path / "auto")
    np.testing.assert_allclose(eps_auto, eps_never, rtol=1e-4, atol=1e-5)
    with pytest.raises(Exception, match="compile_edges must be true, false or auto"):
        run_prediction(path, folder, tmp_path / "typo", compile_edges="sometimes", **settings)
    assert not (tmp_path / "typo").exists()  # refused before the output folder is made

    def broken(*args):  # torch.compile builds at its first call: e.g. no omp.h on this machine
        raise RuntimeError("CppCompileError: omp.h: No such file or directory")

    monkeypatch.setattr(optimate_module, "_compiled_gatv2_edges", lambda: broken)
    res = run_prediction(path, folder, tmp_path / "broken", compile_edges=True, **settings)
    _, _, eps_broken = load_predictions(tmp_path / "broken")
    assert res["n_predicted"] == 12
    np.testing.assert_allclose(eps_broken, eps_never, rtol=1e-6, atol=1e-7)  # fell back to PyG's layers
