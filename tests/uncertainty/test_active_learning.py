"""Active learning: two rounds on tiny data for every acquisition function, and the next-RPA ranking."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from optimate_pl.uncertainty.acquisition import k_center_greedy, pick_distances, select_random, select_top
from optimate_pl.models import Optimate

# One pytest-xdist worker runs this module, so its module-scoped campaign is built once.
pytestmark = pytest.mark.xdist_group("test_active_learning")


SMALL = dict(node_widths=[16], gat_layers=[[16, 2]], out_widths=[64])
#: Two rounds (20 -> 30 materials) of every acquisition, one repetition, three steps a model.
CAMPAIGN = ["experiment=active_learning_quick", "trainer.max_steps=3", "trainer.val_check_interval=null",
            "active_learning.initial=20", "active_learning.step=10", "active_learning.until=30",
            "active_learning.repetitions=1"]


def test_acquisition_functions():
    assert select_top([0.1, 0.9, 0.5, 0.9], 2) == [1, 3]
    assert select_random(10, 3, seed=1) == select_random(10, 3, seed=1) and len(set(select_random(10, 3, 1))) == 3
    pool = torch.tensor([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [0.0, 5.0], [5.0, 5.0]])
    # Far from the labelled point at the origin first; then far from that pick too.
    assert k_center_greedy(pool, torch.tensor([[0.0, 0.1]]), 3) == [4, 2, 3]
    # Each pick's score: its distance to the labelled points and the earlier picks when it was picked (not to itself).
    line = torch.tensor([[0.0], [10.0], [4.0], [6.0]])
    picks = k_center_greedy(line, torch.tensor([[0.5]]), 3)
    assert picks == [1, 3, 2]
    np.testing.assert_allclose(pick_distances(line, torch.tensor([[0.5]]), picks), [9.5, 4.0, 2.0])
    np.testing.assert_allclose(pick_distances(line, line[:0], [1, 0, 2]), [np.inf, 10.0, 4.0])


@pytest.fixture(scope="module")
def campaign(tmp_path_factory, cache_dir, cfg_train):
    from optimate_pl.cli.train import run

    root = tmp_path_factory.mktemp("al")
    torch.manual_seed(0)
    ipa = root / "ipa_small.pt"  # a small IPA model to start TL from (the architecture comes from the file)
    torch.save(Optimate(**SMALL).state_dict(), ipa)
    return root / "run", run(cfg_train(root, *CAMPAIGN, f"strategy.checkpoint={ipa}"))


def test_two_rounds_for_every_acquisition_never_acquire_validation_test_or_twice(campaign, tiny_rpa):
    folder, result = campaign
    table = pd.read_csv(folder / "campaign.csv")
    assert result["rows"] == 8 and len(table) == 8  # 4 acquisitions x 2 rounds
    assert set(table.acquisition) == {"random", "disagreement", "sc", "diversity"}
    assert sorted(set(table.n_rpa)) == [20, 30] and table.sc_median.notna().all()
    train_split = set(tiny_rpa.train_set.mat_ids)
    initial = (folder / "rep-0" / "initial" / "train_ids.txt").read_text().split()
    picks = {}
    for name in table.acquisition.unique():
        ids = (folder / "rep-0" / name / "round-01" / "train_ids.txt").read_text().split()
        assert len(ids) == len(set(ids)) == 30 and set(ids) <= train_split and set(initial) <= set(ids)
        picks[name] = set(ids) - set(initial)
    assert len({frozenset(p) for p in picks.values()}) > 1  # the acquisitions chose differently
    assert (folder / "rep-0" / "sc" / "round-01" / "sc-model" / "metrics.json").is_file()
    assert (folder / "rep-0" / "disagreement" / "round-01" / "member-1" / "metrics.json").is_file()


def test_the_data_module_refuses_validation_test_and_repeated_materials(tiny_rpa, tmp_path, cache_dir):
    from optimate_pl.data import RPADataModule

    from ..conftest import TINY_SIZES

    path = tmp_path / "ids.txt"
    for ids, message in (([tiny_rpa.val_set.mat_ids[0]], "is not a training material \\(validation\\)"),
                         ([tiny_rpa.test_set.mat_ids[0]], "is not a training material \\(test\\)"),
                         ([tiny_rpa.train_set.mat_ids[0]] * 2, "is listed twice")):
        path.write_text("\n".join(ids) + "\n")
        with pytest.raises(ValueError, match=message):
            RPADataModule(source="synthetic", cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES, train_ids=str(path)).setup()


def test_campaign_report_and_a_resumed_campaign(campaign, tmp_path, cfg_train):
    from optimate_pl.cli.train import run
    from optimate_pl.studies import report

    folder, _ = campaign
    written = report.active_learning(folder, tmp_path)
    for name in ("active_learning.png", "active_learning.pdf", "active_learning.csv", "active_learning.md"):
        assert (tmp_path / name).stat().st_size > 0
    md = (tmp_path / "active_learning.md").read_text()
    assert md.startswith("Data: SYNTHETIC") and "random at" in md and len(written) == 4
    # The same campaign said to be on the GPAW ladder is reported as real physics, never as SYNTHETIC.
    import shutil

    gpaw = tmp_path / "gpaw-campaign"
    shutil.copytree(folder, gpaw)
    meta = json.loads((gpaw / "campaign.json").read_text())
    (gpaw / "campaign.json").write_text(json.dumps({**meta, "source": "gpaw"}))
    report.active_learning(gpaw, tmp_path / "gpaw-report")
    assert (tmp_path / "gpaw-report" / "active_learning.md").read_text().startswith("Data: GPAW-computed (real physics")
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("metrics.json")}
    cfg = json.loads((folder / "campaign.json").read_text())
    assert cfg["sizes"] == [20, 30]
    # Started again, a finished campaign trains nothing.
    run(cfg_train(folder.parent, *CAMPAIGN, f"strategy.checkpoint={folder.parent / 'ipa_small.pt'}"))
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())


def test_next_rpa_ranks_candidates_for_each_acquisition(campaign, tmp_path, write_cifs):
    from optimate_pl.inference.predictor import load_model
    from optimate_pl.uncertainty.next_rpa import next_rpa, trained_source

    folder, _ = campaign
    cifs = write_cifs(tmp_path / "cifs", stem="cand")
    tl = json.loads((folder / "rep-0" / "random" / "round-01" / "metrics.json").read_text())["best_checkpoint"]
    # Candidates come from the database the model learned (its card), else the command's default, the GPAW ladder.
    assert trained_source(load_model(tl).info) == "synthetic" and trained_source({"data_source": "unknown"}) == "gpaw"
    sc = json.loads((folder / "rep-0" / "sc" / "round-01" / "sc-model" / "metrics.json").read_text())["best_checkpoint"]
    for model, acquisition in ((tl, "diversity"), (sc, "sc"), (tl, "random")):
        table = next_rpa(model, acquisition, str(tmp_path / f"{acquisition}.csv"), top=2, candidates=str(cifs))
        assert list(table.columns) == ["rank", "mat_id", "formula", "nsites", "score", "reason"]
        assert sorted(table.mat_id) == ["cand0.cif", "cand1.cif"] and list(table["rank"]) == [1, 2]
        assert pd.read_csv(tmp_path / f"{acquisition}.csv").shape == (2, 6)
    diversity = pd.read_csv(tmp_path / "diversity.csv")  # away from the computed RPA materials: distances > 0
    assert (diversity.score > 0).all() and diversity.score.iloc[0] >= diversity.score.iloc[1]
    sc_table = pd.read_csv(tmp_path / "sc.csv")
    assert np.all(np.diff(sc_table.score.to_numpy()) <= 0)  # best first
    with pytest.raises(ValueError, match="needs an ensemble folder"):
        next_rpa(tl, "disagreement", str(tmp_path / "d.csv"), top=2, candidates=str(cifs))
