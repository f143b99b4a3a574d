"""The ladder tool's pack and restore under mistakes (no GPAW needed): a damaged entry named, a file as the destination
refused, a restore that never replaces the folder's own entries, the command's messages."""
from __future__ import annotations

import gzip
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from optimate_pl.data import ladder
from optimate_pl.data.entries import entry_file_name


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A compute output folder of three shipped materials (two with the RPA rung), written from the built-in pack."""
    materials, rows = ladder.load()
    with_rpa = [m for m in materials if m["has_rpa"]][:2]
    ipa_only = dict(with_rpa[0], mat_id="agm-ipa-only", has_rpa=False)
    ipa_only["data"] = dict(with_rpa[0]["data"], mat_id="agm-ipa-only")
    out = tmp_path_factory.mktemp("ladder") / "run"
    for m in [*with_rpa, ipa_only]:
        for kind in ("ipa", "rpa") if m["has_rpa"] else ("ipa",):
            (out / kind).mkdir(parents=True, exist_ok=True)
            (out / kind / entry_file_name(m["mat_id"])).write_text(json.dumps(ladder._entry(m, rows, kind)))
    return out


def test_pack_names_a_damaged_entry_and_refuses_a_file_as_destination(folder, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    victim = next((bad / "rpa").glob("*.json"))
    victim.write_bytes(victim.read_bytes()[:100])  # cut short
    with pytest.raises(ValueError, match=rf"{victim.name}: not a whole entry \(JSONDecodeError"):
        ladder.pack(bad, tmp_path / "packed")
    assert not (tmp_path / "packed").exists()  # nothing half-packed
    victim.write_text(json.dumps({"data": {"mat_id": "x"}}))
    with pytest.raises(ValueError, match="not an entry of optimate-pl-compute \\(no structure, parameters\\)"):
        ladder.pack(bad, tmp_path / "packed")
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match="a_file is a file: the destination of a pack is a folder"):
        ladder.pack(folder, tmp_path / "a_file")
    info = ladder.pack(folder, tmp_path / "packed")
    assert (info["materials"], info["rpa"]) == (3, 2)


def test_restore_keeps_the_folders_own_entries(folder, tmp_path):
    ladder.pack(folder, tmp_path / "packed")
    target = tmp_path / "target"
    assert ladder.restore(tmp_path / "packed", target) == {"materials": 3, "restored": 5, "kept": 0}
    some = ladder.restore(tmp_path / "packed", tmp_path / "some", ids=["agm-ipa-only"])  # one material, its IPA entry
    assert some == {"materials": 1, "restored": 1, "kept": 0} and sorted(p.name for p in (tmp_path / "some").rglob(
        "*.json")) == ["agm-ipa-only.json"]
    own = target / "ipa" / "agm-ipa-only.json"
    newer = json.loads(own.read_text())
    newer["data"]["note"] = "recomputed with other settings"
    own.write_text(json.dumps(newer))
    damaged = next((target / "rpa").glob("*.json"))
    damaged.write_text("{")
    assert ladder.restore(tmp_path / "packed", target) == {"materials": 3, "restored": 1, "kept": 4}
    assert json.loads(own.read_text())["data"]["note"] == "recomputed with other settings"  # never replaced
    assert json.loads(damaged.read_text())["data"]["mat_id"]  # the damaged one written whole again
    # The materials packed survive a gzip round trip of the pack (what the command describes).
    assert len(json.loads(gzip.decompress((tmp_path / "packed" / "materials.json.gz").read_bytes()))) == 3
    # A folder holding the IPA rung alone of a material the pack has with both (an IPA-only run): the pack's pair is
    # restored, never its RPA entry beside another calculation's IPA one; the folder's entry is kept aside
    lone = tmp_path / "lone"
    (mat_id,) = [m["mat_id"] for m in ladder.load(tmp_path / "packed")[0] if m["has_rpa"]][:1]
    (lone / "ipa").mkdir(parents=True)
    cheap = json.loads((target / "ipa" / f"{mat_id}.json").read_text())
    cheap["data"]["note"] = "an IPA-only run's"
    (lone / "ipa" / f"{mat_id}.json").write_text(json.dumps(cheap))
    ladder.restore(tmp_path / "packed", lone, ids=[mat_id])
    assert "note" not in json.loads((lone / "ipa" / f"{mat_id}.json").read_text())["data"]
    assert (lone / "rpa" / f"{mat_id}.json").is_file()
    assert json.loads((lone / "ipa" / f"{mat_id}.json.ipa-only").read_text())["data"]["note"] == "an IPA-only run's"


def test_the_command_says_what_it_did(folder, tmp_path, capsys):
    ladder.main(["pack", str(folder), str(tmp_path / "packed")])
    assert f"packed 3 materials (2 with the RPA rung) into {tmp_path / 'packed'}" in capsys.readouterr().out
    ladder.main(["restore", str(tmp_path / "packed"), str(folder)])
    assert f"restored 3 materials into {folder}: 0 entries written, 5 already there kept as they are" in \
        capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        ladder.main(["pack", str(folder), str(tmp_path / "packed" / "materials.json.gz")])
    assert stop.value.code != 0
    assert "is a file: the destination of a pack is a folder" in capsys.readouterr().err


def test_a_compact_pack_keeps_the_ipa_only_trace_within_1e_3_and_the_rest_exactly(folder, tmp_path):
    """``pack --compact`` (issue #37 item 5): a material with the IPA rung alone keeps only its Im ε trace (the mean of
    the diagonal, what every reader learns from), in float16 within 1e-3 of its maximum; the materials with both
    rungs are packed as before, bit for bit; a compact pack unpacks, restores and packs again."""
    from optimate_pl.data.readers import ipa_trace

    full = ladder.pack(folder, tmp_path / "full")
    info = ladder.pack(folder, tmp_path / "compact", compact=True)
    assert (info["materials"], info["rpa"], info["compact"]) == (3, 2, 1) and "compact" not in full
    f_materials, f_rows = ladder.load(tmp_path / "full")
    c_materials, c_rows = ladder.load(tmp_path / "compact")
    assert ladder.describe(tmp_path / "compact")["compact"] == 1
    for fm, cm in zip(f_materials, c_materials):
        kinds = ("ipa", "rpa") if fm["has_rpa"] else ("ipa",)
        for kind in kinds:
            a, b = ladder._entry(fm, f_rows, kind), ladder._entry(cm, c_rows, kind)
            if fm["has_rpa"]:
                assert a == b  # untouched
                continue
            assert cm["compact"] == "float16" and "ipa_epsR_0" not in b["data"] and "ipa_epsI_1" not in b["data"]
            # The reference: the trace (xx + yy + zz) / 3 of the full entry's components, as REFERENCE defines it.
            comps = [np.asarray(a["data"].get(f"ipa_epsI_{i}") or a["data"]["ipa_epsI_0"]) for i in range(3)]
            ref = sum(comps) / 3
            got = ipa_trace(b["data"])
            assert np.abs(got - ref).max() <= 1e-3 * np.abs(ref).max()
            assert np.abs(got - ref).max() > 0  # float16: not the float32 values (else nothing was compacted)
    with np.load(tmp_path / "compact" / "spectra.npz") as z:
        assert z["rows16"].dtype == np.float16 and len(z["rows16"]) == 1
    # The ladder unpacks to the authors' databases, and a restored compact material packs again (without Re ε).
    paths = ladder.unpack(tmp_path / "cache", tmp_path / "compact")
    with zipfile.ZipFile(paths["ipa"]) as zf:
        assert len(zf.namelist()) == 3
    ladder.restore(tmp_path / "compact", tmp_path / "again")
    assert ladder.pack(tmp_path / "again", tmp_path / "repacked")["materials"] == 3
    m = next(m for m in ladder.load(tmp_path / "repacked")[0] if not m["has_rpa"])
    assert "ipa_epsR" not in m["spectra"]


def test_a_pack_never_swaps_a_calculation_unasked_and_its_two_files_belong_together(folder, tmp_path):
    """A folder holding an older calculation of a packed material (the 24 RPA rungs v5 recomputed with the
    local-field floor were still pre-floor in the progress folders) is refused by name; ``--replace`` takes the
    folder's, ``restore --replace`` the pack's. A pack cut short between its two files is an error on reading."""
    import shutil

    ladder.pack(folder, tmp_path / "packed")
    older = tmp_path / "older"
    shutil.copytree(folder, older)
    path = next((older / "rpa").glob("*.json"))
    entry = json.loads(path.read_text())
    entry["parameters"]["rpa_n_G"] = 3  # computed before the floor
    path.write_text(json.dumps(entry))
    before = {p.name: p.read_bytes() for p in (tmp_path / "packed").iterdir()}
    with pytest.raises(ValueError, match=rf"other calculations of 1 materials .*\(e.g. {path.stem}: rpa_n_G differ\)"
                                         r".*restore --replace"):
        ladder.pack(older, tmp_path / "packed")
    assert {p.name: p.read_bytes() for p in (tmp_path / "packed").iterdir()} == before  # untouched
    # Losing the RPA rung is refused too; gaining it is growth.
    ipa_only = tmp_path / "ipa_only"
    shutil.copytree(folder, ipa_only)
    path_rpa = next((ipa_only / "rpa").glob("*.json"))
    path_rpa.unlink()
    with pytest.raises(ValueError, match=f"{path_rpa.stem}: the RPA rung would be lost"):
        ladder.pack(ipa_only, tmp_path / "packed")
    ladder.pack(ipa_only, tmp_path / "grows")
    assert ladder.pack(folder, tmp_path / "grows")["rpa"] == 2
    # Keep the pack's calculation: restore --replace writes it over the folder's, and the pack goes through.
    ladder.main(["restore", "--replace", str(tmp_path / "packed"), str(older)])
    assert json.loads(path.read_text())["parameters"]["rpa_n_G"] != 3
    assert ladder.pack(older, tmp_path / "packed")["materials"] == 3
    # A material IPA-only in the pack that the folder has since computed with both rungs keeps its own pair.
    grown = tmp_path / "grown"
    shutil.copytree(folder, grown)
    ladder.pack(ipa_only, tmp_path / "ipa_pack")
    mine = (grown / "ipa" / f"{path_rpa.stem}.json").read_bytes()
    ladder.restore(tmp_path / "ipa_pack", grown, replace=True)
    assert (grown / "ipa" / f"{path_rpa.stem}.json").read_bytes() == mine
    # Or take the folder's on purpose.
    path.write_text(json.dumps(entry))
    assert ladder.pack(older, tmp_path / "packed", replace=True)["materials"] == 3
    assert [m["rpa_parameters"]["rpa_n_G"] for m in ladder.read_materials(tmp_path / "packed")
            if m["mat_id"] == path.stem] == [3]
    # The spectra of one pack beside the listing of another: refused on reading, naming the pack.
    ladder.pack(folder, tmp_path / "other")
    shutil.copy(tmp_path / "other" / "spectra.npz", tmp_path / "packed" / "spectra.npz")
    with pytest.raises(ValueError, match="spectra.npz was not packed with this materials.json.gz"):
        ladder.load(tmp_path / "packed")


def test_a_material_restored_from_a_compact_pack_packs_compact_again(folder, tmp_path):
    """Its Im ε trace alone came back: packed again without --compact it stays a compact trace (it packed as an
    isotropic material without Re ε)."""
    ladder.pack(folder, tmp_path / "compact", compact=True)
    ladder.restore(tmp_path / "compact", tmp_path / "again")
    info = ladder.pack(tmp_path / "again", tmp_path / "repacked")
    assert info["compact"] == 1
    m = next(m for m in ladder.read_materials(tmp_path / "repacked") if not m["has_rpa"])
    assert m["compact"] == "float16" and set(m["spectra"]) == {"ipa_epsI"}


def test_a_materials_own_failures_travel_with_the_pack_and_are_not_computed_again(folder, tmp_path, capsys):
    """A metal found after a ground state fails on every run: the pack carries it (failures.csv), a restored folder
    holds it as failed, and a run continued there skips it. Failures worth a retry, or decided by a run's settings,
    are not carried; nor one of a material the pack holds."""
    import shutil

    from optimate_pl.dft.compute import Workdir

    run = tmp_path / "run"
    shutil.copytree(folder, run)
    header = "id,source,reason,message,seconds\n"
    (run / "errors.csv").write_text(header + "agm-metal,in.json#3,not_insulator,PBE gap 0.1 eV < 0.5 eV,9.5\n"
                                    "agm-slow,in.json#4,time_limit,CPU time limit 3600 s,3600.0\n"
                                    "agm-big,in.json#5,too_large,7 sites > max_sites 6,0.0\n"
                                    "agm-ipa-only,in.json#6,not_insulator,an older run's failure,3.0\n"
                                    "agm-near,in.json#9,not_insulator,PBE gap 0.478 eV < 0.5 eV on the ground-state "
                                    "grid (metal or small gap),6.6\n")  # may pass on a denser grid: not carried
    (run / "errors-2-of-4.csv").write_text(header + "agm-odd,in.json#7,not_insulator,odd number of valence "
                                           "electrons (9),2.1\n")
    info = ladder.pack(run, tmp_path / "packed")
    assert info["failed"] == 2 and ladder.describe(tmp_path / "packed")["failed"] == 2
    target = tmp_path / "target"
    assert ladder.restore(tmp_path / "packed", target)["failed"] == 2
    work = Workdir(target, "ipa")
    assert work.done("agm-metal", retry_failed=True) and work.done("agm-odd", retry_failed=True)
    assert "odd number of valence electrons" in work.known["agm-odd"]["message"]
    assert not work.done("agm-slow", retry_failed=True) and not work.done("agm-big", retry_failed=False)
    # Packed again from the restored folder, and with a new failure of this run: the pack keeps both.
    (target / "errors.csv").write_text(header + "agm-new-metal,in.json#8,not_insulator,PBE gap 0.2 eV,5.0\n")
    ladder.main(["pack", str(target), str(tmp_path / "packed")])
    assert "; 3 failures of their own kept in failures.csv" in capsys.readouterr().out
    assert ladder.restore(tmp_path / "packed", tmp_path / "other")["failed"] == 3
    # A table that is not the compute command's stops the pack before it writes anything.
    before = (tmp_path / "packed" / "materials.json.gz").read_bytes()
    (run / "errors.csv").write_text("id,why\nagm-metal,a metal\n")
    with pytest.raises(ValueError, match=r"errors\.csv is not an error table of the compute command.*'reason'"):
        ladder.pack(run, tmp_path / "packed", replace=True)
    assert (tmp_path / "packed" / "materials.json.gz").read_bytes() == before
    # A pack left with no failure to carry (here: a packed table of an earlier version holding only a gap near the
    # bound) keeps no failures.csv naming them, and restore never writes such a row back
    third = tmp_path / "third"
    third.mkdir()
    near = header + "agm-near,in.json#9,not_insulator,PBE gap 0.470 eV < 0.5 eV,6.3\n"
    (third / "failures.csv").write_text(near)
    ladder.pack(folder, third)
    assert not (third / "failures.csv").exists() and ladder.describe(third)["failed"] == 0
    (third / "failures.csv").write_text(near)
    assert ladder.restore(third, tmp_path / "fourth").get("failed") is None
    assert not (tmp_path / "fourth" / "errors-packed.csv").exists()
