"""Hostile inputs, interrupted runs and divergence: each must be a clear error or a clean skip."""
import copy
import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from optimate_pl.data import synthetic
from optimate_pl.data.build import figshare_store
from optimate_pl.data.store import GraphStore

from .conftest import TINY_SIZES


def _corrupt(d: dict, rng: random.Random):
    """One way to break a valid entry dict; returns (text, label)."""
    d = copy.deepcopy(d)
    data = d["data"]
    spec = "ipa_epsI_0"
    choice = rng.choice(["truncate", "no_structure", "no_data", "no_spectrum", "nan", "inf", "short", "negative",
                         "zero", "element", "empty", "isolated", "not_json", "gap_string"])
    if choice == "truncate":
        text = json.dumps(d)
        return text[: rng.randint(1, len(text) - 2)], choice
    if choice == "not_json":
        return "\x00\x01 binary garbage", choice
    if choice == "no_structure":
        del d["structure"]
    elif choice == "no_data":
        del d["data"]
    elif choice == "no_spectrum":
        del data[spec]
    elif choice in ("nan", "inf"):
        data[spec][rng.randrange(2001)] = float(choice)
    elif choice == "short":
        data[spec] = data[spec][: rng.randint(0, 2000)]
    elif choice == "negative":
        data[spec] = [-abs(v) - 1.0 for v in data[spec]]
    elif choice == "zero":
        data[spec] = [0.0] * 2001
    elif choice == "element":
        d["structure"]["sites"][0]["species"][0]["element"] = rng.choice(["Fe", "Cs", "U", "Au"])
    elif choice == "empty":
        d["structure"]["sites"] = []
    elif choice == "isolated":
        d["structure"]["lattice"]["matrix"] = (np.eye(3) * 40).tolist()
        d["structure"]["sites"] = d["structure"]["sites"][:1]
        d["structure"]["sites"][0]["abc"] = [0, 0, 0]
    elif choice == "gap_string":
        data["ipa_indirect_gap"] = "n/a"
    return json.dumps(d), choice


#: Odd but parseable records: the authors keep them, so do we (negative or all-zero spectra). The
#: "isolated" corruption also drops sites, so the entry's composition no longer matches: a bad record.
KEPT_AS_THE_AUTHORS_DO = ("negative", "zero")


@pytest.mark.slow
def test_fuzzed_database_loads_exactly_the_good_records(tmp_path):
    db = synthetic.generate(0, ipa_sizes=tuple(TINY_SIZES["ipa"]), rpa_sizes=tuple(TINY_SIZES["rpa"]))
    rng = random.Random(0)
    root = tmp_path / "database_300"
    root.mkdir()
    good, labels = set(), []
    for i, rec in enumerate(db.ipa[:260]):
        d = synthetic.to_entry_dict(rec, "ipa")
        if i % 4 == 0:  # every fourth stays valid
            (root / f"{rec.mat_id}.json").write_text(json.dumps(d))
            good.add(rec.mat_id)
        else:
            text, label = _corrupt(d, rng)
            (root / f"{rec.mat_id}.json").write_text(text)
            if label in KEPT_AS_THE_AUTHORS_DO:
                good.add(rec.mat_id)
            else:
                labels.append(label)
    # A duplicate of a good record under another file name is reported, not loaded twice.
    first = sorted(good)[0]
    (root / "zz_duplicate.json").write_text((root / f"{first}.json").read_text())
    path = figshare_store("ipa", root, tmp_path / "cache", workers=2)
    store, meta = GraphStore.load(path)
    assert set(store.mat_id) == good
    assert len(meta["skipped"]) == len(labels) + 1
    assert len(set(labels)) >= 9  # the fuzzer exercised (almost) every corruption that is skipped
    assert any("duplicate mat_id" in s for s in meta["skipped"])
    assert all(": " in s for s in meta["skipped"])  # every skip names its file and the reason


KILL_DURING_SAVE = r"""
import sys, time, torch
from optimate_pl.data.build import figshare_store
real_save = torch.save
def slow_save(obj, fh, *a, **k):
    fh.write(b"partial bytes")
    fh.flush()
    time.sleep(60)  # killed here
torch.save = slow_save
figshare_store("ipa", sys.argv[1], sys.argv[2], workers=1)
"""


def test_sigkill_during_caching_leaves_nothing_trusted(tmp_path):
    db = synthetic.generate(0, ipa_sizes=tuple(TINY_SIZES["ipa"]), rpa_sizes=tuple(TINY_SIZES["rpa"]))
    root, cache = tmp_path / "db", tmp_path / "cache"
    root.mkdir()
    for rec in db.ipa[:8]:
        (root / f"{rec.mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(rec, "ipa")))
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_SAVE, str(root), str(cache)])
    deadline = time.time() + 120
    while time.time() < deadline and not list(cache.glob(".*.tmp")):
        time.sleep(0.2)
    assert list(cache.glob(".*.tmp")), "the child never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not list(cache.glob("*.pt"))  # no final cache file exists
    path = figshare_store("ipa", root, cache, workers=1)  # the next run rebuilds
    assert len(GraphStore.load(path)[0]) == 8


def test_diverging_learning_rate_stops_with_a_clear_message(tmp_path, cache_dir, cfg_train):
    from optimate_pl.models.module import NonFiniteLossError
    from optimate_pl.training.train import train

    cfg = cfg_train(tmp_path, "strategy=dl", "data.subset=40", "optimizer._target_=torch.optim.SGD",
                  "optimizer.lr=1e30", "~optimizer.weight_decay", "trainer.max_epochs=3")
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        train(cfg)
    for ckpt in (tmp_path / "run").rglob("*.ckpt"):
        sd = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        assert all(torch.isfinite(v).all() for v in sd.values() if v.is_floating_point())


def test_multirun_with_plain_ddp_is_refused(tmp_path, cli):
    r = cli("-m", "strategy=dl", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
            f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 2
    assert "cannot run inside a Hydra multirun" in r.stderr and "Traceback" not in r.stderr
    r = cli("strategy=bogus", cwd=tmp_path)
    assert r.returncode != 0 and "Available options" in r.stderr
