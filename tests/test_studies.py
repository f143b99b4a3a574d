"""Study presets, sweeps and report steps, on tiny synthetic runs."""
import sqlite3

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from optimate_pl.studies import report

from .conftest import TINY_SIZES
from .test_app import cli

TINY = [f"data.synthetic_sizes.ipa={TINY_SIZES['ipa']}", f"data.synthetic_sizes.rpa={TINY_SIZES['rpa']}",
        "data.batch_size=16", "trainer.accelerator=cpu", "callbacks.progress_bar=null",
        "callbacks.model_summary=null", "trainer.max_steps=6", "trainer.val_check_interval=3"]


def hydra_cfg(*overrides):
    with initialize_config_module("optimate_pl.conf", version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=True)


def test_presets_and_launcher_compose():
    eff = hydra_cfg("experiment=efficiency")
    assert eff.hydra.sweeper.params == {"strategy": "dl,tl", "data.subset": "100,300,1000,3000,4610"}
    quick = hydra_cfg("experiment=efficiency_quick")
    assert quick.trainer.max_steps == 300 and quick.hydra.sweeper.params.strategy == "dl,tl"
    assert hydra_cfg("experiment=small_cells").hydra.sweeper.params["data.max_sites"] == "2,3,4,5,6"
    assert hydra_cfg("experiment=sc_model").strategy.name == "sc"
    dl = hydra_cfg("strategy=dl", "sweep=dl", "data.subset=300")
    assert dl.hydra.sweeper.storage.startswith("sqlite:///") and dl.hydra.sweeper.storage.endswith("optuna.db")
    assert "model.search.gat_layers" in dl.hydra.sweeper.params and dl.model.net.gat_layers == [[192, 4]]
    tl = hydra_cfg("strategy=tl", "sweep=tl")
    assert set(tl.hydra.sweeper.params) == {"optimizer.lr", "optimizer.weight_decay", "data.batch_size"}
    slurm = hydra_cfg("launcher=slurm", "strategy=dl")
    assert slurm.hydra.launcher._target_.endswith("SlurmLauncher") and slurm.hydra.launcher.gpus_per_node == 1
    assert slurm.trainer.accelerator == "gpu"


@pytest.fixture(scope="module")
def study_runs(tmp_path_factory, cache_dir):
    root = tmp_path_factory.mktemp("studies")
    for args in (["experiment=efficiency_quick", "study.subsets='20,40'"],
                 ["experiment=small_cells_quick", "study.max_sites='3,4'"],
                 ["experiment=sc_model_quick"]):
        r = cli(*args, *TINY, f"paths.root_dir={root}", cwd=root, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
    return root


def test_efficiency_correlations_and_spectra_reports(study_runs, tmp_path):
    runs = study_runs / "studies" / "efficiency" / "runs"
    assert len(list(runs.glob("*/metrics.json"))) == 4  # dl/tl x 20/40
    df = report.efficiency(runs, tmp_path)
    assert sorted(zip(df.strategy, df.train_size)) == [("dl", 20), ("dl", 40), ("tl", 20), ("tl", 40)]
    assert df.sc_median.notna().all() and (tmp_path / "efficiency.pdf").is_file()
    assert "| strategy" in (tmp_path / "efficiency.md").read_text()
    corr = report.correlations(runs, tmp_path)
    assert list(corr.train_size) == [20, 40] and corr.tl_better_than_ipa.between(0, 1).all()
    spec = report.spectra(runs, tmp_path, size=20)
    assert len(spec) == 9 and (tmp_path / "spectra_20.png").is_file()


def test_small_cells_report(study_runs, tmp_path):
    df = report.small_cells(study_runs / "studies" / "small_cells" / "runs", tmp_path)
    assert list(df.max_sites) == [3, 4] and df.train_size.iloc[0] < df.train_size.iloc[1]
    assert (tmp_path / "small_cells.png").is_file()


def test_sc_predictor_and_latent_reports(study_runs, tmp_path):
    run = study_runs / "studies" / "sc_model" / "run"
    df = report.sc_predictor(run, tmp_path)
    per = pd.read_csv(run / "test_results.csv")
    assert df.mean_abs_error[0] == pytest.approx((per.true - per.pred).abs().mean())
    lat = report.latent(run, tmp_path)
    assert len(lat) == 20 and {"umap_1", "umap_2", "formula", "mat_id"} <= set(lat.columns)
    html = (tmp_path / "latent_umap.html").read_text()
    assert "plotly" in html and lat.mat_id[0] in html


def test_optuna_sweep_persists_and_writes_best_config(tmp_path, cache_dir):
    args = ["strategy=dl", "sweep=dl", "data.subset=40", "hydra.sweeper.n_trials=2", *TINY,
            "trainer.check_val_every_n_epoch=null", f"paths.root_dir={tmp_path}"]
    r = cli(*args, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    sweep = tmp_path / "multirun" / "sweep-dl-synthetic-40"
    assert "best parameters:" in r.stdout
    best_model = (sweep / "best_model.yaml").read_text()
    assert "gat_layers:" in best_model and "search" not in best_model
    assert "optimizer:" in (sweep / "best_overrides.yaml").read_text()
    r = cli(*args, cwd=tmp_path, timeout=600)  # the same command continues the stored study
    assert r.returncode == 0, r.stderr[-3000:]
    with sqlite3.connect(sweep / "optuna.db") as db:
        assert db.execute("select count(*) from trials").fetchone()[0] == 4
