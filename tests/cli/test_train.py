"""The Hydra app: composition, strategies end to end (tiny data), outputs, W&B offline, DDP, errors."""
import json
import os
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_module

from optimate_pl.config import dl_architecture_for
from optimate_pl.training.stages import run
from optimate_pl.training.train import train

from ..conftest import TINY_SIZES



def test_dl_picks_the_architecture_for_the_nearest_size():
    assert dl_architecture_for(120) == "dl_100" and dl_architecture_for(250) == "dl_300"
    assert dl_architecture_for(2000) == "dl_1000" and dl_architecture_for(None) == "dl_4610"


def test_tl_with_auto_pretraining_writes_all_outputs(tmp_path, cache_dir, cfg_train):
    cfg = cfg_train(tmp_path, "strategy=tl", "data.subset=60", "strategy.pretrain_epochs=1")
    metrics = run(cfg)
    out = tmp_path / "run"
    for name in ("config.yaml", "metrics.json", "test_results.csv", "test_spectra.png"):
        assert (out / name).is_file(), name
    assert {"test/sc_median", "test/mse_median", "test/ipa_sc_median", "test/ipa_mse_median"} <= set(metrics)
    assert metrics["objective"] == metrics["val/sc_median"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test/sc_median"] == pytest.approx(metrics["test/sc_median"])
    assert len((out / "test_results.csv").read_text().splitlines()) == 21
    ipa = list((tmp_path / "checkpoints").glob("ipa-synthetic-*.ckpt"))
    assert len(ipa) == 1  # pretrained once, reused next time
    # A model card beside every checkpoint kept: loading never has to guess.
    from optimate_pl import __version__
    from optimate_pl.models.card import read_card

    card = read_card(metrics["best_checkpoint"])
    assert card["architecture"]["gat_layers"] == [[48, 4], [96, 4]] and card["target"] == "eps_imag"
    assert card["data"]["source"] == "synthetic" and card["data"]["synthetic"] and card["data"]["fingerprint"]
    assert card["data"]["sizes"] == {"train": 60, "validation": 20, "test": 20} and card["data"]["cutoff"] == 5.0
    assert card["data"]["initial_weights"] == str(ipa[0]) and card["optimate_pl_version"] == __version__
    assert card["test"]["test/sc_median"] == pytest.approx(metrics["test/sc_median"])
    assert read_card(ipa[0])["data"]["kind"] == "ipa"
    again = run(cfg_train(tmp_path / "again", "strategy=tl", "data.subset=60",
                          f"paths.checkpoint_dir={tmp_path / 'checkpoints'}",
                          "strategy.pretrain_epochs=1"))
    assert list((tmp_path / "checkpoints").glob("ipa-synthetic-*.ckpt")) == ipa
    # The same TL run whether or not it had to pretrain first.
    assert again["test/sc_median"] == pytest.approx(metrics["test/sc_median"], abs=1e-6)


def test_the_authors_recipes_are_the_defaults():
    from optimate_pl.config import resolve_config

    def composed(*overrides):
        with initialize_config_module("optimate_pl.conf", version_base="1.3"):
            cfg = compose("train", overrides=["data.source=figshare", "data.root=/db", "data.ipa_root=/ipa",
                                              "trainer.accelerator=cpu", *overrides])
        cfg = resolve_config(cfg)
        return (cfg.optimizer.lr, cfg.optimizer.weight_decay, cfg.data.batch_size, cfg.data.drop_last,
                cfg.trainer.max_epochs, cfg.trainer.check_val_every_n_epoch)

    assert composed("strategy=tl") == (1e-5, 1e-4, 128, False, 500, 20)
    assert composed("strategy=dl", "data.subset=300") == (1e-5, 1e-4, 20, True, 500, 20)
    assert composed("strategy=dl", "data.subset=3000", "optimizer.lr=3e-4")[:2] == (3e-4, 1e-4)
    assert composed("strategy=sc") == (1e-3, 0.0, 64, True, 200, 20)
    # TL on small cells: the hyperparameters of training-set size 1000 (the TL recipe).
    assert composed("experiment=small_cells") == (1e-5, 1e-4, 128, False, 500, 20)


def test_auto_pretraining_uses_the_tl_runs_own_settings(tmp_path, cfg_train):
    from optimate_pl.training.pretrain import ipa_checkpoint_path, ipa_pretraining_config

    ipa = ipa_pretraining_config(cfg_train(tmp_path, "strategy=tl", "data.subset=300", "data.cutoff=4.0"))
    assert ipa.data._target_.endswith("IPADataModule") and ipa.data.cutoff == 4.0 and ipa.data.subset is None
    assert (ipa.data.batch_size, ipa.optimizer.lr, ipa.trainer.max_epochs, ipa.test) == (128, 1e-3, 20, False)
    assert ipa.trainer.accelerator == "cpu" and ipa.trainer.precision == "32-true"

    def key(*overrides):
        return ipa_checkpoint_path(cfg_train(tmp_path, "strategy=tl", *overrides)).name

    # One IPA model serves every TL training size and the small-cell runs ...
    assert key("data.subset=100") == key("data.subset=300") == key("data.max_sites=4") == key()
    # ... but anything that changes the IPA model gets its own checkpoint.
    changed = [key(o) for o in ("data.cutoff=4.0", "data.synthetic_seed=1", "seed=1", "strategy.pretrain_epochs=3",
                                "trainer.precision=bf16-mixed", "data.split=formula")]
    assert len({key(), *changed}) == 1 + len(changed)


def test_auto_pretraining_on_the_builtin_ladder_is_named_by_its_version(tmp_path, cfg_train, monkeypatch):
    """A grown built-in GPAW dataset gets a new IPA model, not the one pretrained on the previous version."""
    import shutil

    from optimate_pl.data import ladder
    from optimate_pl.training.pretrain import ipa_checkpoint_path

    def key():
        return ipa_checkpoint_path(cfg_train(tmp_path, "strategy=tl", "data.source=gpaw")).name

    before = key()
    grown = tmp_path / "grown"
    shutil.copytree(ladder.builtin_dir(), grown)
    (grown / "spectra.npz").write_bytes((grown / "spectra.npz").read_bytes() + b"\0")  # another version
    monkeypatch.setattr(ladder, "builtin_dir", lambda: grown)
    assert key() != before and key().startswith("ipa-gpaw-")


def test_auto_pretraining_on_ones_own_folders_is_named_by_what_they_hold(tmp_path, cfg_train):
    """A database folder that grows (data.source=files, data.extra) or a split folder whose ids change gets a new IPA
    model: data.split=auto may have moved materials, so the old model may have learned today's test materials."""
    from optimate_pl.data.splits import write_split_files
    from optimate_pl.training.pretrain import ipa_checkpoint_path

    db, more = tmp_path / "db", tmp_path / "more"
    for folder in (db / "ipa", db / "rpa", more / "ipa"):
        folder.mkdir(parents=True)
        (folder / "a.json").write_text("{}")
    split = write_split_files({"a": "train", "b": "validation", "c": "test"}, tmp_path / "split")

    def key(*overrides):
        return ipa_checkpoint_path(cfg_train(tmp_path, "strategy=tl", "data.source=files", f"data.root={db}",
                                             *overrides)).name

    before, with_extra, with_split = key(), key(f"data.extra=[{more}]"), key(f"data.split={split}")
    assert key() == before and len({before, with_extra, with_split}) == 3
    # The extra folder grows, the split folder's ids change, the root stays as it was: each is a new model.
    (more / "ipa" / "b.json").write_text("{}")
    write_split_files({"a": "train", "b": "test", "c": "validation"}, split)
    assert key() == before and key(f"data.extra=[{more}]") != with_extra and key(f"data.split={split}") != with_split
    (db / "rpa" / "b.json").write_text("{}")  # a new RPA material: the auto split is placed over both rungs
    assert key() != before
    # Touched but not changed (a copy, a checkout): the same model.
    import os

    grown = key()
    os.utime(db / "rpa" / "b.json", (1, 1))
    assert key() == grown


@pytest.mark.parametrize("strategy", ["dl", "sc"])
def test_dl_and_sc_strategies(tmp_path, cache_dir, strategy, monkeypatch, cfg_train):
    compiled = []  # compile=true reaches the network (compiling itself is tested in test_model.py)
    monkeypatch.setattr("optimate_pl.training.train.compile_network", lambda model, *args: compiled.append(model))
    metrics = train(cfg_train(tmp_path, f"strategy={strategy}", "data.subset=60", f"compile={strategy == 'sc'}"))
    key = "test/sc_median" if strategy == "dl" else "test/ae_median"
    assert key in metrics and metrics["objective"] is not None
    assert [type(m).__name__ for m in compiled] == (["Optimate"] if strategy == "sc" else [])


def test_tl_from_published_state_dict_and_small_cells(tmp_path, cache_dir, cfg_train):
    import torch
    from optimate_pl.models import Optimate

    path = tmp_path / "published_ipa.pt"
    torch.save(Optimate().state_dict(), path)
    cfg = cfg_train(tmp_path, "strategy=tl", f"strategy.checkpoint={path}", "data.max_sites=4")
    metrics = run(cfg)
    assert "test/sc_median" in metrics


def test_a_studys_tl_checkpoint_composes_for_its_dl_and_sc_jobs(tmp_path, cfg_train):
    """The real-data studies pass strategy.checkpoint=.../eps_300.pt to every job of a preset that sweeps DL beside TL
    (efficiency) or trains SC models (sc_predictor): the DL and SC jobs ignore it instead of failing to compose."""
    from optimate_pl.config import resolve_config, start_checkpoint

    weights = tmp_path / "eps_300.pt"
    weights.write_bytes(b"not read by DL or SC")
    for strategy in ("dl", "sc"):
        cfg = resolve_config(cfg_train(tmp_path, f"strategy={strategy}", f"strategy.checkpoint={weights}"))
        assert start_checkpoint(cfg) is None  # starts at random, as DL and SC do


def test_help_and_cfg_job(tmp_path, cli):
    r = cli("--help", cwd=tmp_path)
    assert r.returncode == 0 and "strategy: dl, ipa, mf, mf_ipa, sc, tl" in r.stdout
    r = cli("strategy=dl", "data.subset=300", "--cfg", "job", cwd=tmp_path)
    assert r.returncode == 0 and "batch_size: 20" in r.stdout and "drop_last: true" in r.stdout


def test_wandb_goes_offline_only_without_a_key_or_a_chosen_mode(tmp_path, monkeypatch):
    """`wandb login` keeps the key in ~/.netrc, not in WANDB_API_KEY: such a user's runs go online; a run with no key
    anywhere goes offline (never a prompt or a hang); a WANDB_MODE the user set is kept."""
    from omegaconf import OmegaConf

    from optimate_pl.training.trainer import prepare_wandb

    cfg = OmegaConf.create({"logger": {"wandb": {}}})
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    prepare_wandb(cfg)
    assert os.environ["WANDB_MODE"] == "offline"  # no key anywhere
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    (tmp_path / ".netrc").chmod(0o600)
    prepare_wandb(cfg)
    assert "WANDB_MODE" not in os.environ  # logged in with `wandb login`: online
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.org")
    prepare_wandb(cfg)
    assert os.environ["WANDB_MODE"] == "offline"  # a key for another host is not this server's
    monkeypatch.setenv("WANDB_MODE", "online")
    prepare_wandb(cfg)
    assert os.environ["WANDB_MODE"] == "online"  # the user's choice


def test_wandb_offline_run_holds_the_metrics(tmp_path, cache_dir, cfg_train):
    os.environ.pop("WANDB_API_KEY", None)
    train(cfg_train(tmp_path, "strategy=dl", "data.subset=40", "logger=wandb"))
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    keys = (b"val/sc_median", b"test/sc_median", b"test/per_material")
    deadline = time.time() + 60  # wandb's service process writes the run file after finish() returns
    while True:
        blob = b"".join(p.read_bytes() for p in runs[0].rglob("*.wandb"))
        if all(k in blob for k in keys) or time.time() > deadline:
            break
        time.sleep(0.5)
    for key in keys:
        assert key in blob, key
    assert b"lr-Adam" in blob  # the learning rate, per epoch (LearningRateMonitor)
    run_id = runs[0].name.rsplit("-", 1)[-1].encode()
    assert b"model-" + run_id in blob and b"best.ckpt" in blob  # the best model logged as an artifact, offline


def test_wandb_tl_pretraining_is_its_own_run_in_the_same_group(tmp_path, cache_dir, cfg_train):
    from omegaconf import OmegaConf

    from optimate_pl.config import resolve_config
    from optimate_pl.training.pretrain import ipa_pretraining_config

    cfg = resolve_config(cfg_train(tmp_path, "strategy=tl", "data.subset=40", "logger=wandb",
                                   "logger.wandb.group=study-1"))
    ipa = ipa_pretraining_config(cfg)
    assert OmegaConf.select(ipa, "logger.wandb.group") == "study-1"
    assert OmegaConf.select(ipa, "logger.wandb.name") == OmegaConf.select(cfg, "logger.wandb.name") + "-ipa"
    assert "csv" in ipa.logger


@pytest.mark.slow
def test_ddp_two_cpu_processes_match_one_process(tmp_path, cache_dir, fast, cli):
    import torch
    from optimate_pl.models import Optimate

    torch.manual_seed(0)
    path = tmp_path / "weights.pt"
    torch.save(Optimate().state_dict(), path)
    common = ["strategy=tl", f"strategy.checkpoint={path}", "trainer.max_epochs=0", *fast[1:],
              f"paths.root_dir={tmp_path}"]
    one = cli(*common, "hydra.run.dir=one", cwd=tmp_path)
    assert one.returncode == 0, one.stderr[-3000:]
    two = cli(*common, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "hydra.run.dir=two",
              cwd=tmp_path)
    assert two.returncode == 0, two.stderr[-3000:]
    m1 = json.loads((tmp_path / "one" / "metrics.json").read_text())
    m2 = json.loads((tmp_path / "two" / "metrics.json").read_text())
    for key in ("test/sc_median", "test/mse_median", "test/ipa_sc_median"):
        assert m2[key] == pytest.approx(m1[key], rel=1e-5, abs=1e-6)
    # One output directory for the whole DDP run; the CSV holds every test material once.
    assert len((tmp_path / "two" / "test_results.csv").read_text().splitlines()) == 21
    assert not (tmp_path / "outputs").exists()


def test_seeded_cpu_runs_repeat(tmp_path, cache_dir, cfg_train):
    a = train(cfg_train(tmp_path / "a", "strategy=dl", "data.subset=40", "seed=7"))
    b = train(cfg_train(tmp_path / "b", "strategy=dl", "data.subset=40", "seed=7"))
    for key in ("val/loss", "test/sc_median", "test/mse_median"):
        assert a[key] == b[key], key


#: Every experiment preset (conf/experiment/) and the jobs its runs folder holds after a fast-budget run
#: (debug=fast: one batch per stage); None: a single run or campaign, checked by its exit code and outputs.
#: Left out, because the same wiring runs elsewhere (all of them compose in test_studies.py's
#: test_presets_and_launcher_compose, which checks the full grids' sizes):
#: - the quick twins that tests/studies/test_studies.py's runs already run (its reports need their outputs);
#: - a ``<name>_quick`` preset is ``<name>`` plus ``quick``'s trainer budget, which ``debug=fast`` replaces, so it
#:   runs what ``<name>`` runs; and ``quick`` alone is a TL run on the full synthetic data, as ``efficiency``'s TL cell;
#: - ``small_cells`` and ``sc_predictor``, whose quick twins the study tests run with the same jobs.
NOT_RUN_HERE = ("efficiency_quick", "small_cells_quick", "sc_predictor_quick", "uncertainty_quick",
                "active_learning_quick", "quick", "small_cells", "sc_predictor")
PRESETS = {p.stem: None for p in sorted((Path(__file__).parents[2] / "conf" / "experiment").glob("*.yaml"))
           if p.stem not in NOT_RUN_HERE}
PRESETS.update({"efficiency": 2, "backbones": 3, "gpaw_ladder": 4})
#: A fast budget is also a short campaign: two rounds of one repetition instead of ten rounds of three, on the
#: session's tiny synthetic data (scoring a full-size pool with an ensemble took most of a minute); one acquisition
#: (tests/uncertainty/test_active_learning.py runs every acquisition on the same data, in-process).
_TINY = [f"data.synthetic_sizes.ipa={TINY_SIZES['ipa']}", f"data.synthetic_sizes.rpa={TINY_SIZES['rpa']}"]
_CAMPAIGN = [*_TINY, "active_learning.initial=40", "active_learning.step=30", "active_learning.until=70",
             "active_learning.repetitions=1", "active_learning.acquisitions=[disagreement]"]
BUDGET = {"active_learning": _CAMPAIGN,
          # The full-size boundary: both strategies at all 4610 training materials of the synthetic data.
          "efficiency": ["study.subsets=4610"],
          "uncertainty": [*_TINY, "data.subset=60", "ensemble.size=2"],
          "gpaw_ladder": ["study.subsets='100,null'"],
          # One cell per backbone (plain MF starts from scratch: the study's strategy.checkpoint, TL's start, does not
          # reach it, so its folders are plain MF's): the grid's other runs repeat the same wiring.
          "backbones": ["study.subsets=100", "study.seeds=0", "study.strategies=mf"]}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_experiment_preset_runs_with_a_fast_budget(tmp_path, cache_dir, cli, preset):
    """The real presets (sizes up to 4610 on the full synthetic data), one batch per job."""
    import torch
    from optimate_pl.models import Optimate

    weights = tmp_path / "ipa.pt"
    torch.save(Optimate().state_dict(), weights)
    r = cli(f"experiment={preset}", "debug=fast", f"++strategy.checkpoint={weights}", "trainer.accelerator=cpu",
            "callbacks.progress_bar=null", "callbacks.model_summary=null", f"paths.root_dir={tmp_path}",
            "hydra.run.dir=run", *BUDGET.get(preset, []), cwd=tmp_path, timeout=600)
    assert r.returncode == 0, (preset, r.stderr[-3000:])
    written = list(tmp_path.rglob("metrics.json")) + list(tmp_path.rglob("campaign.csv"))
    assert written, (preset, r.stderr[-2000:])
    jobs = PRESETS[preset]
    if jobs is not None:
        runs = tmp_path / "experiments" / preset.removesuffix("_quick") / "runs"  # a twin writes where its study does
        assert len(list(runs.rglob("metrics.json"))) == jobs, preset
        if preset == "backbones":
            assert sorted(p.parent.name for p in runs.rglob("metrics.json")) == [
                "dimenet-mf-100-s0", "optimate-mf-100-s0", "visnet-mf-100-s0"]



def test_auto_precision_is_bf16_mixed_on_a_cpu_with_bf16_units(tmp_path, cfg_train, monkeypatch):
    from optimate_pl.config import resolve
    from optimate_pl.config.resolve import cpu_has_bf16, resolve_config

    # /proc/cpuinfo of an AVX512-BF16 EPYC (this machine), an older Xeon, and an Arm core with BF16.
    assert cpu_has_bf16("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 avx512_vnni\n")
    assert not cpu_has_bf16("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n")
    assert cpu_has_bf16("processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n")
    assert not cpu_has_bf16("")

    def precision(has_bf16: bool, *overrides) -> str:
        monkeypatch.setattr(resolve, "cpu_has_bf16", lambda: has_bf16)
        return resolve_config(cfg_train(tmp_path, "trainer.precision=auto", *overrides)).trainer.precision

    assert precision(True) == "bf16-mixed"
    assert precision(False) == "32-true"
    assert precision(True, "trainer.precision=32-true") == "32-true"  # an explicit choice is kept
    assert precision(True, "trainer.precision=32") == "32-true"  # under the name the trainer reports
    assert precision(False, "trainer.precision=bf16") == "bf16-mixed"


def test_the_auto_precision_is_announced_once_per_command(tmp_path, cfg_train, monkeypatch, caplog):
    """TL's IPA pretraining and a requeued resume derive configs from the resolved one: they inherit its
    precision and do not say it again (session 6 logged "training in bf16-mixed" three times a run)."""
    from optimate_pl.config import derive_config, resolve

    monkeypatch.setattr(resolve, "cpu_has_bf16", lambda: True)
    with caplog.at_level("INFO", logger="optimate_pl"):
        cfg = resolve.resolve_config(cfg_train(tmp_path, "trainer.precision=auto", "strategy=tl"))
        ipa = derive_config(cfg, strategy="ipa", keep_budget=False)
        derive_config(cfg, {"ckpt_path": "x.ckpt"})
    assert ipa.trainer.precision == "bf16-mixed"
    assert sum("training in bf16-mixed" in r.getMessage() for r in caplog.records) == 1


def test_the_readme_main_command_learns_the_builtin_gpaw_ladder_by_default(tmp_path, cache_dir, cli):
    """`python -m optimate_pl strategy=tl data.subset=300` with no data overrides trains on real physics: the
    built-in GPAW ladder has at least 300 RPA training materials in the published split, and every output names
    it. A budget of seconds (2 epochs, 1 of pretraining); the full run is `make run`."""
    from optimate_pl.models.card import read_card

    r = cli("strategy=tl", "data.subset=300", "strategy.pretrain_epochs=1", "trainer.max_epochs=2",
            "trainer.check_val_every_n_epoch=1", "trainer.accelerator=cpu", "trainer.precision=32-true",
            "callbacks.progress_bar=null", f"paths.root_dir={tmp_path}", "hydra.run.dir=run", cwd=tmp_path,
            timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "GPAW-computed" in r.stdout + r.stderr and "SYNTHETIC" not in r.stdout + r.stderr
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    card = read_card(metrics["best_checkpoint"])
    assert card["data"]["source"] == "gpaw" and not card["data"]["synthetic"]
    assert card["data"]["sizes"]["train"] == 300 and card["data"]["sizes"]["test"] >= 30
    assert 0.0 < metrics["test/ipa_sc_median"] < 1.0 and 0.0 < metrics["test/sc_median"] <= 1.0
    assert list((tmp_path / "checkpoints").glob("ipa-gpaw-*.ckpt"))


def test_the_slurm_launcher_is_refused_where_it_cannot_submit(monkeypatch):
    """launcher=slurm_cpu: without a sweep it trained here without a word; without SLURM it ended in a traceback."""
    import shutil

    from hydra import compose, initialize_config_module

    from optimate_pl.cli.common import check_launcher
    from optimate_pl.config import ConfigError

    with initialize_config_module("optimate_pl.conf", version_base="1.3"):
        cfg = compose("train", overrides=["launcher=slurm_cpu"], return_hydra_config=True)
        plain = compose("train", overrides=[], return_hydra_config=True)
    check_launcher(plain, multirun=False)  # no SLURM launcher: nothing to check
    with pytest.raises(ConfigError, match="submits the jobs of a sweep: add -m"):
        check_launcher(cfg, multirun=False)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="sbatch, which is not on this machine's PATH"):
        check_launcher(cfg, multirun=True)
