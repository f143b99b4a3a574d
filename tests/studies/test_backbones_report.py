"""The backbones study's paired bootstrap interval."""
from __future__ import annotations

import numpy as np
import pytest
import pandas as pd

from optimate_pl.studies.backbones import paired_interval


def test_paired_interval_of_a_constant_shift_is_that_shift():
    ref = pd.Series(np.linspace(0.5, 0.95, 65), index=[f"m{i}" for i in range(65)])
    diff, lo, hi = paired_interval(ref + 0.02, ref)
    assert diff == lo == hi == 0.02 or np.allclose([diff, lo, hi], 0.02)


def test_paired_interval_uses_only_shared_materials_and_brackets_the_difference():
    rng = np.random.default_rng(1)
    ids = [f"m{i}" for i in range(65)]
    ref = pd.Series(rng.uniform(0.3, 1.0, 65), index=ids)
    noisy = ref + rng.normal(0.01, 0.05, 65)
    diff, lo, hi = paired_interval(pd.concat([noisy, pd.Series([9.0], index=["only-here"])]), ref)
    assert lo < diff < hi and lo < 0.01 < hi
    assert diff == np.median(noisy) - np.median(ref)
    # Unpaired materials would widen nothing here: the extra material is ignored.
    assert paired_interval(noisy, ref) == (diff, lo, hi)


def _run(folder, backbone: str, strategy: str, n: int, sc: list[float], ids: list[str], precision: str = "32-true",
         rpa_repeat: int | None = None, net: dict | None = None, init: str | None = None, seed: int = 0,
         lr: float = 1e-5):
    """A finished run as the report reads it: config, metrics and per-material test results."""
    from omegaconf import OmegaConf

    from optimate_pl.studies.runs import Run

    folder.mkdir(parents=True)
    if net is None and backbone != "optimate":  # a class that does not exist: its parameters cannot be counted
        net = {"_target_": f"optimate_pl.models.{backbone}.{backbone.title()}Crystal"}
    pd.DataFrame({"mat_id": ids, "sc": sc}).to_csv(folder / "test_results.csv", index=False)
    cfg = OmegaConf.create({"seed": seed, "model": {"net": net}, "strategy": {"name": strategy, "init": init},
                            "trainer": {"max_epochs": 10, "precision": precision}, "optimizer": {"lr": lr},
                            "data": {} if rpa_repeat is None else {"rpa_repeat": rpa_repeat}})
    return Run(folder, cfg, {"n_train": n, "test/sc_median": float(np.median(sc)), "test/mse_median": 0.1,
                             "time_s": 20.0})


def test_mf_and_dl_are_also_compared_with_tl_on_their_own_backbone(tmp_path):
    from optimate_pl.studies.backbones import backbones_table

    ids = [f"m{i}" for i in range(65)]
    base = np.linspace(0.5, 0.95, 65)
    runs = [_run(tmp_path / "o-tl", "optimate", "tl", 100, list(base), ids),
            _run(tmp_path / "v-tl", "visnet", "tl", 100, list(base + 0.02), ids),
            _run(tmp_path / "v-mf-0", "visnet", "mf", 100, list(base + 0.05), ids),
            _run(tmp_path / "v-mf-1", "visnet", "mf", 100, list(base + 0.03), ids, precision="bf16-mixed",
                 rpa_repeat=1, seed=1),
            _run(tmp_path / "v-mf-r4", "visnet", "mf", 100, list(base + 0.10), ids, rpa_repeat=4),
            _run(tmp_path / "v-mf-ipa", "visnet", "mf", 100, list(base - 0.01), ids, init="auto"),
            _run(tmp_path / "lin-tl", "linear", "tl", 100, list(base), ids,
                 net={"_target_": "torch.nn.Linear", "in_features": 3, "out_features": 2})]
    table = backbones_table(runs).set_index(["backbone", "strategy"])
    mf = table.loc[("visnet", "mf")]
    # Each material averaged over MF's two seeds (+0.04), against ViSNet-TL (+0.02) and OPTIMATE-TL (0).
    assert mf.seeds == 2 and np.isclose(mf.vs_own_tl, 0.02) and np.isclose(mf.own_tl_ci_low, 0.02)
    assert np.isclose(mf.vs_optimate_tl, 0.04) and np.isclose(mf.ci_high, 0.04)
    # MF repeating the RPA rung is a cell of its own, against the same TL.
    assert table.loc[("visnet", "mf_r4")].seeds == 1 and np.isclose(table.loc[("visnet", "mf_r4")].vs_own_tl, 0.08)
    # So is MF started from the IPA model (strategy=mf_ipa).
    assert table.loc[("visnet", "mf_ipa")].seeds == 1 and np.isclose(table.loc[("visnet", "mf_ipa")].vs_own_tl, -0.03)
    assert np.isnan(table.loc[("visnet", "tl")].vs_own_tl)  # TL is not compared with itself
    assert np.isclose(table.loc[("visnet", "tl")].vs_optimate_tl, 0.02)
    # Each cell's network weights, counted from its saved config (3 x 2 + 2 for the Linear), NaN where the config
    # no longer builds one.
    assert table.loc[("linear", "tl")].parameters == 8 and pd.isna(mf.parameters)
    # A cell whose seeds trained in different precisions says so.
    assert mf.precision == "32-true+bf16-mixed" and table.loc[("visnet", "tl")].precision == "32-true"


def test_the_report_pools_several_run_folders(tmp_path):
    """--runs A B: a variant's runs in one folder, the reference cell's in another (or single run folders); a second
    folder is refused for a study that reads one."""
    import json

    from omegaconf import OmegaConf

    from optimate_pl.studies import report
    from optimate_pl.studies.runs import StudyInputError

    ids = [f"m{i}" for i in range(65)]
    base = np.linspace(0.5, 0.95, 65)
    for folder, backbone, shift in ((tmp_path / "a" / "visnet-tl-300-s0", "visnet", 0.02),
                                    (tmp_path / "b" / "optimate-tl-300-s0", "optimate", 0.0)):
        run = _run(folder, backbone, "tl", 300, list(base + shift), ids)
        OmegaConf.save(OmegaConf.merge(run.cfg, {"data": {"source": "gpaw"}}), folder / "config.yaml")
        (folder / "metrics.json").write_text(json.dumps(run.metrics))
    report.main(["backbones", "--runs", str(tmp_path / "a"), str(tmp_path / "b" / "optimate-tl-300-s0"),
                 "--out", str(tmp_path / "out")])
    table = pd.read_csv(tmp_path / "out" / "backbones.csv", comment="#").set_index("backbone")
    assert set(table.index) == {"optimate", "visnet"} and np.isclose(table.loc["visnet", "vs_optimate_tl"], 0.02)
    with pytest.raises(SystemExit):
        report.main(["efficiency", "--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "e")])


def test_a_cell_pools_only_seeds_of_one_recipe_on_one_test_set(tmp_path):
    """Runs that differ in a setting, repeat a seed, or were tested on other materials are refused by name; the same
    run given twice counts once."""
    from optimate_pl.studies.backbones import backbones_table
    from optimate_pl.studies.runs import StudyInputError

    ids = [f"m{i}" for i in range(65)]
    base = np.linspace(0.5, 0.95, 65)
    ref = _run(tmp_path / "o-tl-s0", "optimate", "tl", 100, list(base), ids)
    tuned = _run(tmp_path / "o-tl-s1", "optimate", "tl", 100, list(base + 0.02), ids, seed=1, lr=7e-5)
    with pytest.raises(StudyInputError, match=r"o-tl-s0 and .*o-tl-s1 differ in optimizer\.lr \(1e-05 vs 7e-05\)"):
        backbones_table([ref, tuned])
    again = _run(tmp_path / "elsewhere" / "o-tl-s0", "optimate", "tl", 100, list(base + 0.01), ids)
    with pytest.raises(StudyInputError, match="same seed"):
        backbones_table([ref, again])
    other_test = _run(tmp_path / "o-tl-s2", "optimate", "tl", 100, list(base[:60]), ids[:60], seed=2)
    with pytest.raises(StudyInputError, match="different materials"):
        backbones_table([ref, other_test])
    # The same folder named twice (a sweep folder and a run inside it): one seed, not two.
    table = backbones_table([ref, ref])
    assert table.seeds.tolist() == [1]
    # Seeds from two machines (another cache folder: another fingerprint of the cached data) are one recipe; a
    # scheduler is part of it.
    other_machine = _run(tmp_path / "o-tl-s3", "optimate", "tl", 100, list(base), ids, seed=3)
    ref.metrics["data"], other_machine.metrics["data"] = {"fingerprint": "aaaa"}, {"fingerprint": "bbbb"}
    assert backbones_table([ref, other_machine]).seeds.tolist() == [2]
    other_machine.cfg.scheduler = {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau"}
    with pytest.raises(StudyInputError, match="differ in scheduler._target_"):
        backbones_table([ref, other_machine])
    # The GPAW ladder a run learned is the pack it recorded, wherever it was read from: the built-in one changes
    # between versions (v5 -> v6) under the same config. Runs from before the record are one recipe among themselves.
    v5a, v5b, v6, pinned = (_run(tmp_path / f"gpaw-{i}", "optimate", "tl", 100, list(base), ids, seed=10 + i)
                            for i in range(4))
    for run, ladder, root in ((v5a, None, None), (v5b, None, None), (v6, "6666", None), (pinned, "6666", "/v6")):
        run.cfg.data = {"source": "gpaw", "root": root}
        run.metrics["data"] = {"ladder": ladder} if ladder else {}
    assert backbones_table([v5a, v5b]).seeds.tolist() == [2] and backbones_table([v6, pinned]).seeds.tolist() == [2]
    with pytest.raises(StudyInputError, match=r"differ in data\.root \(the built-in ladder \(version not recorded\) "
                                              r"vs pack 6666\)"):
        backbones_table([v5a, v6])
    # The built-in ladder mixed into one's own data (data.extra=[gpaw]): its version is part of the recipe too.
    for run, ladder in ((v5a, None), (v6, "6666")):
        run.cfg.data = {"source": "files", "extra": ["gpaw"]}
        run.metrics["data"] = {"ladder": ladder} if ladder else {}
    with pytest.raises(StudyInputError, match=r"differ in data\.extra \(\['gpaw \(pack version not recorded\)'\] vs "
                                              r"\['gpaw \(pack 6666\)'\]\)"):
        backbones_table([v5a, v6])
    # DL seeds run with a study's strategy.checkpoint=... (for its TL jobs; DL ignores it) and without: one recipe
    dl_a, dl_b = (_run(tmp_path / f"dl-{i}", "optimate", "dl", 100, list(base), ids, seed=20 + i) for i in range(2))
    dl_a.cfg.strategy.checkpoint = "/data/eps_300.pt"
    assert backbones_table([ref, dl_a, dl_b]).query("strategy == 'dl'").seeds.tolist() == [2]
    # A cell tested on other materials than OPTIMATE-TL is no paired comparison.
    visnet = _run(tmp_path / "v-tl", "visnet", "tl", 100, list(base[:60]), ids[:60])
    with pytest.raises(StudyInputError, match="not a paired comparison"):
        backbones_table([ref, visnet])


def test_the_interval_does_not_depend_on_the_order_of_the_materials():
    rng = np.random.default_rng(3)
    ids = [f"m{i}" for i in range(65)]
    ref = pd.Series(rng.uniform(0.3, 1.0, 65), index=ids)
    cell = ref + rng.normal(0.01, 0.05, 65)
    order = rng.permutation(65)
    for resamples in (500, 10_000):
        assert paired_interval(cell.iloc[order], ref, resamples) == paired_interval(cell, ref, resamples)


def test_unfinished_runs_and_runs_without_test_results_are_named_not_counted(tmp_path, caplog):
    import json
    import logging

    from omegaconf import OmegaConf

    from optimate_pl.studies.backbones import backbones_table
    from optimate_pl.studies.runs import load_runs

    ids = [f"m{i}" for i in range(65)]
    done = _run(tmp_path / "sweep" / "optimate-tl-100-s0", "optimate", "tl", 100, list(np.linspace(0.5, 0.9, 65)), ids)
    OmegaConf.save(done.cfg, done.dir / "config.yaml")
    (done.dir / "metrics.json").write_text(json.dumps(done.metrics))
    running = tmp_path / "sweep" / "optimate-tl-100-s1"
    running.mkdir()
    OmegaConf.save(done.cfg, running / "config.yaml")  # still training: no metrics.json yet
    untested = _run(tmp_path / "sweep" / "optimate-tl-100-s2", "optimate", "tl", 100, [0.5] * 65, ids, seed=2)
    (untested.dir / "test_results.csv").unlink()
    with caplog.at_level(logging.WARNING):
        runs = load_runs(tmp_path / "sweep")
        table = backbones_table([*runs, untested])
    assert [r.dir.name for r in runs] == ["optimate-tl-100-s0"] and table.seeds.tolist() == [1]
    assert "1 unfinished run(s)" in caplog.text and "optimate-tl-100-s1" in caplog.text
    assert "optimate-tl-100-s2: no test_results.csv" in caplog.text
