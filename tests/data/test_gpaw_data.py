"""The built-in GPAW-computed ladder (data.source=gpaw): what ships, through the ordinary readers and the
published split; no GPAW needed."""
from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from optimate_pl.data import IPADataModule, RPADataModule, ladder
from optimate_pl.spectra.grid import ENERGY_GRID
from optimate_pl.data.splits import published_split

trapz = getattr(np, "trapezoid", None) or np.trapz


def test_shipped_dataset_is_real_alexandria_materials_in_the_published_split():
    info = ladder.describe()
    materials = json.loads(gzip.decompress((ladder.builtin_dir() / "materials.json.gz").read_bytes()))
    split = published_split()
    assert info["materials"] == len(materials) >= 7
    assert all(m["mat_id"].startswith("agm") and m["mat_id"] in split for m in materials)
    params = materials[0]["parameters"]
    assert params["code"] == "GPAW" and params["settings"]["broadening_eV"] == 0.3
    size = sum(p.stat().st_size for p in ladder.builtin_dir().iterdir())
    assert size < 12 * 2**20  # "compactly, a few MB"


def test_gpaw_source_reads_through_the_real_format_path(cache_dir):
    # The session's cache: the unpacked zips and stores are built once (under a lock) by whichever test is first.
    ipa = IPADataModule(source="gpaw", cache_dir=str(cache_dir))
    rpa = RPADataModule(source="gpaw", cache_dir=str(cache_dir))
    ipa.setup()
    rpa.setup()
    assert ipa.describe()["source"] == "gpaw" and ipa.split_origin == "the authors' published split"
    # The pack learned is recorded (the built-in ladder changes between versions under the same config).
    assert ipa.describe()["ladder"] == rpa.describe()["ladder"] == ladder.digest()
    n = ladder.describe()["with_rpa"]
    assert sum(ipa.describe()["sizes"].values()) <= ladder.describe()["materials"]
    assert 0 < sum(rpa.describe()["sizes"].values()) <= n
    store = rpa.store
    target, base = store.spectrum.numpy(), store.ipa.numpy()
    assert (target >= 0).all() and (base >= 0).all() and target.shape[1] == len(ENERGY_GRID)
    # SC[RPA;IPA] = 1 - ∫|RPA - IPA| / ∫|IPA| (REFERENCE §7): real local-field effects, neither 0 nor 1.
    sc = 1 - trapz(np.abs(target - base), ENERGY_GRID, axis=1) / trapz(np.abs(base), ENERGY_GRID, axis=1)
    assert 0.3 < np.median(sc) < 0.99
    # Local fields lower ε∞ = Re ε(0) (REFERENCE §7b: NaCl 2.72 -> 2.32, MgO 3.28 -> 3.12, Si 13.7 -> 12.9).
    materials, rows = ladder.load()
    eps_inf = np.array([[rows[m["spectra"][key]].mean(0)[0] for key in ("ipa_epsR", "rpa_epsR")]
                        for m in materials if m["has_rpa"]])
    assert np.mean(eps_inf[:, 1] < eps_inf[:, 0]) > 0.9 and (eps_inf > 1).all()


def test_the_formula_split_of_the_ladder_is_one_split_of_both_rungs(cache_dir):
    """data.split=formula on the built-in ladder: the RPA rung inherits the IPA rung's formula split (it was refused,
    naming data.ipa_root, which the ladder does not need)."""
    from optimate_pl.data.splits import formula_split

    ipa = IPADataModule(source="gpaw", split="formula", cache_dir=str(cache_dir))
    rpa = RPADataModule(source="gpaw", split="formula", cache_dir=str(cache_dir))
    ipa.setup()
    rpa.setup()
    assert rpa.split_origin.startswith("the authors' formula split")
    assert rpa.assignment and all(ipa.assignment[m] == s for m, s in rpa.assignment.items())
    assert ipa.assignment == formula_split(ipa.store.mat_id, ipa.store.formula, 0)  # the authors' call, on the IPA rung
    with pytest.raises(ValueError, match="data.extra=.*not synthetic"):
        RPADataModule(source="synthetic", extra=["gpaw"], cache_dir=str(cache_dir))


def test_azides_and_nitrates_are_found_by_geometry():
    """The paper singles out azides (N3-) and nitrates (NO3-) for strong local fields. The ladder report
    finds them by their covalent bonds (textbook lengths: N-N 1.18 Å in an azide, N-O 1.25 Å in a nitrate),
    not by formula: an N-N bond alone (N2O, a molecular crystal) or N without short bonds (a nitride) is neither."""
    from pymatgen.core import Lattice, Structure

    from optimate_pl.studies.ladder import family, molecular_anion

    box = Lattice.cubic(6.0)
    azide = Structure(box, ["Na", "N", "N", "N"], [[0, 0, 0], [3, 3, 3], [3, 3, 4.18], [3, 3, 1.82]],
                      coords_are_cartesian=True)
    c, s = 1.25 * np.cos(np.radians(30)), 1.25 * np.sin(np.radians(30))
    nitrate = Structure(box, ["Na", "N", "O", "O", "O"],
                        [[0, 0, 0], [3, 3, 3], [3, 4.25, 3], [3 + c, 3 - s, 3], [3 - c, 3 - s, 3]],
                        coords_are_cartesian=True)
    n2o = Structure(box, ["N", "N", "O"], [[3, 3, 1.87], [3, 3, 3], [3, 3, 4.19]], coords_are_cartesian=True)
    nitride = Structure(Lattice.cubic(4.0), ["Sc", "N"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert molecular_anion(azide.as_dict()) == "azide"
    assert molecular_anion(nitrate.as_dict()) == "nitrate"
    assert molecular_anion(n2o.as_dict()) is None and molecular_anion(nitride.as_dict()) is None
    assert family(["Na", "N", "N", "N"], azide.as_dict()) == "azide"
    assert family(["Na", "N", "O", "O", "O"], nitrate.as_dict()) == "nitrate"
    assert family(["Na", "N", "O", "O", "O"]) == "chalcogenide"  # without the structure: by elements only
    assert family(["N", "N", "O"], n2o.as_dict()) == "chalcogenide"


def test_gpaw_source_takes_another_packed_ladder_at_data_root(tmp_path, cfg_train):
    """``data.source=gpaw data.root=PACK`` (issue #37 item 5): a packed ladder other than the built-in one, e.g. the
    growing ladder's snapshot with IPA-only materials. Its IPA rung holds every material, its RPA rung the ones with
    both; the published split holds on both; its own IPA model (a different dataset digest); a folder that is not a
    pack is named with what it is instead."""
    import pytest

    from optimate_pl.config.resolve import check_config
    from optimate_pl.config.schema import ConfigError
    from optimate_pl.data.cache import source_label
    from optimate_pl.data.entries import entry_file_name
    from optimate_pl.inference.predictor import trained_on
    from optimate_pl.uncertainty.next_rpa import computed_ids
    import hydra.utils

    from optimate_pl.training.pretrain import ipa_checkpoint_path, ipa_pretraining_config

    materials, rows = ladder.load()
    split = published_split()
    chosen = {}
    for part in ("train", "validation", "test"):  # 8 of each split, 3 of them without their RPA rung
        chosen[part] = [m for m in materials if m["has_rpa"] and split[m["mat_id"]] == part][:8]
    run = tmp_path / "run"
    ipa_only = {m["mat_id"] for ms in chosen.values() for m in ms[:3]}
    for m in (m for ms in chosen.values() for m in ms):
        for kind in ("ipa",) if m["mat_id"] in ipa_only else ("ipa", "rpa"):
            (run / kind).mkdir(parents=True, exist_ok=True)
            (run / kind / entry_file_name(m["mat_id"])).write_text(json.dumps(ladder._entry(m, rows, kind)))
    pack = tmp_path / "pack"
    info = ladder.pack(run, pack, compact=True)
    assert (info["materials"], info["rpa"], info["compact"]) == (24, 15, 9)
    cache = tmp_path / "cache"
    ipa = IPADataModule(source="gpaw", root=str(pack), cache_dir=str(cache))
    rpa = RPADataModule(source="gpaw", root=str(pack), cache_dir=str(cache))
    ipa.setup()
    rpa.setup()
    assert ipa.describe()["sizes"] == {"train": 8, "validation": 8, "test": 8}
    assert rpa.describe()["sizes"] == {"train": 5, "validation": 5, "test": 5}
    assert source_label("gpaw", str(pack)).endswith(f"packed at {pack})") and "built-in" in source_label("gpaw")
    assert trained_on(rpa.describe()) == ("gpaw", f"real DFT data (the GPAW-computed ladder packed at {pack})")
    # Every material where the published split puts it, on both rungs; the RPA rung without the IPA-only ones.
    assert ipa.assignment == {m["mat_id"]: part for part, ms in chosen.items() for m in ms}
    assert rpa.assignment == {m: part for m, part in ipa.assignment.items() if m not in ipa_only}
    # The automatic IPA model of a TL run on it is its own, not the built-in ladder's, and a new snapshot at the
    # same path (the ladder grew) needs a new one.
    builtin = cfg_train(tmp_path, "strategy=tl", "data.source=gpaw")
    other = cfg_train(tmp_path, "strategy=tl", "data.source=gpaw", f"data.root={pack}", f"data.cache_dir={cache}")
    check_config(other)
    # ... and learns the pack's IPA rung (all 24 materials' spectra, 8 for training), not the built-in one.
    pretraining = hydra.utils.instantiate(ipa_pretraining_config(other).data, _convert_="all")
    pretraining.setup()
    assert pretraining.assignment == ipa.assignment
    before = ipa_checkpoint_path(other)
    assert before != ipa_checkpoint_path(builtin)
    # The pack is named by its content, not by how its path is spelt.
    assert ipa_checkpoint_path(cfg_train(tmp_path, "strategy=tl", "data.source=gpaw", f"data.root={pack}/")) == before
    # Active learning on it leaves out the pack's RPA materials, not the built-in ladder's.
    assert computed_ids("gpaw", None, str(pack)) == set(rpa.assignment)
    (run / "ipa" / entry_file_name(chosen["test"][-1]["mat_id"])).unlink()
    (run / "rpa" / entry_file_name(chosen["test"][-1]["mat_id"])).unlink()
    assert ladder.pack(run, pack, compact=True, replace=True)["materials"] == 23
    assert ipa_checkpoint_path(other) != before
    with pytest.raises(ConfigError, match=r"data.root=.*run is not a packed ladder .*optimate-pl-compute output "
                                          r"folder: train on it as data.source=files, or pack it first"):
        check_config(cfg_train(tmp_path, "strategy=tl", "data.source=gpaw", f"data.root={run}"))
    with pytest.raises(ConfigError, match=r"data.root=.*nowhere: no such folder"):
        check_config(cfg_train(tmp_path, "strategy=tl", "data.source=gpaw", f"data.root={tmp_path / 'nowhere'}"))
