import json
import time

import pytest
import torch

from optimate_pl.data import IPADataModule, RPADataModule, synthetic
from optimate_pl.data.build import figshare_store
from optimate_pl.spectra.metrics import similarity_coefficient

from ..conftest import TINY_SIZES


def test_rpa_splits_inherit_ipa_membership(tiny_ipa, tiny_rpa):
    assert (len(tiny_ipa.train_set), len(tiny_ipa.val_set), len(tiny_ipa.test_set)) == (200, 40, 40)
    assert (len(tiny_rpa.train_set), len(tiny_rpa.val_set), len(tiny_rpa.test_set)) == (100, 20, 20)
    for name in ("train_set", "val_set", "test_set"):
        assert set(getattr(tiny_rpa, name).mat_ids) <= set(getattr(tiny_ipa, name).mat_ids)
    g = tiny_rpa.train_set[0]
    assert g.x.shape[1] == 13 and g.edge_attr.shape[1] == 51 and g.y.shape == (1, 2001) and g.ipa.shape == (1, 2001)
    batch = next(iter(tiny_rpa.train_dataloader()))
    assert batch.y.shape == (16, 2001) and len(batch.mat_id) == 16


def test_subset_max_sites_and_sc_target(cache_dir, tiny_rpa):
    kw = dict(source="synthetic", cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES)
    dm = RPADataModule(subset=50, **kw)
    dm.setup()
    assert len(dm.train_set) == 50 and len(dm.val_set) == 20
    dm2 = RPADataModule(subset=50, **kw)
    dm2.setup()
    assert dm.train_set.mat_ids == dm2.train_set.mat_ids  # seeded
    small = RPADataModule(max_sites=4, **kw)
    small.setup()
    assert 0 < len(small.train_set) < 100 and all(small.train_set[i].nsites <= 4 for i in range(len(small.train_set)))
    assert len(small.test_set) == 20  # validation/test stay full
    with pytest.raises(ValueError, match="larger than the training set"):
        RPADataModule(subset=101, **kw).setup()
    sc = RPADataModule(target="sc_rpa_ipa", **kw)
    sc.setup()
    g = sc.train_set[3]
    assert g.y.shape == (1, 1)
    assert torch.allclose(g.y[0, 0], similarity_coefficient(tiny_rpa.train_set[3].y, tiny_rpa.train_set[3].ipa)[0])


def test_cache_reload_is_much_faster_than_building(tmp_path):
    sizes = {"ipa": [400, 60, 60], "rpa": [200, 40, 40]}
    t0 = time.perf_counter()
    IPADataModule(source="synthetic", cache_dir=str(tmp_path), synthetic_sizes=sizes).setup()
    build = time.perf_counter() - t0
    t0 = time.perf_counter()
    IPADataModule(source="synthetic", cache_dir=str(tmp_path), synthetic_sizes=sizes).setup()
    reload = time.perf_counter() - t0
    print(f"\nsynthetic 520 materials: build {build:.2f} s, cached reload {reload:.3f} s ({build / reload:.0f}x)")
    assert build / reload >= 10


def test_stale_figshare_cache_is_rebuilt_and_writes_are_atomic(tmp_path, monkeypatch):
    db = synthetic.generate(0, ipa_sizes=(200, 40, 40), rpa_sizes=(100, 20, 20))
    root = tmp_path / "database_300"
    root.mkdir()
    for r in db.ipa[:6]:
        (root / f"{r.mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(r, "ipa")))
    cache = tmp_path / "cache"
    first = figshare_store("ipa", root, cache, workers=1)
    assert figshare_store("ipa", root, cache, workers=1) == first  # reused
    (root / f"{db.ipa[6].mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(db.ipa[6], "ipa")))
    second = figshare_store("ipa", root, cache, workers=1)
    assert second != first  # a new file changes the fingerprint: the stale cache is not reused

    # A crash while writing leaves no file that a later run would trust.
    def crash(obj, fh, *a, **k):
        fh.write(b"partial")
        raise KeyboardInterrupt

    (root / f"{db.ipa[7].mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(db.ipa[7], "ipa")))
    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        figshare_store("ipa", root, cache, workers=1)
    monkeypatch.undo()
    # Nothing but the two good stores (and the builders' lock files): no partial store, no temp file.
    assert sorted(p.name for p in cache.iterdir() if p.suffix not in (".lock", ".sha256")) == sorted([first.name, second.name])


def test_figshare_rpa_needs_a_split_source(tmp_path):
    db = synthetic.generate(0, ipa_sizes=(200, 40, 40), rpa_sizes=(100, 20, 20))
    root = tmp_path / "rpa"
    root.mkdir()
    for r in db.rpa[:5]:
        (root / f"{r.mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(r, "rpa")))
    with pytest.raises(ValueError, match="data.ipa_root"):
        RPADataModule(source="figshare", root=str(root), split="formula", cache_dir=str(tmp_path / "c")).setup()
    # The default for real data is the published split, which knows no synthetic material.
    with pytest.raises(ValueError, match="none of the 5 materials .* published split"):
        RPADataModule(source="figshare", root=str(root), cache_dir=str(tmp_path / "c")).setup()
    with pytest.raises(ValueError, match="needs data.root"):
        RPADataModule(source="figshare")


def test_split_files_with_unknown_or_missing_materials(tmp_path, caplog):
    db = synthetic.generate(0, ipa_sizes=(200, 40, 40), rpa_sizes=(100, 20, 20))
    root = tmp_path / "db"
    root.mkdir()
    recs = db.ipa[:6]
    for r in recs:
        (root / f"{r.mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(r, "ipa")))
    splits = tmp_path / "splits"
    splits.mkdir()
    # Two train ids, one validation id, one test id that does not exist; recs[4:] are in no split.
    (splits / "ipa_train_ids.txt").write_text(f"{recs[0].mat_id}\n{recs[1].mat_id}\n")
    (splits / "ipa_validation_ids.txt").write_text(f"{recs[2].mat_id}\n")
    (splits / "ipa_test_ids.txt").write_text(f"{recs[3].mat_id}\nagm999999999\n")
    import logging
    with caplog.at_level(logging.INFO):
        dm = IPADataModule(source="figshare", root=str(root), split=str(splits), cache_dir=str(tmp_path / "c"))
        dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (2, 1, 1)
    assert "2 IPA materials are in no split" in caplog.text
    assert "split sizes 2/1/1 differ from the paper's 7742/944/1059: 1 of the 5 IDs" in caplog.text
