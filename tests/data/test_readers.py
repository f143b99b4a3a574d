"""Real-format fixtures (ComputedStructureEntry dicts) written by the test, read back by the readers."""
import json
import zipfile

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.entries.computed_entries import ComputedStructureEntry

from optimate_pl.data.readers import BadRecordError, read_ipa_database, read_rpa_database


GRID = np.linspace(0, 20, 2001)


def monty_array(arr):
    return {"@module": "numpy", "@class": "array", "dtype": "float64", "data": list(map(float, arr))}


@pytest.fixture
def entry(rocksalt_nacl):
    """An IPA-database entry dict of ``structure`` (rocksalt NaCl) with ``data``."""
    def make(mat_id, data, structure=None):
        base = {"mat_id": mat_id, "formula": "NaCl", "ipa_direct_gap": 5.0, "ipa_indirect_gap": 4.8}
        base.update(data)
        return ComputedStructureEntry(structure or rocksalt_nacl(), 0.0, data={}).as_dict() | {"data": base}
    return make


def write(folder, name, d):
    (folder / name).write_text(d if isinstance(d, str) else json.dumps(d))


@pytest.fixture
def ipa_folder(tmp_path, entry):
    xx, yy, zz = np.exp(-((GRID - 6) ** 2)), np.exp(-((GRID - 7) ** 2)), 2 * np.exp(-((GRID - 8) ** 2))
    write(tmp_path, "a_full.json", entry("agm001", {"ipa_epsI_0": xx.tolist(), "ipa_epsI_1": yy.tolist(),
                                                    "ipa_epsI_2": zz.tolist()}))
    write(tmp_path, "b_monty_xx_only.json", entry("agm002", {"ipa_epsI_0": monty_array(xx)}))
    write(tmp_path, "c_truncated.json", json.dumps(entry("agm003", {"ipa_epsI_0": xx.tolist()}))[:500])
    write(tmp_path, "d_nan.json", entry("agm004", {"ipa_epsI_0": [float("nan")] * 2001}))
    write(tmp_path, "e_short.json", entry("agm005", {"ipa_epsI_0": xx[:100].tolist()}))
    write(tmp_path, "f_metal_gap.json", entry("agm006", {"ipa_epsI_0": xx.tolist(), "ipa_indirect_gap": 0.1}))
    write(tmp_path, "g_no_spectrum.json", entry("agm007", {}))
    iron = Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]])
    write(tmp_path, "h_iron.json", entry("agm008", {"ipa_epsI_0": xx.tolist()}, iron))
    write(tmp_path, "i_bad_calc.json", entry("agm005546161", {"ipa_epsI_0": xx.tolist()}))
    write(tmp_path, "j_duplicate.json", entry("agm001", {"ipa_epsI_0": xx.tolist()}))
    return tmp_path, xx, yy, zz


def test_ipa_reader_traces_and_reports(ipa_folder):
    folder, xx, yy, zz = ipa_folder
    report = read_ipa_database(folder, workers=1)
    got = {r.mat_id: r for r in report.records}
    assert sorted(got) == ["agm001", "agm002"]
    np.testing.assert_allclose(got["agm001"].spectrum, (xx + yy + zz) / 3, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(got["agm002"].spectrum, xx, rtol=1e-5, atol=1e-7)  # yy, zz missing -> xx
    assert got["agm001"].formula == "NaCl" and got["agm001"].nsites == 2 and got["agm001"].direct_gap == 5.0
    reasons = {s.source.split("/")[-1]: s.reason for s in report.skipped}
    assert "invalid JSON" in reasons["c_truncated.json"]
    assert "NaN" in reasons["d_nan.json"]
    assert "shape (100,)" in reasons["e_short.json"]
    assert "ipa_epsI_0" in reasons["g_no_spectrum.json"]
    assert "unsupported element Fe in material agm008" in reasons["h_iron.json"]
    assert "duplicate mat_id agm001" in reasons["j_duplicate.json"]
    filtered = {s.source.split("/")[-1]: s.reason for s in report.filtered}
    assert set(filtered) == {"f_metal_gap.json", "i_bad_calc.json"}
    assert "skipped 6 bad records" in report.summary()


def test_strict_mode_raises_with_the_file_name(ipa_folder):
    folder, *_ = ipa_folder
    with pytest.raises(BadRecordError, match="c_truncated.json"):
        read_ipa_database(folder, strict=True, workers=1)


def test_zip_archive_and_parallel_reading(ipa_folder, tmp_path_factory, entry):
    folder, xx, *_ = ipa_folder
    many = tmp_path_factory.mktemp("many")
    for i in range(80):  # enough to go through the process pool
        write(many, f"m{i:03d}.json", entry(f"agm1{i:05d}", {"ipa_epsI_0": (xx * (1 + i)).tolist()}))
    archive = many / "db.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(many.glob("*.json")):
            zf.write(p, f"database_300/{p.name}")
    report = read_ipa_database(archive, workers=2)
    assert len(report.records) == 80 and not report.skipped
    np.testing.assert_allclose(report.records[5].spectrum, xx * 6, rtol=1e-5, atol=1e-7)


def test_rpa_reader_keeps_ipa_baseline(tmp_path, entry):
    r_xx, r_zz = np.exp(-((GRID - 7) ** 2)), 3 * np.exp(-((GRID - 9) ** 2))
    i_xx = np.exp(-((GRID - 6) ** 2))
    write(tmp_path, "r1.json", entry("agm010", {"rpa_epsI": {"xx": r_xx.tolist(), "zz": monty_array(r_zz)},
                                                "ipa_epsI": {"xx": i_xx.tolist()}, "rpa_similarity": 0.99}))
    write(tmp_path, "r2.json", entry("agm011", {"rpa_epsI": [1, 2, 3], "ipa_epsI": {"xx": i_xx.tolist()},
                                                "rpa_similarity": 0.9}))
    # No rpa_similarity: the RPA run did not finish; the authors leave the file out (not an error).
    write(tmp_path, "r3.json", entry("agm012", {"ipa_epsI": {"xx": i_xx.tolist()}, "nsites": 2}))
    report = read_rpa_database(tmp_path, workers=1)
    (rec,) = report.records
    np.testing.assert_allclose(rec.spectrum, (2 * r_xx + r_zz) / 3, rtol=1e-5, atol=1e-7)  # yy missing -> xx
    np.testing.assert_allclose(rec.ipa_spectrum, i_xx, rtol=1e-5, atol=1e-7)
    assert [s.source.split("/")[-1] for s in report.skipped] == ["r2.json"] and "rpa_epsI" in report.skipped[0].reason
    (left_out,) = report.filtered
    assert left_out.source.endswith("r3.json") and "no rpa_similarity" in left_out.reason
    assert "missing calculation" in left_out.reason


def test_exactly_the_authors_materials_are_kept(tmp_path, entry):
    """Everything that parses is kept (as the authors do), whatever a stricter reader would judge."""
    from optimate_pl.data.build import featurize_records

    xx = np.exp(-((GRID - 6) ** 2))
    lonely = Structure(Lattice.cubic(12.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # 10.4 Å apart
    write(tmp_path, "a.json", entry("agm101", {"ipa_epsI_0": (xx - 0.01).tolist(), "formula": "ClNa"}))
    write(tmp_path, "b.json", entry("agm102", {"ipa_epsI_0": [0.0] * 2001}))
    write(tmp_path, "c.json", entry("agm103", {"ipa_epsI_0": xx.tolist()}, lonely))
    report = read_ipa_database(tmp_path, workers=1)
    assert [r.mat_id for r in report.records] == ["agm101", "agm102", "agm103"] and not report.skipped
    # The split groups by the database's own formula field, not one recomputed from the structure.
    assert report.records[0].formula == "ClNa"
    store, skipped = featurize_records(report.records, workers=1)
    assert not skipped and store.mat_id == ["agm101", "agm102", "agm103"]
    # The isolated sites of agm103 are nodes without edges, as in the authors' graphs.
    assert int(store.edge_ptr[3] - store.edge_ptr[2]) == 0 and int(store.nsites[2]) == 2
