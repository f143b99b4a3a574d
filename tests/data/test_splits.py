import random

import numpy as np
import pytest

from optimate_pl.data.splits import apply_split, formula_split, read_split_files, training_subset


def authors_split(formulas):
    """The authors' calls on the global NumPy state, verbatim."""
    unique = np.unique(formulas)
    np.random.seed(0)
    np.random.shuffle(unique)
    n = len(unique)
    return unique[:int(0.8 * n)], unique[int(0.8 * n):int(0.9 * n)], unique[int(0.9 * n):]


def test_formula_split_reproduces_the_authors_calls():
    formulas = [f"A{i % 37}B{i % 5}" for i in range(300)]
    ids = [f"m{i}" for i in range(300)]
    ours = formula_split(ids, formulas, seed=0)
    train, val, test = authors_split(np.array(formulas))
    for m, f in zip(ids, formulas):
        expected = "train" if f in train else "validation" if f in val else "test"
        assert ours[m] == expected
    # Polymorphs (same formula) always share a split.
    by_formula = {}
    for m, f in zip(ids, formulas):
        by_formula.setdefault(f, set()).add(ours[m])
    assert all(len(s) == 1 for s in by_formula.values())


def test_training_subset_is_random_sample_with_seed():
    train = [f"m{i}" for i in range(500)]
    random.seed(0)
    expected = random.sample(train, 100)
    assert training_subset(train, 100, seed=0) == expected
    with pytest.raises(ValueError, match="larger than the training set"):
        training_subset(train, 501)


def test_split_files_and_conflicts(tmp_path):
    for split, ids in {"train": ["a", "b"], "validation": ["c"], "test": ["d"]}.items():
        (tmp_path / f"ipa_{split}_ids.txt").write_text("\n".join(ids) + "\n")
    assignment = read_split_files(tmp_path)
    assert assignment == {"a": "train", "b": "train", "c": "validation", "d": "test"}
    rows, unknown = apply_split(["d", "a", "zz"], assignment)
    assert rows == {"train": [1], "validation": [], "test": [0]} and unknown == ["zz"]
    (tmp_path / "ipa_test_ids.txt").write_text("d\na\n")
    with pytest.raises(ValueError, match="mat_id a is listed in both the train and the test"):
        read_split_files(tmp_path)


def _write_database(root, records, kind, rename=None):
    import json

    from optimate_pl.data import synthetic

    root.mkdir()
    for r in records:
        d = synthetic.to_entry_dict(r, kind)
        if rename:
            d["data"]["mat_id"] = rename[r.mat_id]
        (root / f"{d['data']['mat_id']}.json").write_text(json.dumps(d))


def test_published_split_ships_with_the_package_and_is_the_default_for_real_data(tmp_path, caplog):
    import logging
    from collections import Counter

    from optimate_pl.data import IPADataModule, synthetic
    from optimate_pl.data.splits import published_split

    split = published_split()
    # The authors' ID files hold one ID more per split than the paper's 7742/944/1059 (which is what
    # `wc -l` reports: their last line has no newline).
    assert Counter(split.values()) == {"train": 7743, "validation": 945, "test": 1060}
    # A small real-format database whose materials carry published ids: 3 train, 1 validation, 1 test.
    ids = {s: sorted(m for m, v in split.items() if v == s) for s in ("train", "validation", "test")}
    chosen = ids["train"][:3] + ids["validation"][:1] + ids["test"][:1]
    db = synthetic.generate(0, ipa_sizes=(200, 40, 40), rpa_sizes=(100, 20, 20))
    records = db.ipa[:5]
    _write_database(tmp_path / "db", records, "ipa", rename={r.mat_id: m for r, m in zip(records, chosen)})
    with caplog.at_level(logging.INFO):
        dm = IPADataModule(source="figshare", root=str(tmp_path / "db"), cache_dir=str(tmp_path / "c"))
        dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (3, 1, 1)
    assert sorted(dm.train_set.mat_ids) == ids["train"][:3]
    assert "IPA splits from the authors' published split: train 3, validation 1, test 1" in caplog.text
    assert "split sizes 3/1/1 differ from the paper's 7742/944/1059: 9743 of the 9748 IDs" in caplog.text


def test_subset_is_the_authors_call_on_the_training_list_in_file_name_order(tmp_path):
    """The authors read sorted(os.listdir(db)), keep that order, then random.seed(0); random.sample(train, n)."""
    import os

    from optimate_pl.data import RPADataModule, synthetic

    db = synthetic.generate(0, ipa_sizes=(200, 40, 40), rpa_sizes=(100, 20, 20))
    records = list(db.rpa)
    random.Random(5).shuffle(records)  # files created in no particular order
    _write_database(tmp_path / "rpa", records, "rpa")
    assignment = formula_split([r.mat_id for r in db.ipa], [r.formula for r in db.ipa])
    splits = tmp_path / "splits"
    splits.mkdir()
    for s in ("train", "validation", "test"):
        (splits / f"ipa_{s}_ids.txt").write_text("\n".join(m for m, v in assignment.items() if v == s) + "\n")
    dm = RPADataModule(source="figshare", root=str(tmp_path / "rpa"), split=str(splits), subset=30,
                       cache_dir=str(tmp_path / "c"))
    dm.setup()
    train_ids = set((splits / "ipa_train_ids.txt").read_text().split())
    train = [f[:-len(".json")] for f in sorted(os.listdir(tmp_path / "rpa")) if f[:-len(".json")] in train_ids]
    random.seed(0)
    assert dm.train_set.mat_ids == random.sample(train, 30)
