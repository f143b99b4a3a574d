"""experiments/gpaw_ladder/plan_rungs.py: the RPA rung grows in the published split's proportions, stratified by cell
size and chemical family, interleaved so that a run stopped part way is balanced; the rest gets the IPA rung alone."""
from __future__ import annotations

import importlib.util
from collections import Counter
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "gpaw_ladder" / "plan_rungs.py"


@pytest.fixture(scope="module")
def pr():
    spec = importlib.util.spec_from_file_location("plan_rungs", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_families_by_anion_and_by_bonds(pr):
    assert [pr.family("x", f, {"az"}) for f in ("NaCl", "MgO", "ZnS", "LiH", "GaN", "Mg2Si", "CsI", "KOF")] == [
        "halide", "oxide", "chalcogenide", "hydride", "nitride", "other", "halide", "halide"]
    assert pr.family("az", "KN3", {"az"}) == "azide/nitrate"


def test_the_plan_keeps_the_split_and_the_strata_and_leaves_out_what_is_done(pr):
    formulas = ["NaCl", "MgO", "ZnS", "GaN"]
    entries, split = [], {}
    for i in range(2000):
        mat_id = f"m{i}"
        entries.append({"data": {"mat_id": mat_id, "formula": formulas[i % 4], "band_gap_ind": 0.3 if i % 97 == 0 else 2.0},
                        "structure": {"sites": [None] * (4 + i % 3)}})
        split[mat_id] = "train" if i % 10 < 8 else ("validation" if i % 10 == 8 else "test")
    both = {f"m{i}" for i in range(0, 400) if i % 10 == 9}  # 40 done, all test: the plan must make up for it
    refused = {"m1", "m2"}
    ipa_done = both | {"m3"}
    rpa, ipa = pr.plan(entries, split, both, ipa_done, refused, set(), target=300, margin=0.0)
    ids = [r["mat_id"] for r in rpa]
    assert len(ids) == len(set(ids)) and not set(ids) & (both | refused)
    assert all(r["nsites"] >= 4 and entries[int(r["mat_id"][1:])]["data"]["band_gap_ind"] >= 0.5 for r in rpa)
    # The whole rung (done + planned) in the published proportions 4610 : 603 : 639 of 300: 236 / 31 / 33.
    total = Counter(split[m] for m in both) + Counter(r["split"] for r in rpa)
    assert (total["train"], total["validation"], total["test"]) == (236, 31, 40)  # test had 40 already: none more
    # Within a split, the pool's mix of sizes and families; and the first quarter of the list already has it.
    train = [r for r in rpa if r["split"] == "train"]
    for part in (train, [r for r in rpa[: len(rpa) // 4] if r["split"] == "train"]):
        fam, sites = Counter(r["family"] for r in part), Counter(r["nsites"] for r in part)
        assert max(fam.values()) - min(fam.values()) <= max(2, len(part) // 20), fam
        assert max(sites.values()) - min(sites.values()) <= max(2, len(part) // 20), sites
    # Every other structure that passes the filters: the IPA rung alone, smallest cells first.
    assert not {r["mat_id"] for r in ipa} & (set(ids) | ipa_done | refused)
    assert [r["nsites"] for r in ipa] == sorted(r["nsites"] for r in ipa)
    small_gap = {e["data"]["mat_id"] for e in entries if e["data"]["band_gap_ind"] < 0.5}
    rest = {e["data"]["mat_id"] for e in entries} - set(ids) - {r["mat_id"] for r in ipa}
    assert rest == (both | refused | small_gap | ipa_done) - set(ids)  # nothing lost, nothing planned twice
