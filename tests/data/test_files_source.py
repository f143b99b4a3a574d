"""``data.source=files``: one's own database (the compute command's or the importers' output), its split for
materials outside the published one, mixing with the built-in ladder, and where each material comes from."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from optimate_pl.data import IPADataModule, RPADataModule
from optimate_pl.data import ladder
from optimate_pl.data.build import files_store, load_store
from optimate_pl.data.splits import SPLITS, grouped_split, published_split
from optimate_pl.importers import ImportOptions, import_files
from optimate_pl.spectra.grid import ENERGY_GRID

FILES = Path(__file__).parents[1] / "data" / "files"


def test_grouped_split_rules():
    known = published_split()
    some = sorted(known)[:50]
    formulas = {m: f"K{i}" for i, m in enumerate(some)}
    new = [f"new{i}" for i in range(200)]
    new_formulas = [f"N{i // 2}" for i in range(200)] + []  # polymorph pairs
    ids, forms = some + new + ["poly"], [formulas[m] for m in some] + new_formulas + ["K3"]
    split = grouped_split(ids, forms, known=known, seed=0)
    assert all(split[m] == known[m] for m in some)              # the published split is kept
    assert split["poly"] == known[some[3]]                       # a polymorph joins its formula's split
    for i in range(0, 200, 2):
        assert split[f"new{i}"] == split[f"new{i + 1}"]          # polymorphs never straddle
    share = np.mean([split[m] == "train" for m in new])
    assert 0.65 < share < 0.95                                   # 80 % by formula, up to the hash's noise
    # Adding materials moves none already placed; another seed places them anew.
    more = grouped_split(ids + ["x1", "x2"], forms + ["X1", "X2"], known=known, seed=0)
    assert all(more[m] == split[m] for m in ids)
    assert grouped_split(new, new_formulas, seed=1) != grouped_split(new, new_formulas, seed=0)
    # Three new formulas alone still give every split a group.
    tiny = grouped_split(["a", "b", "c"], ["A", "B", "C"], seed=0)
    assert sorted(tiny.values()) == sorted(SPLITS)


def own_database(folder: Path, cache_dir: Path, n: int, start: int = 0) -> Path:
    """``n`` materials of the built-in ladder (from the ``start``-th, by name) under ids of one's own (outside the
    published split), in the compute command's layout: ``ipa/<id>.json``, ``rpa/<id>.json`` (from the session's
    unpacked ladder, shared)."""
    zips = ladder.unpack(cache_dir)
    with zipfile.ZipFile(zips["rpa"]) as zf:  # materials with both rungs (the IPA rung has more)
        names = sorted(zf.namelist())[start:start + n]
    for kind in ("ipa", "rpa"):
        (folder / "db" / kind).mkdir(parents=True)
        with zipfile.ZipFile(zips[kind]) as zf:
            for name in names:
                d = json.loads(zf.read(name))
                mine = "mine-" + d["data"]["mat_id"]
                d["data"]["mat_id"] = d["entry_id"] = mine
                (folder / "db" / kind / f"{mine}.json").write_text(json.dumps(d))
    return folder / "db"


def test_own_database_splits_and_mixes(tmp_path, cache_dir):
    db = own_database(tmp_path, cache_dir, n=40)
    kw = dict(source="files", root=str(db), cache_dir=str(cache_dir))
    rpa, ipa = RPADataModule(**kw), IPADataModule(**kw)
    rpa.setup()
    ipa.setup()
    sizes = rpa.describe()["sizes"]
    assert all(sizes[s] > 0 for s in SPLITS) and sum(sizes.values()) == 40
    assert rpa.split_origin.startswith("the published split where it has a material, else formula groups")
    assert all(ipa.assignment[m] == s for m, s in rpa.assignment.items())  # the rungs agree: no leakage in TL
    assert rpa.describe()["origins"] == {"files:db": 40}
    # The same folder as the authors' databases: their split knows none of these ids; the error says what to do.
    fig = RPADataModule(source="figshare", root=str(db / "rpa"), ipa_root=str(db / "ipa"), cache_dir=kw["cache_dir"])
    with pytest.raises(ValueError, match="use data.source=files"):
        fig.setup()
    # Mixed with the built-in ladder: every material keeps where it came from.
    mixed = RPADataModule(**kw, extra=["gpaw"])
    mixed.setup()
    origins = mixed.describe()["origins"]
    # The ladder's RPA materials that pass the authors' filters (REFERENCE: indirect gap >= 0.5 eV, direct <= 10 eV;
    # the gap on the dense k-grid can fall below the ground state's, which the compute command checked).
    kept = [m for m in ladder.load()[0] if m["has_rpa"]
            and m["data"]["ipa_indirect_gap"] >= 0.5 and m["data"]["ipa_direct_gap"] <= 10]
    assert origins["files:db"] == 40 and origins["gpaw"] == len(kept) >= 500
    assert mixed.store.origin[mixed.store.mat_id.index(sorted(rpa.assignment)[0])] == "files:db"
    # An extra of the IPA rung alone (an IPA-only import or compute run): it adds to IPA, and its IPA entries are
    # never read as RPA ones (they were, and every one failed the filters as "RPA calculation did not finish")
    import shutil

    cheap = tmp_path / "cheap"
    (cheap / "ipa").mkdir(parents=True)
    for f in sorted((db / "ipa").glob("*.json"))[:5]:
        d = json.loads(f.read_text())
        d["data"]["mat_id"] = d["entry_id"] = "cheap-" + d["data"]["mat_id"]
        (cheap / "ipa" / f"{d['entry_id']}.json").write_text(json.dumps(d))
    with_cheap = dict(kw, extra=[str(cheap)])
    rpa_c, ipa_c = RPADataModule(**with_cheap), IPADataModule(**with_cheap)
    rpa_c.setup()
    ipa_c.setup()
    assert rpa_c.describe()["origins"] == {"files:db": 40}
    assert ipa_c.describe()["origins"] == {"files:db": 40, "files:cheap": 5}
    shutil.rmtree(db / "rpa")  # now no RPA rung anywhere: said plainly
    with pytest.raises(ValueError, match=r"no RPA data: data.root=.* has no rpa/ folder and no data.extra .* has one"):
        RPADataModule(**with_cheap).setup()


def authors_format_entry(structure: Structure, mat_id: str, csv: Path) -> dict:
    """An RPA-database entry written from REFERENCE §2 with the GPAW CSV's columns on the grid (no importer code)."""
    t = np.loadtxt(csv, delimiter=",")
    grid = lambda y: [float(v) for v in np.interp(ENERGY_GRID, t[:, 0], y, left=0.0, right=0.0)]  # noqa: E731
    data = {"mat_id": mat_id, "formula": structure.composition.reduced_formula, "nsites": len(structure),
            "rpa_epsI": {"xx": grid(t[:, 4])}, "rpa_epsR": {"xx": grid(t[:, 3])},
            "ipa_epsI": {"xx": grid(t[:, 2])}, "ipa_epsR": {"xx": grid(t[:, 1])},
            "ipa_direct_gap": 1.0, "ipa_indirect_gap": 1.0, "rpa_similarity": 1.0}
    return ComputedStructureEntry(structure, 0.0, data=data, entry_id=mat_id).as_dict()


def test_imported_spectra_equal_the_same_spectra_in_the_authors_format(tmp_path):
    # What training sees of an imported database is what it would see of the same spectra in the authors' files:
    # same targets and IPA baselines (to the 5 digits the entries keep), hence the same test numbers.
    import_files("gpaw", str(FILES / "gpaw" / "Si"), str(tmp_path / "imported"), ImportOptions(broaden_to=0.2, broadening_eV=0.2))
    theirs = tmp_path / "authors" / "rpa"
    theirs.mkdir(parents=True)
    si = Structure.from_file(FILES / "gpaw" / "Si" / "Si.cif")
    (theirs / "Si.json").write_text(json.dumps(authors_format_entry(si, "Si", FILES / "gpaw" / "Si" / "df.csv")))
    a, _ = load_store(files_store("rpa", tmp_path / "imported", tmp_path / "cache"))
    b, _ = load_store(files_store("rpa", theirs, tmp_path / "cache"))
    assert a.mat_id == b.mat_id == ["Si"]
    assert np.allclose(a.spectrum, b.spectrum, rtol=1e-4, atol=1e-6) and np.allclose(a.ipa, b.ipa, rtol=1e-4, atol=1e-6)
    assert np.array_equal(a.edge_index, b.edge_index) and np.allclose(a.dist, b.dist, atol=1e-5)


def test_files_source_config_errors(tmp_path, cfg_train):
    from optimate_pl.config import ConfigError, resolve_config

    db = tmp_path / "db"
    (db / "rpa").mkdir(parents=True)
    cfg = cfg_train(tmp_path, "strategy=tl", "data.source=files", f"data.root={db}")
    with pytest.raises(ConfigError, match="has no ipa/ folder; set data.ipa_root"):
        resolve_config(cfg)
    cfg = cfg_train(tmp_path, "strategy=dl", "data.source=files", f"data.root={tmp_path / 'nowhere'}")
    with pytest.raises(ConfigError, match="is not a folder"):
        resolve_config(cfg)
    # IPA spectra only (VASP LOPTICS): the RPA rung to learn must come from somewhere, and the error says from where
    ipa_only = tmp_path / "ipa_only"
    (ipa_only / "ipa").mkdir(parents=True)
    for strategy in ("tl", "dl"):
        with pytest.raises(ConfigError, match=r"has IPA spectra only .*add 'data.extra=\[gpaw\]' to learn the RPA"):
            resolve_config(cfg_train(tmp_path, f"strategy={strategy}", "data.source=files", f"data.root={ipa_only}"))
    resolve_config(cfg_train(tmp_path, "strategy=tl", "data.source=files", f"data.root={ipa_only}", "data.extra=[gpaw]"))
    resolve_config(cfg_train(tmp_path, "strategy=tl", "data.source=files", f"data.root={db}", "data.extra=[gpaw]"))


def test_own_entries_read_as_the_authors_format_are_labelled_own_data(tmp_path, cache_dir, caplog):
    """A compute output folder (built-in ladder entries restored there, as a long computation continues) read with
    data.source=figshare was labelled "the authors' databases (figshare)" in the model card."""
    from optimate_pl.inference.predictor import trained_on

    folder = tmp_path / "my_ladder"
    # 60 materials (all 1,022 entries took 20 s to restore, and 511 to featurise)
    ladder.restore(ladder.builtin_dir(), folder, ids=[m["mat_id"] for m in ladder.load()[0][:60]])
    (folder / "summary.json").write_text(json.dumps({"level": "both", "this_run": {}}))  # what compute writes
    dm = RPADataModule(source="figshare", root=str(folder / "rpa"), ipa_root=str(folder / "ipa"),
                       cache_dir=str(cache_dir))
    dm.setup()
    with caplog.at_level("WARNING"):
        data = dm.describe()
    assert data["origins"] == {"files:my_ladder": len(dm.store)}
    assert "written by optimate-pl-compute/import" in caplog.text
    assert trained_on(data) == ("files", f"your own data ({len(dm.store)} from files:my_ladder)")
    assert trained_on({"source": "figshare", "origins": {"figshare": 5}}) == ("figshare", "real DFT data (figshare)")


def test_a_runs_split_folder_keeps_the_ipa_only_materials(tmp_path, cache_dir):
    """An RPA run's split/ (data.split=<run>/split) listed the RPA materials alone: a TL pretraining on it dropped the
    IPA-only ones. With data.split=auto it keeps both rungs' materials, placed as the IPA module places them."""
    from optimate_pl.data.splits import write_split_files

    db = own_database(tmp_path, cache_dir, n=40)
    ipa_only = sorted((db / "rpa").glob("*.json"))[:3]
    for path in ipa_only:
        path.unlink()
    kw = dict(source="files", root=str(db), cache_dir=str(cache_dir))
    rpa, ipa = RPADataModule(**kw), IPADataModule(**kw)
    rpa.setup()
    ipa.setup()
    folder = write_split_files(rpa.split_record, tmp_path / "split")
    again = IPADataModule(**kw, split=str(folder))
    again.setup()
    assert len(rpa.assignment) == 37 and len(again.assignment) == 40
    assert again.assignment == ipa.assignment
    # A run on that split writes its own split/ whole again: reused once more, it still holds the IPA-only ones
    rpa_again = RPADataModule(**kw, split=str(folder))
    rpa_again.setup()
    twice = write_split_files(rpa_again.split_record, tmp_path / "split2")
    third = IPADataModule(**kw, split=str(twice))
    third.setup()
    assert third.assignment == ipa.assignment
