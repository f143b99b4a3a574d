"""The importers on real output files (tests/data/README.md): numbers against the codes' own files and
pymatgen's parse, and the one-line refusals of what they cannot use."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from optimate_pl.data.readers import read_database
from optimate_pl.importers import ImportOptions, import_files
from optimate_pl.importers.vasp import read_vasprun
from optimate_pl.spectra.grid import ENERGY_GRID

FILES = Path(__file__).parents[1] / "data" / "files"


def entry(folder: Path, rung: str, mat_id: str) -> dict:
    return json.loads((folder / rung / f"{mat_id}.json").read_text())["data"]


def on_grid(e, y):
    """The reference resampling: linear interpolation, 0 where the file has no value (written from REFERENCE §1)."""
    return np.interp(ENERGY_GRID, e, y, left=0.0, right=0.0)


def test_vasprun_equals_pymatgens_parse():
    from pymatgen.io.vasp.outputs import Vasprun

    path = FILES / "vasp" / "Ge" / "vasprun.xml.gz"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vr = Vasprun(str(path), parse_potcar_file=False)
    energies, real, imag = (np.asarray(x) for x in vr.dielectric)
    sp = read_vasprun(path)
    assert np.array_equal(sp.energies, energies)
    assert np.array_equal(sp.ipa.imag, imag[:, :3].T) and np.array_equal(sp.ipa.real, real[:, :3].T)
    assert sp.broadening_eV == 0.1 and sp.rpa is None
    assert sp.indirect_gap == pytest.approx(vr.eigenvalue_band_properties[0], abs=1e-9)
    assert sp.structure.composition.reduced_formula == "Ge"


def test_vasp_entry_on_the_grid(tmp_path):
    # At the run's own broadening (broaden_to = CSHIFT) the entry is the file's spectrum on the grid, to 5 digits.
    summary = import_files("vasp", str(FILES / "vasp"), str(tmp_path), ImportOptions(broaden_to=0.1))
    assert summary["imported_ids"] == ["Ge", "MgSe"]
    assert summary["notes"] == {"MgSe": ["broadened from 0.01 to 0.1 eV (Lorentzian, half width 0.09 eV)"]}
    d = entry(tmp_path, "ipa", "Ge")
    sp = read_vasprun(FILES / "vasp" / "Ge" / "vasprun.xml.gz")
    want = on_grid(sp.energies, sp.ipa.imag[0])
    assert np.allclose(d["ipa_epsI_0"], want, rtol=1e-4, atol=1e-6)
    # This run's xx and yy differ by up to 8 (of 27) although Ge is cubic (a k-mesh VASP did not symmetrise):
    # the components are kept as the file has them, and the trace averages them.
    assert np.allclose(d["ipa_epsI_1"], on_grid(sp.energies, sp.ipa.imag[1]), rtol=1e-4, atol=1e-6)
    assert d["ipa_indirect_gap"] == pytest.approx(sp.indirect_gap)


def test_vasp_current_current_block(tmp_path):
    density = read_vasprun(FILES / "vasp" / "MgSe" / "vasprun.xml.gz")
    velocity = read_vasprun(FILES / "vasp" / "MgSe" / "vasprun.xml.gz", vasp_kind="velocity")
    assert density.ipa.real[0, 0] == pytest.approx(83.6833, abs=1e-4)  # the file's two unlabelled blocks
    assert velocity.ipa.real[0, 0] == pytest.approx(83.7310, abs=1e-4)


@pytest.mark.parametrize("folder, options, reason", [
    ("vasp/Ge", {}, "broadened with 0.1 eV, the databases with 0.3 eV (broaden_to=0.3 adds a Lorentzian of half width 0.2 eV)"),
    ("vasp_refused/Si8_overflow", {"broaden_to": 0.3}, "pymatgen cannot read it (ValueError: invalid literal for int()"),
    ("vasp_refused/Si_gw", {"broaden_to": 0.3}, "its frequency grid has steps of up to 1.89 eV below 20 eV"),
])
def test_vasp_refusals(tmp_path, folder, options, reason):
    summary = import_files("vasp", str(FILES / folder), str(tmp_path), ImportOptions(**options))
    assert summary["imported"] == 0
    row = (tmp_path / "errors.csv").read_text().splitlines()[1]
    assert reason in row and "vasprun.xml.gz" in row


def test_yambo_rungs_against_the_file(tmp_path):
    summary = import_files("yambo", str(FILES / "yambo"), str(tmp_path),
                           ImportOptions(broaden_to=0.1, beyond_grid="zero"))
    assert summary["imported_ids"] == ["Si"] and summary["rpa_entries"] == 1
    assert "reaches only 7.50 eV: set to 0 where it has no value" in summary["notes"]["Si"]
    cols = np.loadtxt(FILES / "yambo" / "Si" / "o-06_RPA_len_dir_G.eps_q1_inv_rpa_dyson")  # E, EPS-Im/Re, EPSo-Im/Re
    rpa = entry(tmp_path, "rpa", "Si")
    assert np.allclose(rpa["rpa_epsI"]["xx"], on_grid(cols[:, 0], cols[:, 1]), rtol=1e-4, atol=1e-6)
    assert np.allclose(rpa["ipa_epsI"]["xx"], on_grid(cols[:, 0], cols[:, 3]), rtol=1e-4, atol=1e-6)
    assert np.allclose(entry(tmp_path, "ipa", "Si")["ipa_epsI_0"], rpa["ipa_epsI"]["xx"])
    assert rpa["ipa_indirect_gap"] is None  # Yambo's file has no gap


@pytest.mark.parametrize("folder, options, reason", [
    ("yambo/Si", {"broaden_to": 0.3}, "the spectrum reaches only 7.50 eV, not 0-20 eV (beyond_grid=zero"),
    ("yambo_refused/LiF", {"broaden_to": 0.3, "beyond_grid": "zero"}, "energy-dependent broadening (0.1 to 0.3 eV"),
    ("yambo_refused/Si_bse", {}, "a BSE (excitonic) spectrum"),
])
def test_yambo_refusals(tmp_path, folder, options, reason):
    import_files("yambo", str(FILES / folder), str(tmp_path), ImportOptions(**options))
    assert reason in (tmp_path / "errors.csv").read_text()


def test_gpaw_csv_rungs(tmp_path):
    summary = import_files("gpaw", str(FILES / "gpaw"), str(tmp_path), ImportOptions(broaden_to=0.2, broadening_eV=0.2))
    assert sorted(summary["imported_ids"]) == ["AlN", "Si"]
    si = np.loadtxt(FILES / "gpaw" / "Si" / "df.csv", delimiter=",")  # ω, Re/Im ε without, Re/Im ε with local fields
    d = entry(tmp_path, "rpa", "Si")
    assert np.allclose(d["ipa_epsI"]["xx"], on_grid(si[:, 0], si[:, 2]), rtol=1e-4, atol=1e-6)
    assert np.allclose(d["rpa_epsI"]["xx"], on_grid(si[:, 0], si[:, 4]), rtol=1e-4, atol=1e-6)
    # Hexagonal AlN: x and y alike, z not; the database's trace is (xx + yy + zz) / 3 of the three files.
    x, z = (np.loadtxt(FILES / "gpaw" / "AlN" / f"df_{c}.csv", delimiter=",") for c in "xz")
    aln = entry(tmp_path, "rpa", "AlN")
    assert "yy" not in aln["rpa_epsI"] and "zz" in aln["rpa_epsI"]
    rec = next(r for r in read_database(tmp_path / "rpa", "rpa").records if r.mat_id == "AlN")
    want = (2 * on_grid(x[:, 0], x[:, 4]) + on_grid(z[:, 0], z[:, 4])) / 3
    assert np.allclose(rec.spectrum, want, rtol=1e-4, atol=1e-5)


def test_gpaw_refusals(tmp_path):
    import_files("gpaw", str(FILES / "gpaw" / "Si"), str(tmp_path / "a"), ImportOptions())
    assert "does not record its broadening: give broadening=" in (tmp_path / "a" / "errors.csv").read_text()
    one = tmp_path / "one" / "AlN"
    one.mkdir(parents=True)
    for name in ("df_x.csv", "POSCAR"):
        shutil.copy(FILES / "gpaw" / "AlN" / name, one)
    import_files("gpaw", str(one), str(tmp_path / "b"), ImportOptions(broadening_eV=0.2, broaden_to=0.3))
    assert "the trace only for a cubic crystal; this one is hexagonal" in (tmp_path / "b" / "errors.csv").read_text()


def test_one_id_from_two_codes(tmp_path):
    opts = ImportOptions(broaden_to=0.3, broadening_eV=0.2, beyond_grid="zero")
    import_files("gpaw", str(FILES / "gpaw"), str(tmp_path), opts)
    summary = import_files("yambo", str(FILES / "yambo"), str(tmp_path), opts)
    assert summary["imported"] == 0 and "id_prefix=" in (tmp_path / "errors.csv").read_text()
    assert entry(tmp_path, "rpa", "Si")["formula"] == "Si"  # the first import's entry is kept
    summary = import_files("yambo", str(FILES / "yambo"), str(tmp_path), opts, id_prefix="yambo-")
    assert summary["imported_ids"] == ["yambo-Si"]
    # The folder's record keeps every import; a failure stays listed until that material is imported.
    folder = json.loads((tmp_path / "summary.json").read_text())
    assert [i["code"] for i in folder["imports"]] == ["gpaw", "yambo", "yambo"]
    assert folder["folder"] == {"ipa_entries": 3, "rpa_entries": 3}
    assert "Si," in (tmp_path / "errors.csv").read_text()     # yambo's Si, refused above, not tried again


@pytest.mark.slow
def test_import_command(tmp_path):
    entry = "import sys; from optimate_pl.cli import import_main; sys.argv[0] = 'optimate-pl-import'; import_main()"

    def run(*args):
        done = subprocess.run([sys.executable, "-c", entry, *args], capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout + done.stderr

    rc, out = run("from=vasp", f"input={FILES / 'vasp'}/**/vasprun.xml.gz", f"output={tmp_path / 'db'}", "broaden_to=0.3")
    assert rc == 0 and "imported 2 of 2 materials (2 IPA, 0 RPA entries)" in out
    assert "'data.extra=[gpaw]'   (your spectra have no RPA rung" in out  # VASP LOPTICS: IPA only
    # IPA-only spectra into a folder that holds both rungs already: the hint counts the folder, not this import
    rc, out = run("from=gpaw", f"input={FILES / 'gpaw'}", f"output={tmp_path / 'both'}", "broadening=0.2",
                  "broaden_to=0.3", "beyond_grid=zero")
    assert rc == 0
    rc, out = run("from=vasp", f"input={FILES / 'vasp'}/**/vasprun.xml.gz", f"output={tmp_path / 'both'}",
                  "broaden_to=0.3")
    assert rc == 0 and "(2 IPA, 0 RPA entries)" in out and "data.extra" not in out
    assert f"data.root={tmp_path / 'both'}\n" in out
    rc, out = run("from=castep", f"input={FILES}", f"output={tmp_path / 'x'}")
    assert rc == 2 and "from=castep: use one of vasp, yambo, gpaw" in out
    rc, out = run("--help")
    assert rc == 0 and "optimate-pl-import from=vasp" in out and "broaden_to" in out
