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
