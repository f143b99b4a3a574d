"""Study presets, sweeps and report steps, on tiny synthetic runs: every promised file is written."""
import json
import sqlite3

import pandas as pd
import pytest
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf

from optimate_pl.studies import report

from ..conftest import TINY_SIZES

# One pytest-xdist worker runs this module, so its module-scoped study runs are made once.
pytestmark = pytest.mark.xdist_group("test_studies")

TINY = ["data.source=synthetic", f"data.synthetic_sizes.ipa={TINY_SIZES['ipa']}", f"data.synthetic_sizes.rpa={TINY_SIZES['rpa']}",
        "data.batch_size=16", "trainer.accelerator=cpu", "callbacks.progress_bar=null",
        "callbacks.model_summary=null", "trainer.max_steps=6", "trainer.val_check_interval=3"]

#: What every report promises (the experiments/ READMEs list the same files).
PROMISED = {
    "efficiency": ["efficiency.csv", "efficiency.md", "efficiency.png", "efficiency.pdf", "elements.png",
                   "elements.pdf", "element_error.csv", "element_error.md", "element_error.png", "element_error.pdf"],
    "small_cells": ["small_cells.csv", "small_cells.md", "sc_by_sites.png", "sc_by_sites.pdf"],
    "correlations": ["correlations_20.png", "correlations_20.pdf", "correlations_40.png", "correlations_40.pdf",
                     "dl_vs_tl.png", "dl_vs_tl.pdf", "qw_parity.png", "qw_parity.pdf", "correlations.csv",
                     "correlations.md"],
    "example_spectra": ["example_spectra.png", "example_spectra.pdf", "example_spectra.csv", "example_spectra.md"],
    "sc_predictor": ["sc_predictor.csv", "sc_predictor.md", "sc_predictor.png", "sc_predictor.pdf"],
    "latent_map": ["latent_map.csv", "latent_map.md", "latent_map.png", "latent_map.pdf", "latent_map.html"],
}


def hydra_cfg(*overrides):
    with initialize_config_module("optimate_pl.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_presets_and_launcher_compose():
    eff = hydra_cfg("experiment=efficiency")
    assert eff.hydra.sweeper.params == {"strategy": "dl,tl", "data.subset": "100,300,1000,3000,4610"}
    assert eff.hydra.sweep.dir.endswith("experiments/efficiency/runs")
    quick = hydra_cfg("experiment=efficiency_quick")
    assert quick.trainer.max_steps == 300 and quick.hydra.sweeper.params.strategy == "dl,tl"
    # An axis of one value, null (the full training set) or a list is taken as well as a quoted comma string.
    one = hydra_cfg("experiment=backbones", "study.subsets=null", "study.models=[optimate,visnet]", "study.seeds=0")
    assert one.hydra.sweeper.params == {"model": "optimate,visnet", "strategy": "dl,tl,mf", "data.subset": "null",
                                        "seed": "0"}
    assert hydra_cfg("experiment=backbones").hydra.sweeper.params["data.subset"] == "100,300,null"
    # Each job's folder; an MF variant that repeats the RPA rung beside the plain MF runs, never over them.
    def job_dir(*overrides):
        return OmegaConf.select(hydra_cfg("experiment=backbones", "hydra.mode=RUN", *overrides), "hydra.sweep.subdir")

    assert job_dir("model=visnet", "strategy=tl", "data.subset=300", "seed=1") == "visnet-tl-300-s1"
    assert job_dir("model=optimate", "strategy=mf", "data.subset=100") == "optimate-mf-100-s0"
    assert job_dir("model=optimate", "strategy=mf", "data.subset=100", "data.rpa_repeat=4") == "optimate-mf-r4-100-s0"
    assert job_dir("model=visnet", "strategy=mf_ipa", "data.subset=100") == "visnet-mf-ipa-r4-100-s0"
    assert job_dir("model=optimate", "strategy=mf_ipa", "data.subset=100", "data.rpa_repeat=2") == "optimate-mf-ipa-r2-100-s0"
    assert job_dir("model=optimate", "strategy=tl", "data.subset=100") == "optimate-tl-100-s0"  # TL's checkpoint: no suffix
    assert job_dir("model=optimate", "strategy=dl", "data.subset=null") == "optimate-dl-full-s0"
    small = hydra_cfg("experiment=small_cells")
    assert small.hydra.sweeper.params["data.max_sites"] == "2,3,4,5,6"
    assert small.hydra.sweep.dir.endswith("experiments/small_cells/runs")
    for twin in ("uncertainty_quick", "active_learning_quick", "small_cells_quick", "quick"):  # not run as tests
        cfg = hydra_cfg(f"experiment={twin}")
        assert cfg.data.source == "synthetic" and cfg.strategy.pretrain_epochs == 6, twin
    assert hydra_cfg("experiment=quick").trainer.max_steps == 300
    assert hydra_cfg("experiment=uncertainty_quick").ensemble.size == 5
    assert hydra_cfg("experiment=active_learning_quick").active_learning.until == 400
    sc = hydra_cfg("experiment=sc_predictor")
    assert sc.strategy.name == "sc" and sc.hydra.sweeper.params["data.train_on"] == "train,all"
    # The command learns the built-in GPAW ladder by default; the paper-sized presets keep the synthetic data
    # their committed results were measured on (their subsets of 1000-4610 exceed the ladder), unless overridden.
    assert hydra_cfg().data.source == "gpaw" and hydra_cfg("experiment=gpaw_ladder").data.source == "gpaw"
    for preset in ("efficiency", "efficiency_quick", "small_cells", "sc_predictor", "uncertainty", "active_learning"):
        assert hydra_cfg(f"experiment={preset}").data.source == "synthetic", preset
    assert hydra_cfg("experiment=uncertainty", "data.source=gpaw").data.source == "gpaw"
    dl = hydra_cfg("strategy=dl", "sweep=dl", "data.subset=300")
    assert dl.hydra.sweeper.storage.startswith("sqlite:///") and dl.hydra.sweeper.storage.endswith("optuna.db")
    assert "model.search.gat_layers" in dl.hydra.sweeper.params and dl.model.net.gat_layers == [[192, 4]]
    tl = hydra_cfg("strategy=tl", "sweep=tl")
    assert set(tl.hydra.sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}
    assert tl.pruner._target_ == "optuna.pruners.MedianPruner" and tl.callbacks.pruning.monitor == "val/sc_median"
    # The optimiser-only TL sweep of another backbone is a study of its own, not a continuation of OPTIMATE's.
    assert tl.hydra.sweeper.study_name == "sweep-tl-gpaw-full" and tl.hydra.sweep.dir.endswith("/sweep-tl-gpaw-full")
    tl_dimenet = hydra_cfg("strategy=tl", "sweep=tl", "model=dimenet", "data.subset=300")
    assert tl_dimenet.hydra.sweeper.study_name == "sweep-tl-gpaw-300-dimenet"
    assert tl_dimenet.hydra.sweep.dir.endswith("multirun/sweep-tl-gpaw-300-dimenet")
    assert "pruner" not in hydra_cfg() and "pruning" not in hydra_cfg().callbacks  # pruning belongs to sweeps only
    assert tl.test is False and hydra_cfg().test is True  # trials are chosen on validation, never shown the test set
    for backbone in ("dimenet", "visnet"):  # each backbone's own search space, study and folder, under any strategy
        for strategy in ("dl", "tl", "mf"):
            cfg = hydra_cfg(f"strategy={strategy}", f"sweep={backbone}", "data.subset=300")
            assert cfg.model.name == backbone and cfg.hydra.sweeper.study_name == f"sweep-{strategy}-{backbone}-gpaw-300"
            assert cfg.hydra.sweep.dir.endswith(f"multirun/sweep-{strategy}-{backbone}-gpaw-300")
            for key in cfg.hydra.sweeper.params:  # a misspelt key would be added silently by the sweep
                assert OmegaConf.select(cfg, key) is not None, (backbone, key)
    slurm = hydra_cfg("launcher=slurm", "strategy=dl")
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher") and slurm.hydra.launcher.gpus_per_node == 1
    assert slurm.trainer.accelerator == "gpu"


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory, cache_dir, cli):
    """Every quick preset under debug=fast (one batch a job) on the tiny synthetic data."""
    root = tmp_path_factory.mktemp("studies")
    for args in (["experiment=efficiency_quick", "study.subsets='20,40'"],
                 ["experiment=small_cells_quick", "study.max_sites='3,4'"],
                 ["experiment=sc_predictor_quick"]):
        r = cli(*args, "debug=fast", "evaluate_train=true", *TINY, "strategy.pretrain_epochs=1", f"paths.root_dir={root}", cwd=root,
                timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def reports(study_runs):
    """Every report on those runs (``python -m optimate_pl.studies <study>``, called in-process)."""
    for study in PROMISED:
        report.main([study, "--root", str(study_runs)])
    return study_runs


@pytest.mark.parametrize("study", sorted(PROMISED))
def test_every_report_writes_every_promised_file(reports, study):
    out = reports / "experiments" / study / "results"
    for name in PROMISED[study]:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, (study, name)
    table = next(p for p in PROMISED[study] if p.endswith(".md"))
    assert (out / table).read_text().startswith("Data: SYNTHETIC data (generated, not physics)")


def test_report_values_and_a_missing_input(reports, tmp_path, cli):
    study_runs = reports
    eff = pd.read_csv(study_runs / "experiments" / "efficiency" / "results" / "efficiency.csv")
    assert sorted(zip(eff.strategy, eff.train_size)) == [("dl", 20), ("dl", 40), ("tl", 20), ("tl", 40)]
    assert eff.train_sc_median.notna().all() and "paper_sc" not in eff  # no paper column on synthetic data
    sc = pd.read_csv(study_runs / "experiments" / "sc_predictor" / "runs" / "train_on-train" / "test_results.csv")
    table = pd.read_csv(study_runs / "experiments" / "sc_predictor" / "results" / "sc_predictor.csv")
    assert table.mean_abs_error[0] == pytest.approx((sc.true - sc.pred).abs().mean())
    latent = pd.read_csv(study_runs / "experiments" / "latent_map" / "results" / "latent_map.csv")
    assert len(latent) == sum(TINY_SIZES["rpa"])  # every material embedded, the SC model trained on all
    html = (study_runs / "experiments" / "latent_map" / "results" / "latent_map.html").read_text()
    assert "plotly" in html and latent.mat_id[0] in html
    r = cli("correlations", "--root", str(tmp_path), cwd=tmp_path, module="optimate_pl.studies")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: no such folder: {tmp_path / 'experiments' / 'efficiency' / 'runs'} "
        f"(make them with: python -m optimate_pl experiment=efficiency)",
        "(run with --verbose-errors for the full traceback)"]  # the one form of every tool's error


def test_optuna_sweep_persists_and_writes_best_config(tmp_path, cache_dir, cli):
    args = ["strategy=dl", "sweep=dl", "data.subset=40", "hydra.sweeper.n_trials=1", *TINY,
            "trainer.check_val_every_n_epoch=null", f"paths.root_dir={tmp_path}"]
    r = cli(*args, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = tmp_path / "multirun" / "sweep-dl-synthetic-40"
    assert "best parameters:" in r.stdout
    best_model = (sweep / "best_model.yaml").read_text()
    assert "gat_layers:" in best_model and "search" not in best_model
    assert "optimizer:" in (sweep / "best_overrides.yaml").read_text()
    # The same command would run its trial in 0/ again, over the first one: refused before any job, saying how
    first_metrics = (sweep / "0" / "metrics.json").read_text()
    r = cli(*args, cwd=tmp_path, timeout=600)
    assert r.returncode == 2 and "holds the trials of an earlier command (0/)" in r.stderr
    assert "'hydra.sweep.subdir=c1-${hydra.job.num}' hydra.sweeper.sampler.seed=1" in r.stderr
    # Continued with folders of its own; a pruner that stops every trial below SC 2 (all of them) after its first
    # validation: the new trial stops at step 3 of 6, and the sweep says so.
    r = cli(*args, "pruner=threshold", "pruner.lower=2.0", "pruner.n_warmup_steps=0",
            "hydra.sweep.subdir=c1-${hydra.job.num}", "hydra.sweeper.sampler.seed=1", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (sweep / "0" / "metrics.json").read_text() == first_metrics  # the first trial's run as it was
    import optuna

    trials = optuna.load_study(study_name="sweep-dl-synthetic-40", storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    assert len(trials) == 2 and all(t.state.name == "COMPLETE" for t in trials)
    for t in trials:  # each job reported to its own trial; the value stored is that job's own at its last validation
        assert len(t.intermediate_values) >= 1
    pruned = trials[1]  # the second command's job 0
    metrics = json.loads((sweep / "c1-0" / "metrics.json").read_text())
    assert not any(k.startswith("test/") for k in metrics) and not (sweep / "c1-0" / "test_results.csv").exists()
    first = min(pruned.intermediate_values)  # the epoch of its first validation (the sampled batch size sets it)
    assert pruned.user_attrs["pruned_at_epoch"] == first and metrics["trained_steps"] == 3
    assert pruned.value == pytest.approx(metrics["val/sc_median"]) == pytest.approx(pruned.intermediate_values[first])
    assert [t.number for t in trials if "pruned_at_epoch" in t.user_attrs] == [1]
    assert f"pruned: 1 trial(s) stopped early (1 at epoch {first})" in r.stdout
    # Every trial as a row of trials.csv, the pruned one marked with its epoch and its value when it stopped.
    table = pd.read_csv(sweep / "trials.csv").set_index("trial")
    assert sorted(table.index) == [0, 1] and list(table.state) == ["COMPLETE", "COMPLETE"]
    assert table.loc[1, "pruned_at_epoch"] == first and pd.isna(table.loc[0, "pruned_at_epoch"])
    assert table.loc[1, "value"] == pytest.approx(pruned.value) and table.loc[0, "value"] == pytest.approx(trials[0].value)
    r = cli(*args, "hydra.sweep.subdir=c1-${hydra.job.num}", cwd=tmp_path, timeout=600)  # c1 again: c2 is offered
    assert r.returncode == 2 and "(c1-0/)" in r.stderr and "'hydra.sweep.subdir=c2-${hydra.job.num}'" in r.stderr
    assert table.loc[0, "optimizer.lr"] == pytest.approx(trials[0].params["optimizer.lr"])


def test_study_tool_inputs_are_checked_before_any_work(tmp_path, capsys):
    """A missing or wrong --runs and an unwritable --out end in one line (exit 2), never a report of other data."""
    from optimate_pl.data import ladder

    def said(*argv) -> str:
        with pytest.raises(SystemExit) as stop:
            report.main(list(argv))
        assert stop.value.code == 2
        return capsys.readouterr().err

    assert "--runs " + str(tmp_path / "nowhere") + ": no such folder" in said(
        "gpaw_ladder", "--runs", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert "not a packed dataset folder (no materials.json.gz" in said("gpaw_ladder", "--runs", str(tmp_path),
                                                                        "--out", str(tmp_path / "o"))
    (tmp_path / "a_file").write_text("x")
    assert "cannot write there" in said("gpaw_ladder", "--out", str(tmp_path / "a_file" / "out"))
    # An IPA-only pack: nothing to compare, said so (was KeyError: 'family'). Three materials of the built-in
    # ladder restored (all 1,022 entries took 20 s), their RPA entries dropped.
    folder = tmp_path / "ipa_only"
    ladder.restore(ladder.builtin_dir(), folder, ids=[m["mat_id"] for m in ladder.load()[0][:3]])
    for p in (folder / "rpa").glob("*.json"):
        p.unlink()
    ladder.pack(folder, tmp_path / "packed")
    assert "has both rungs" in said("gpaw_ladder", "--runs", str(tmp_path / "packed"), "--out", str(tmp_path / "o"))


def test_the_ladder_report_gives_the_cost_of_an_ipa_only_rung_apart(tmp_path):
    """A pack with a cheap IPA-only rung (issue #37): the both-rungs cost table stays the both-rung materials'; the
    IPA-only materials get their own table, whose core-hours are the sum of their entries' recorded core-seconds."""
    import json

    import pandas as pd

    from optimate_pl.data import ladder
    from optimate_pl.studies.ladder import gpaw_ladder

    folder = tmp_path / "run"
    ladder.restore(ladder.builtin_dir(), folder, ids=[m["mat_id"] for m in ladder.load()[0] if m["has_rpa"]][:5])
    ipa_only = sorted((folder / "rpa").glob("*.json"))[:2]
    for p in ipa_only:
        p.unlink()
    seconds = [json.loads((folder / "ipa" / p.name).read_text())["parameters"]["core_seconds"]["total"]
               for p in ipa_only]
    ladder.pack(folder, tmp_path / "packed", compact=True)
    gpaw_ladder(tmp_path / "packed", tmp_path / "out")
    both = pd.read_csv(tmp_path / "out" / "ladder_cost.csv")
    apart = pd.read_csv(tmp_path / "out" / "ladder_cost_ipa_only.csv")
    assert both["materials"].sum() == 3 and apart["materials"].sum() == 2
    assert (apart["mean core-s"] * apart["materials"]).sum() == pytest.approx(sum(seconds))
    assert f"{sum(seconds) / 3600:.2f} core-hours in all" in (tmp_path / "out" / "ladder_cost_ipa_only.md").read_text()


def test_a_report_names_the_packed_ladder_its_runs_learned():
    """Runs on another packed ladder (data.root, e.g. the growing ladder's snapshot) are never reported as the
    built-in one."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from optimate_pl.studies.runs import data_statement

    def run(root, pack=None):
        return SimpleNamespace(cfg=OmegaConf.create({"data": {"source": "gpaw", "root": root}}),
                               metrics={"data": {"ladder": pack} if pack else {}})

    assert "the built-in PBE ladder" in data_statement([run(None), run(None)])
    snap = data_statement([run("experiments/gpaw_ladder/snapshot")] * 2)
    assert "packed at experiments/gpaw_ladder/snapshot, pack version not recorded;" in snap and "built-in" not in snap
    assert "packed at the built-in one, experiments/gpaw_ladder/snapshot" in data_statement(
        [run(None), run("experiments/gpaw_ladder/snapshot")])
    # The built-in ladder changes between versions under the same config: the statement names the pack each run
    # recorded, and two packs are not comparable (v5's 65 test materials are not v6's 80).
    v6 = data_statement([run(None, "c25893c2063477bd")] * 2)
    assert "pack c25893c2063477bd;" in v6 and not v6.startswith("MIXED")
    assert data_statement([run(None), run(None, "c25893c2063477bd")]).startswith("MIXED ladder versions")


def test_a_run_is_never_read_with_another_ladder_version_than_it_learned(tmp_path):
    """Rebuilding a run's data module from its config gives today's built-in ladder: a run that learned another
    version (recorded, or told by its validation and test sizes) is refused, naming where v5 is, instead of pairing
    its test results with other materials (a KeyError, or a silent figure of other data)."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from optimate_pl.studies.runs import Run, StudyInputError

    dm = SimpleNamespace(ladder_version=lambda: "c25893c2063477bd", val_set=[0] * 63, test_set=[0] * 80)
    cfg = OmegaConf.create({"data": {"source": "gpaw"}})

    def run(data):
        return Run(tmp_path, cfg, {"data": data})

    run({"ladder": "c25893c2063477bd", "sizes": {"validation": 63, "test": 80}})._check_same_ladder(dm)
    with pytest.raises(StudyInputError, match="learned the GPAW ladder pack 3064b4569d124b04, but its config now "
                                              "reads pack c25893c2063477bd.*builtin_v5"):
        run({"ladder": "3064b4569d124b04"})._check_same_ladder(dm)
    with pytest.raises(StudyInputError, match="tested on 65 materials .50 for validation.*with 80 .63.*builtin_v5"):
        run({"sizes": {"train": 396, "validation": 50, "test": 65}})._check_same_ladder(dm)
    run({"sizes": {"train": 300, "validation": 63, "test": 80}})._check_same_ladder(dm)  # unrecorded, same sizes


def test_a_report_of_ones_own_data_or_of_mixed_sources_says_so():
    """Runs on data.source=files were reported as SYNTHETIC, and a mix of GPAW and figshare runs as well."""
    from types import SimpleNamespace

    from omegaconf import OmegaConf

    from optimate_pl.studies.runs import SYNTHETIC_STATEMENT, data_statement

    def run(source, root=None):
        return SimpleNamespace(cfg=OmegaConf.create({"data": {"source": source, "root": root}}),
                               metrics={"data": {"fingerprint": "0123456789abcdef0123"}})

    own = data_statement([run("files", "/data/my_db")])
    assert own == "your own data (data.source=files): /data/my_db (database fingerprint 0123456789abcdef)"
    assert data_statement([run("figshare", "/data/rpa")]).startswith("real data: /data/rpa")
    assert data_statement([run("synthetic")]) == SYNTHETIC_STATEMENT
    mixed = data_statement([run("gpaw"), run("figshare", "/data/rpa"), run("gpaw")])
    assert mixed.startswith("MIXED data sources, not comparable with each other: real data: /data/rpa")
    assert "the built-in PBE ladder" in mixed and "SYNTHETIC" not in mixed
    # A quick preset's runs (300 steps) left beside a full study's: said, not silently pooled
    quick = SimpleNamespace(cfg=OmegaConf.create({"data": {"source": "synthetic"}, "trainer": {"max_steps": 300}}),
                            metrics={})
    full = SimpleNamespace(cfg=OmegaConf.create({"data": {"source": "synthetic"}, "trainer": {"max_steps": -1}}),
                           metrics={})
    assert data_statement([full, quick]) == ("MIXED training budgets, not comparable with each other (300 training "
                                             "steps (a quick preset); the strategies' epochs): " + SYNTHETIC_STATEMENT)
    assert data_statement([quick, quick]) == SYNTHETIC_STATEMENT
