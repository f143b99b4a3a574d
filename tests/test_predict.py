import numpy as np
import pytest
import torch
import lightning.pytorch as pl
from pymatgen.core import Lattice, Structure

import optimate_pl
from optimate_pl.models import Optimate, SpectraModule
from optimate_pl.predict import run_prediction

from .conftest import rocksalt_nacl

NET = dict(node_widths=[32], gat_layers=[[32, 2]], out_widths=[128], out_dim=2001)


def structures():
    nacl = rocksalt_nacl()
    gaas = Structure(Lattice([[0, 2.83, 2.83], [2.83, 0, 2.83], [2.83, 2.83, 0]]), ["Ga", "As"],
                     [[0, 0, 0], [0.25, 0.25, 0.25]])
    return nacl, gaas


@pytest.fixture
def checkpoint(tiny_rpa, tmp_path):
    pl.seed_everything(0)
    module = SpectraModule(net=NET)
    t = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, default_root_dir=tmp_path, num_sanity_val_steps=0)
    t.fit(module, datamodule=tiny_rpa)
    return t.checkpoint_callback.best_model_path


def test_api_matches_predict_step(checkpoint, tiny_rpa):
    model = optimate_pl.load_model(checkpoint)
    assert not model.training and model.energy.shape == (2001,)
    module = SpectraModule.load_from_checkpoint(checkpoint, weights_only=False).eval()
    batch = tiny_rpa.test_set.collate(range(5))
    with torch.no_grad():
        expected = module.predict_step(batch, 0)["pred"].numpy()
    got = model.predict_graphs([tiny_rpa.test_set[i] for i in range(5)])
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    spectra = model.predict_structures(list(structures()))
    assert spectra.shape == (2, 2001)


def predict_cli(*args, cwd):
    import os
    import subprocess
    import sys

    entry = "import sys; from optimate_pl.cli import predict_main; sys.argv[0] = 'optimate-pl-predict'; predict_main()"
    return subprocess.run([sys.executable, "-c", entry, *args], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"})


def test_cli_on_cif_and_poscar_folder(checkpoint, tmp_path):
    folder = tmp_path / "candidates"
    folder.mkdir()
    nacl, gaas = structures()
    nacl.to(filename=str(folder / "nacl.cif"))
    gaas.to(filename=str(folder / "POSCAR_gaas"), fmt="poscar")
    Structure(Lattice.cubic(2.9), ["Fe"], [[0, 0, 0]]).to(filename=str(folder / "iron.cif"))
    (folder / "broken.cif").write_text("data_broken\n_cell_length_a oops\n")
    r = predict_cli(f"checkpoint={checkpoint}", f"input={folder}", f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "predicted 2 materials" in r.stdout
    lines = (tmp_path / "out" / "predictions.csv").read_text().splitlines()
    assert lines[0] == "energy_eV,POSCAR_gaas,nacl" and len(lines) == 2002 and lines[1].startswith("0.00,")
    errors = (tmp_path / "out" / "errors.txt").read_text()
    assert "unsupported element Fe" in errors and "broken.cif" in errors
    assert (tmp_path / "out" / "predictions.png").is_file()
    model = optimate_pl.load_model(checkpoint)
    expected = model.predict_structures([nacl])[0]
    got = np.array([float(l.split(",")[2]) for l in lines[1:]])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_published_state_dict_and_sc_model(tmp_path):
    torch.manual_seed(0)
    sc_net = Optimate(out_dim=1)
    path = tmp_path / "sc_published.pt"
    torch.save(sc_net.state_dict(), path)
    nacl, _ = structures()
    nacl.to(filename=str(tmp_path / "nacl.cif"))
    res = run_prediction(path, tmp_path / "nacl.cif", tmp_path / "o")
    assert res["n_predicted"] == 1
    assert (tmp_path / "o" / "predictions.csv").read_text().startswith("mat_id,sc_rpa_ipa\nnacl,")


def test_npz_output_for_many_materials(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "ipa_published.pt"
    torch.save(Optimate().state_dict(), path)
    folder = tmp_path / "in"
    folder.mkdir()
    for i, s in enumerate(structures()):
        s.to(filename=str(folder / f"s{i}.cif"))
    res = run_prediction(path, folder, tmp_path / "o", format="npz")
    data = np.load(tmp_path / "o" / "predictions.npz")
    assert res["n_predicted"] == 2 and data["eps_imag"].shape == (2, 2001)
    assert list(data["mat_id"]) == ["s0", "s1"] and data["energy"][-1] == 20.0
    expected = optimate_pl.load_model(path).predict_structures(list(structures()))
    np.testing.assert_allclose(data["eps_imag"], expected, rtol=1e-5, atol=1e-6)
