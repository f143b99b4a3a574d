"""Screening: streamed inputs of every kind, shards that resume, bad records that never stop a run."""
import bz2
import gzip
import json
import zipfile

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

import optimate_pl
from optimate_pl.data import synthetic
from optimate_pl.data.inputs import InputError, iter_inputs
from optimate_pl.inference.screening import load_predictions, run_prediction

SMALL = dict(node_widths=[16], gat_layers=[[16, 2]], out_widths=[64])
QUICK = dict(workers=0, plot=0)


@pytest.fixture(scope="module")
def records():
    return synthetic.generate(0, ipa_sizes=(200, 40, 40), rpa_sizes=(100, 20, 20)).ipa[:10]


def entry(rec):
    return synthetic.to_entry_dict(rec, "ipa")


def test_json_inputs_in_every_layout_stream_with_ids_and_sources(tmp_path, weights, records):
    folder = tmp_path / "in"
    folder.mkdir()
    with open(folder / "a_list.json", "w") as fh:  # a list of ComputedStructureEntry dicts
        json.dump([entry(r) for r in records[:3]], fh)
    with gzip.open(folder / "b_entries.json.gz", "wt") as fh:  # {"entries": [...]}, as Alexandria's files
        json.dump({"entries": [entry(r) for r in records[3:6]]}, fh)
    with bz2.open(folder / "c_one.json.bz2", "wt") as fh:  # one entry
        json.dump(entry(records[6]), fh)
    with open(folder / "d_plain.json", "w") as fh:  # plain Structure dicts (no ids of their own)
        json.dump([records[7].structure.as_dict()], fh)
    with zipfile.ZipFile(folder / "e_db.zip", "w") as zf:  # the authors' database layout
        for r in records[8:]:
            zf.writestr(f"database/{r.mat_id}.json", json.dumps(entry(r)))
    items = list(iter_inputs(folder))
    ids = [r.mat_id for r in records]
    assert [i.id for i in items] == ids[:7] + ["d_plain.json#0"] + ids[8:]
    assert [i.source for i in items[:4]] == ["a_list.json#0", "a_list.json#1", "a_list.json#2", "b_entries.json.gz#0"]
    assert items[6].source == "c_one.json.bz2" and items[8].source == f"e_db.zip:database/{ids[8]}.json"
    res = run_prediction(weights, folder, tmp_path / "out", chunk_size=4, **QUICK)
    assert res["n_predicted"] == 10 and res["n_skipped"] == 0
    materials, _, eps = load_predictions(tmp_path / "out")
    expected = optimate_pl.load_model(weights).predict_structures([r.structure for r in records])
    np.testing.assert_allclose(eps, expected, rtol=1e-5, atol=1e-6)
    assert materials.source.is_unique and len(list((tmp_path / "out" / "spectra").glob("*.parquet"))) == 3


def test_bad_records_are_skipped_with_their_reason_and_counted(tmp_path, weights, records):
    bad = [
        {"structure": Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]]).as_dict(), "data": {"mat_id": "iron"}},
        {"structure": Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]]).as_dict(),
         "data": {"mat_id": "overlap"}},  # 0.2 Å apart
        {"structure": Structure(Lattice.cubic(9.0), ["Ar"], [[0, 0, 0]]).as_dict(), "data": {"mat_id": "gas"}},
        {"structure": {"lattice": "oops"}, "data": {"mat_id": "garbage"}},
        {"no_structure": 1},
    ]
    path = tmp_path / "mixed.json"
    path.write_text(json.dumps([entry(records[0]), *bad, entry(records[1])]))
    res = run_prediction(weights, path, tmp_path / "out", chunk_size=3, **QUICK)
    assert res["n_inputs"] == 7 and res["n_predicted"] == 2
    assert res["skipped_by_reason"] == {"unsupported_element": 1, "atoms_too_close": 1, "no_neighbours": 1,
                                        "unreadable": 2}
    errors = pd.read_csv(tmp_path / "out" / "errors.csv").set_index("id")
    assert errors.loc["overlap", "reason"] == "atoms_too_close" and "0.200 Å apart" in errors.loc["overlap", "detail"]
    assert errors.loc["mixed.json#5", "source"] == "mixed.json#5"
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["skipped_by_reason"] == res["skipped_by_reason"]


def test_a_killed_run_resumes_after_its_finished_chunks(tmp_path, weights, records, monkeypatch):
    folder = tmp_path / "in"
    folder.mkdir()
    for r in records[:7]:
        r.structure.to(filename=str(folder / f"{r.mat_id}.cif"))
    reference = run_prediction(weights, folder, tmp_path / "ref", chunk_size=2, **QUICK)
    from optimate_pl.inference.stream import ShardWriter

    real_flush, calls = ShardWriter._flush, []

    def dies_at_the_third_chunk(self, k, *args):
        calls.append(k)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed while writing chunk 2
        return real_flush(self, k, *args)

    monkeypatch.setattr(ShardWriter, "_flush", dies_at_the_third_chunk)
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run_prediction(weights, folder, tmp_path / "out", chunk_size=2, **QUICK)
    done = sorted(p.name for p in (tmp_path / "out" / "shards").glob("done-*.json"))
    assert done == ["done-000000.json", "done-000001.json"]
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "out" / "spectra").glob("*.parquet")}
    monkeypatch.setattr(ShardWriter, "_flush", lambda self, k, *a: (calls.append(k), real_flush(self, k, *a)))
    calls.clear()
    resumed = run_prediction(weights, folder, tmp_path / "out", chunk_size=2, **QUICK)
    assert calls == [2, 3]  # the finished chunks were skipped
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert resumed["n_predicted"] == reference["n_predicted"] == 7
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "materials.csv"),
                                  pd.read_csv(tmp_path / "ref" / "materials.csv"))
    # Another prediction into the same folder is refused instead of mixing shards.
    with pytest.raises(InputError, match="holds the shards of another prediction .*chunk_size"):
        run_prediction(weights, folder, tmp_path / "out", chunk_size=3, **QUICK)
    (folder / "predict.log").write_text("a log beside the structures")  # not input: the same prediction resumes
    assert run_prediction(weights, folder, tmp_path / "out", chunk_size=2, **QUICK)["n_predicted"] == 7
    # The input grown since (or a truncated file fetched again): not the same prediction, whose finished chunks
    # would be skipped by number with other materials in them
    records[7].structure.to(filename=str(folder / f"{records[7].mat_id}.cif"))
    with pytest.raises(InputError, match=r"another prediction \(input_files differ \(the input changed since"):
        run_prediction(weights, folder, tmp_path / "out", chunk_size=2, **QUICK)
    assert run_prediction(weights, folder, tmp_path / "out", chunk_size=2, resume=False, **QUICK)["n_predicted"] == 8


def test_worker_processes_give_the_same_tables(tmp_path, weights, records):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([entry(r) for r in records]))

    def same_tables(name: str, workers: int, **kw) -> None:
        """Predicting with ``workers`` processes gives the in-process run's tables exactly."""
        results = [run_prediction(weights, path, tmp_path / f"{name}-{w}", workers=w, plot=0, **kw) for w in (0, workers)]
        assert [r["n_predicted"] for r in results] == [10, 10]
        (m0, _, e0), (m1, _, e1) = (load_predictions(tmp_path / f"{name}-{w}") for w in (0, workers))
        pd.testing.assert_frame_equal(m0, m1)
        np.testing.assert_array_equal(e0, e1)

    same_tables("small-chunks", 1, chunk_size=4, batch_size=3)
    # Two workers on a chunk of 10, batches of 9: tasks of 8 and 2 structures, re-assembled into 9 + 1.
    same_tables("split-batches", 2, chunk_size=10, batch_size=9)


def test_featurisation_tasks_are_sized_to_give_every_worker_work():
    from optimate_pl.inference.stream import StructureStream

    stream = StructureStream("in.json", "out", cutoff=5.0, min_distance=0.5, batch_size=256)
    # The H200 check's case: chunks of 250 on 15 workers were one task of 250; now 32 tasks of 8.
    assert stream.part_size(250, 15) == 8
    assert -(-250 // stream.part_size(250, 15)) >= 15
    assert stream.part_size(10_000, 15) == 167   # 60 tasks, four a worker
    assert stream.part_size(100_000, 15) == 256  # never more than a batch
    assert stream.part_size(250, 0) == 256       # in-process: one batch at a time


def test_ranking_writes_the_top_table_and_figure(tmp_path, weights, records):
    path = tmp_path / "in.json"
    path.write_text(json.dumps([entry(r) for r in records]))
    run_prediction(weights, path, tmp_path / "out", rank_by="peak_height", top=3, **QUICK)
    top = pd.read_csv(tmp_path / "out" / "top_3_peak_height.csv")
    materials = pd.read_csv(tmp_path / "out" / "materials.csv")
    assert list(top.id) == list(materials.sort_values("peak_height", ascending=False).id[:3])
    assert (tmp_path / "out" / "top_3_peak_height.png").stat().st_size > 0
    # A misspelt column is said before anything is predicted (a screen can take hours), not after
    with pytest.raises(ValueError, match="rank_by=colour: not a column of this model's materials table; rank by one "
                                         "of .*alpha_visible_mean"):
        run_prediction(weights, path, tmp_path / "out2", rank_by="colour", **QUICK)
    assert not (tmp_path / "out2").exists()
    # The lowest first; spectra= without Im ε: the tables, no Im ε csv or figures (they failed at the very end)
    run_prediction(weights, path, tmp_path / "out3", rank_by="onset_eV", rank_ascending=True, top=2,
                   spectra=["alpha"], **QUICK)
    out3 = tmp_path / "out3"
    top = pd.read_csv(out3 / f"top_2_onset_eV.csv")
    assert list(top.id) == list(materials.sort_values("onset_eV").id[:2])
    assert (out3 / "materials.csv").is_file() and not (out3 / "spectra.csv").exists()
    assert not list(out3.glob("*.png")) and json.loads((out3 / "summary.json").read_text())["n_predicted"] == len(records)


def test_file_names_cannot_break_or_merge_the_tables(tmp_path, weights, records):
    """Commas, quotes, spaces, bytes that are not UTF-8, the same stem twice: one row each, loadable."""
    import os

    folder = tmp_path / "odd"
    names = ["with, comma.cif", 'quote"d \'name.cif', "two  spaces.cif", "sub1/same.cif", "sub2/same.cif",
             "same.vasp"]
    for name, r in zip(names, records):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        r.structure.to(filename=str(folder / name), fmt="poscar" if name.endswith(".vasp") else "cif")
    latin1 = os.fsdecode(b"caf\xe9.cif")  # a file name that is not UTF-8
    records[6].structure.to(filename=os.path.join(str(folder), latin1))
    res = run_prediction(weights, folder, tmp_path / "out", recursive=True, **QUICK)
    assert res["n_predicted"] == 7
    materials = pd.read_csv(tmp_path / "out" / "materials.csv")
    assert materials.id.is_unique and len(materials) == 7
    assert set(materials.id) == {*names, "caf\\xe9.cif"}
    spectra = pd.read_csv(tmp_path / "out" / "spectra.csv")
    assert list(spectra.id) == list(materials.id)
    by_name = dict(zip(names, records))
    expected = optimate_pl.load_model(weights).predict_structures([by_name["with, comma.cif"].structure])[0]
    got = spectra.set_index("id").loc["with, comma.cif"].to_numpy(dtype=float)
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4)


def test_empty_inputs_are_errors_and_vasp_trees_need_recursive(tmp_path, weights, records):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no structure found in .*empty"):
        run_prediction(weights, empty, tmp_path / "out", **QUICK)
    assert not (tmp_path / "out").exists()  # nothing written, nothing malformed
    tree = tmp_path / "vasp"
    for i, r in enumerate(records[:3]):
        (tree / f"run{i}").mkdir(parents=True)
        r.structure.to(filename=str(tree / f"run{i}" / "POSCAR"), fmt="poscar")
    with pytest.raises(InputError, match=r"subfolders were not searched \(add recursive=true to search 3"):
        run_prediction(weights, tree, tmp_path / "out", **QUICK)
    res = run_prediction(weights, tree, tmp_path / "out", recursive=True, **QUICK)
    assert res["n_predicted"] == 3
    assert list(pd.read_csv(tmp_path / "out" / "materials.csv").id) == [f"run{i}/POSCAR" for i in range(3)]


def test_prediction_uses_the_models_cutoff_and_says_synthetic(tmp_path, records):
    """A checkpoint records its data source and cutoff; prediction follows and reports them."""
    import lightning.pytorch as pl

    from optimate_pl.data.featurize import graph_arrays
    from optimate_pl.models import SpectraModule

    module = SpectraModule(net=SMALL, data={"source": "synthetic", "synthetic": True, "cutoff": 4.0})
    trainer = pl.Trainer(max_epochs=0, logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(module)
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    path = tmp_path / "in.json"
    path.write_text(json.dumps([entry(r) for r in records[:3]]))
    res = run_prediction(ckpt, path, tmp_path / "out", plot=2, workers=0)
    assert res["model"]["cutoff"] == 4.0 and res["model"]["synthetic"]
    assert json.loads((tmp_path / "out" / "run.json").read_text())["cutoff"] == 4.0
    assert set(pd.read_csv(tmp_path / "out" / "materials.csv").model_trained_on) == {"SYNTHETIC"}
    model = optimate_pl.load_model(ckpt)
    assert model.cutoff == 4.0
    # The graphs were built at 4 Å: fewer edges than at 5 Å.
    s = records[0].structure
    assert graph_arrays(s, 4.0)[2].size < graph_arrays(s, 5.0)[2].size
    _, _, eps = load_predictions(tmp_path / "out")
    np.testing.assert_allclose(eps, model.predict_structures([r.structure for r in records[:3]]), rtol=1e-5, atol=1e-6)
