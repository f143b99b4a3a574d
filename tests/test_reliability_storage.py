"""Reliability, second pass: damaged inputs and caches, full disks, the wrong kind of checkpoint, processes.

Each class is tested with several instances of it; each test failed before its fix.
"""
import bz2
import errno
import gzip
import json
import logging
import lzma
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Lattice, Structure

import optimate_pl
from optimate_pl.utils.atomic import DiskFullError, checksum_path, file_lock, verify_file
from optimate_pl.data import synthetic
from optimate_pl.data.inputs import INCOMPLETE, InputError, InputItem, featurise_items
from optimate_pl.models import Optimate
from optimate_pl.inference.screening import OUTPUT_LOCK, load_predictions, run_prediction

from .conftest import TINY_SIZES

#: Small prediction runs: no worker processes, no figure; the small network of the `weights` fixture.
QUICK = dict(workers=0, plot=0)
SMALL = dict(node_widths=[16], gat_layers=[[16, 2]], out_widths=[64])


@pytest.fixture(scope="module")
def records():
    return synthetic.generate(0, ipa_sizes=(200, 40, 40), rpa_sizes=(100, 20, 20)).ipa[:40]


def entries_json(records) -> bytes:
    return json.dumps([synthetic.to_entry_dict(r, "ipa") for r in records]).encode()


COMPRESSIONS = {".json": lambda b: b, ".json.gz": gzip.compress, ".json.bz2": bz2.compress, ".json.xz": lzma.compress}


# -- damaged inputs -------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", list(COMPRESSIONS))
def test_an_input_cut_short_is_predicted_up_to_the_cut_and_named(tmp_path, weights, records, suffix):
    blob = COMPRESSIONS[suffix](entries_json(records))
    path = tmp_path / f"alexandria{suffix}"
    path.write_bytes(blob[: len(blob) * 3 // 4])  # a download cut short
    res = run_prediction(weights, path, tmp_path / "out", chunk_size=8, **QUICK)
    assert res["complete"] is False
    detail = res["incomplete_inputs"][path.name]
    n = int(detail.split("stream ends early after ")[1].split(" entries")[0])
    assert 0 < n < len(records) and res["n_inputs"] == res["n_predicted"] == n and res["n_skipped"] == 0
    out = tmp_path / "out"
    for name in ("materials.csv", "materials.parquet", "summary.json", "errors.csv"):
        assert (out / name).is_file(), name
    errors = pd.read_csv(out / "errors.csv")
    assert errors.reason.tolist() == [INCOMPLETE] and errors.source.tolist() == [path.name]
    assert f"stream ends early after {n} entries" in errors.detail[0]
    assert json.loads((out / "summary.json").read_text())["incomplete_inputs"] == {path.name: detail}
    # what was read is exactly the first n materials, predicted as the model predicts them
    materials, _, eps = load_predictions(out)
    assert materials.id.tolist() == [r.mat_id for r in records[:n]]
    expected = optimate_pl.load_model(weights).predict_structures([r.structure for r in records[:n]])
    np.testing.assert_allclose(eps, expected, rtol=1e-5, atol=1e-6)


def test_damaged_files_in_a_folder_never_stop_the_others(tmp_path, weights, records):
    folder = tmp_path / "in"
    folder.mkdir()
    records[0].structure.to(filename=str(folder / "a_good.cif"))
    with zipfile.ZipFile(folder / "b_db.zip", "w") as zf:
        for r in records[1:4]:
            zf.writestr(f"database/{r.mat_id}.json", json.dumps(synthetic.to_entry_dict(r, "ipa")))
    whole = (folder / "b_db.zip").read_bytes()
    (folder / "b_db.zip").write_bytes(whole[: len(whole) // 2])  # no central directory
    (folder / "c_junk.json.gz").write_bytes(b"this is not gzip at all")  # damaged from the first byte
    (folder / "d_one.json").write_text(json.dumps(synthetic.to_entry_dict(records[4], "ipa"))[:500])
    res = run_prediction(weights, folder, tmp_path / "out", chunk_size=2, **QUICK)
    assert res["n_predicted"] == 1 and res["complete"] is False
    assert sorted(res["incomplete_inputs"]) == ["b_db.zip", "c_junk.json.gz", "d_one.json"]
    assert all("stream ends early after 0 entries" in d for d in res["incomplete_inputs"].values())
    assert "BadGzipFile" in res["incomplete_inputs"]["c_junk.json.gz"]


def test_the_command_says_what_was_not_read_and_exits_non_zero(tmp_path, weights, records, predict_cli):
    blob = bz2.compress(entries_json(records))
    path = tmp_path / "cut.json.bz2"
    path.write_bytes(blob[: len(blob) * 3 // 4])
    r = predict_cli(f"checkpoint={weights}", f"input={path}", f"output={tmp_path / 'out'}", "workers=0", "plot=0",
                    cwd=tmp_path)
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "not everything was read: cut.json.bz2: stream ends early after" in r.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert f"predicted {summary['n_predicted']} of {summary['n_inputs']} materials" in r.stdout
    assert summary["n_predicted"] > 0 and (tmp_path / "out" / "materials.csv").is_file()


def test_every_kind_of_disorder_gets_the_disordered_reason(tmp_path, weights, records):
    cubic = Lattice.cubic(5.64)
    mixed = Structure(cubic, [{"Na": 0.5, "K": 0.5}, "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    vacancy = Structure(cubic, ["Na", {"Cl": 0.75}], [[0, 0, 0], [0.5, 0.5, 0.5]])
    over = mixed.as_dict()
    over["sites"][0]["species"] = [{"element": "Na", "occu": 0.8}, {"element": "K", "occu": 0.7}]
    mixed.to(filename=str(tmp_path / "mixed.cif"))
    vacancy.to(filename=str(tmp_path / "vacancy.cif"))
    text = (tmp_path / "mixed.cif").read_text()
    assert text.count("0.00000000  0.5\n") == 2
    (tmp_path / "over.cif").write_text(text.replace("0.00000000  0.5\n", "0.00000000  0.9\n"))  # sums to 1.8
    items = [InputItem("mixed", "a", "entry", {"structure": mixed.as_dict()}),
             InputItem("vacancy", "b", "entry", {"structure": vacancy.as_dict()}),
             InputItem("over", "c", "entry", {"structure": over}),
             InputItem("mixed_cif", "d", "file", str(tmp_path / "mixed.cif")),
             InputItem("vacancy_cif", "e", "file", str(tmp_path / "vacancy.cif")),
             InputItem("over_cif", "f", "file", str(tmp_path / "over.cif"))]
    results = featurise_items(items, 5.0, 0.5)
    assert [r.reason for r in results] == ["disordered"] * 6, results
    assert "site 0 is shared by several species (Na 0.5, K 0.5)" in results[0].detail
    assert "site 1 is a vacancy (occupancy below 1) (Cl 0.75)" in results[1].detail
    assert "sum to more than 1" in results[2].detail and "sum to > 1" in results[5].detail
    # The training data path too: a disordered record is skipped with the reason, not an AttributeError.
    from optimate_pl.data.build import featurize_records
    from optimate_pl.data.records import MaterialRecord

    bad = MaterialRecord("dis-1", "NaKCl2", mixed, np.zeros(2001, np.float32))
    store, skipped = featurize_records([records[0], bad, records[1]], workers=1)
    assert len(store) == 2 and [s.source for s in skipped] == ["dis-1"] and "shared by several" in skipped[0].reason
    # And in a prediction, counted under that reason.
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"structure": mixed.as_dict()}, {"structure": vacancy.as_dict()},
                                {"structure": over}, synthetic.to_entry_dict(records[0], "ipa")]))
    res = run_prediction(weights, path, tmp_path / "out", chunk_size=2, **QUICK)
    assert res["n_predicted"] == 1 and res["skipped_by_reason"] == {"disordered": 3} and res["complete"]


# -- damaged or full storage ----------------------------------------------------------------------

def _damage(path, how):
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "bytes changed":
        mid = len(data) // 2
        path.write_bytes(data[:mid] + bytes(b ^ 0xFF for b in data[mid:mid + 64]) + data[mid + 64:])
    elif how == "no checksum":
        checksum_path(path).unlink()
        path.write_bytes(data[: len(data) - 100])
    elif how == "emptied":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["truncated", "bytes changed", "no checksum", "emptied"])
def test_a_damaged_cache_file_is_rebuilt_under_the_lock_with_a_log_line(tmp_path, caplog, how):
    from optimate_pl.data import RPADataModule
    from optimate_pl.data.build import synthetic_stores
    from optimate_pl.data.store import GraphStore

    sizes = dict(ipa_sizes=TINY_SIZES["ipa"], rpa_sizes=TINY_SIZES["rpa"])
    paths = synthetic_stores(tmp_path, **sizes, workers=1)
    assert all(verify_file(p) is None for p in paths.values())
    good, _ = GraphStore.load(paths["rpa"])
    _damage(paths["rpa"], how)
    assert verify_file(paths["rpa"]) is not None
    with caplog.at_level(logging.WARNING):
        dm = RPADataModule(source="synthetic", cache_dir=str(tmp_path), synthetic_sizes=TINY_SIZES, batch_size=16)
        dm.setup()  # failed with PytorchStreamReader errors before, on every run until the file was deleted
    assert f"cache file {paths['rpa']} cannot be trusted" in caplog.text and "rebuilding it" in caplog.text
    assert verify_file(paths["rpa"]) is None
    rebuilt, _ = GraphStore.load(paths["rpa"])
    assert rebuilt.mat_id == good.mat_id and torch.equal(rebuilt.spectrum, good.spectrum)
    assert len(dm.train_set) + len(dm.val_set) + len(dm.test_set) == sum(TINY_SIZES["rpa"])


def test_a_damaged_figshare_cache_is_rebuilt(tmp_path, records, caplog):
    from optimate_pl.data.build import figshare_store

    root = tmp_path / "db"
    root.mkdir()
    for rec in records[:6]:
        (root / f"{rec.mat_id}.json").write_text(json.dumps(synthetic.to_entry_dict(rec, "ipa")))
    path = figshare_store("ipa", root, tmp_path / "cache", workers=1)
    stamp = path.stat().st_mtime_ns
    assert figshare_store("ipa", root, tmp_path / "cache", workers=1) == path and path.stat().st_mtime_ns == stamp
    _damage(path, "truncated")
    with caplog.at_level(logging.WARNING):
        assert figshare_store("ipa", root, tmp_path / "cache", workers=1) == path
    assert "cannot be trusted" in caplog.text and verify_file(path) is None


def test_a_damaged_automatic_ipa_checkpoint_is_pretrained_again(tmp_path, monkeypatch, caplog, cfg_train):
    import optimate_pl.training.train
    from optimate_pl.training.pretrain import ensure_ipa_checkpoint

    pretrainings = []

    def fake_pretraining(cfg, init_weights=None):  # what train() leaves: a best checkpoint
        pretrainings.append(cfg.paths.output_dir)
        torch.manual_seed(len(pretrainings))
        best = tmp_path / f"best-{len(pretrainings)}.pt"
        torch.save(Optimate(**SMALL).state_dict(), best)
        return {"best_checkpoint": str(best)}

    monkeypatch.setattr(optimate_pl.training.train, "train", fake_pretraining)
    cfg = cfg_train(tmp_path, "strategy=tl")
    target = ensure_ipa_checkpoint(cfg)
    assert len(pretrainings) == 1 and verify_file(target) is None
    assert ensure_ipa_checkpoint(cfg) == target and len(pretrainings) == 1  # reused
    for n, how in enumerate(["truncated", "bytes changed", "no checksum", "emptied"], start=2):
        _damage(target, how)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="optimate_pl"):
            assert ensure_ipa_checkpoint(cfg) == target
        assert len(pretrainings) == n, how
        assert f"the automatic IPA checkpoint {target} cannot be trusted" in caplog.text
        assert verify_file(target) is None
        assert optimate_pl.load_model(target).out_dim == 2001
    # A complete checkpoint of an earlier version (no checksum yet) is adopted, not pretrained again.
    checksum_path(target).unlink()
    assert ensure_ipa_checkpoint(cfg) == target and len(pretrainings) == 5 and verify_file(target) is None


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written (a disk filling up)."""

    def __init__(self, fh, room):
        self._fh, self._room = fh, room

    def write(self, data):
        self._room -= len(data)
        if self._room < 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self._fh.__exit__(*exc)


def fill_disk(monkeypatch, room=1000, only=None):
    """Writes through atomic_open fail with ENOSPC after ``room`` bytes (files named ``only*`` when given)."""
    import optimate_pl.utils.atomic as atomic

    real = os.fdopen
    state = {"fail": True}

    class FakeOs:
        def __getattr__(self, name):
            return getattr(os, name)

        @staticmethod
        def fdopen(fd, mode="r", *args, **kwargs):
            fh = real(fd, mode, *args, **kwargs)
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}")) if os.path.exists("/proc/self/fd") else ""
            if state["fail"] and (only is None or name.startswith(f".{only}")):
                return _FullDisk(fh, room)
            return fh

    monkeypatch.setattr(atomic, "os", FakeOs())
    return state


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or p.suffix in
                                                                          (".pt", ".ckpt", ".parquet")))


def test_a_full_disk_while_caching_says_where_and_how_much_and_leaves_nothing(tmp_path, monkeypatch):
    from optimate_pl.data.build import synthetic_stores

    sizes = dict(ipa_sizes=TINY_SIZES["ipa"], rpa_sizes=TINY_SIZES["rpa"])
    state = fill_disk(monkeypatch, room=100_000)
    with pytest.raises(DiskFullError) as info:
        synthetic_stores(tmp_path / "cache", **sizes, workers=1)
    message = str(info.value)
    assert message.startswith(f"no space left on the device: the folder {tmp_path / 'cache'} (")
    needed = float(message.split("needed about ")[1].split(" MiB")[0])
    assert needed >= 1.0  # the IPA store's tensors: 280 spectra of 2001 float32 alone are 2.1 MiB
    assert len(message.splitlines()) == 1 and leftovers(tmp_path / "cache") == []
    state["fail"] = False  # space freed: the next run builds it
    paths = synthetic_stores(tmp_path / "cache", **sizes, workers=1)
    assert all(verify_file(p) is None for p in paths.values())


def test_a_full_disk_while_predicting_leaves_no_table_a_later_run_trusts(tmp_path, monkeypatch, weights, records):
    path = tmp_path / "in.json"
    path.write_bytes(entries_json(records[:6]))
    state = fill_disk(monkeypatch, room=0, only="materials-")
    with pytest.raises(DiskFullError, match=rf"the folder {tmp_path / 'out' / 'shards'} \(.* free\); writing "
                                            r"materials-000000.parquet needed about"):
        run_prediction(weights, path, tmp_path / "out", chunk_size=3, **QUICK)
    out = tmp_path / "out"
    assert not (out / "materials.csv").exists() and not (out / "summary.json").exists()
    assert leftovers(out) == [] and not list(out.glob("shards/done-*"))
    state["fail"] = False
    res = run_prediction(weights, path, tmp_path / "out", chunk_size=3, **QUICK)
    assert res["n_predicted"] == 6 and res["complete"]


def test_a_full_disk_in_a_training_run_leaves_no_checkpoint(tmp_path, monkeypatch, cache_dir, cfg_train):
    from optimate_pl.training.train import train

    fill_disk(monkeypatch, room=10_000, only="best-")  # the best-checkpoint write (Lightning's, through ours)
    with pytest.raises(DiskFullError, match=r"checkpoints \(.* free\); writing best-000.ckpt needed about "
                                            r"\d+\.\d (KiB|MiB)"):
        train(cfg_train(tmp_path, "strategy=dl", "data.subset=40", "trainer.max_epochs=1"))
    assert not list((tmp_path / "run").rglob("*.ckpt")) and not list((tmp_path / "run").rglob("*.tmp"))


FULL_DISK = """
import errno, os, sys
import optimate_pl.utils.atomic as atomic
real = os.fdopen
class Full:
    def __init__(self, fh): self.fh = fh
    def write(self, data): raise OSError(errno.ENOSPC, "No space left on device")
    def __getattr__(self, name): return getattr(self.fh, name)
    def __enter__(self): return self
    def __exit__(self, *exc): return self.fh.__exit__(*exc)
class FakeOs:
    def __getattr__(self, name): return getattr(os, name)
    @staticmethod
    def fdopen(fd, mode="r", *a, **k):
        fh = real(fd, mode, *a, **k)
        return Full(fh) if os.path.basename(os.readlink(f"/proc/self/fd/{fd}")).startswith(".materials-") else fh
atomic.os = FakeOs()
from optimate_pl.cli import predict_main
sys.argv[0] = "optimate-pl-predict"
predict_main()
"""


def _tmpfs(path, size):
    path.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return r.returncode == 0


def test_the_commands_end_a_full_disk_in_one_line_with_exit_code_2(tmp_path, weights, records, cache_dir, cli):
    path = tmp_path / "in.json"
    path.write_bytes(entries_json(records[:4]))
    r = subprocess.run([sys.executable, "-c", FULL_DISK, f"checkpoint={weights}", f"input={path}",
                        f"output={tmp_path / 'out'}", "workers=0", "plot=0"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=300)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
    assert lines[-2].startswith(f"error: no space left on the device: the folder {tmp_path / 'out' / 'shards'}")
    assert "writing materials-000000.parquet needed about" in lines[-2]
    # A real full file system: a 1 MiB tmpfs for a training run (its checkpoints need more), when mounting works.
    small = tmp_path / "small"
    if not _tmpfs(small, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root); the mocked ENOSPC above covers the logic")
    try:
        r = cli("strategy=dl", "data.subset=40", "trainer.max_epochs=1", "trainer.check_val_every_n_epoch=1",
                "trainer.accelerator=cpu", "data.source=synthetic", f"data.synthetic_sizes.ipa={TINY_SIZES['ipa']}",
                f"data.synthetic_sizes.rpa={TINY_SIZES['rpa']}", "callbacks.progress_bar=null",
                f"hydra.run.dir={small / 'run'}", f"paths.root_dir={tmp_path}", cwd=tmp_path)
        assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-3000:]
        line = [x for x in r.stderr.splitlines() if x.startswith("error: ")][0]
        assert f"no space left on the device: the folder {small / 'run' / 'checkpoints'}" in line
        assert "needed about" in line and not list(small.rglob("*.ckpt")) and not list(small.rglob("*.tmp"))
    finally:
        subprocess.run(["umount", str(small)], check=False)


# -- the wrong kind of checkpoint -----------------------------------------------------------------

def sc_model(tmp_path, lightning=False):
    """An SC[RPA;IPA] model: one output per material (a published-layout file, or our checkpoint's layout)."""
    torch.manual_seed(0)
    net = Optimate(out_dim=1)
    path = tmp_path / ("sc.ckpt" if lightning else "sc_model.pt")
    if lightning:
        from optimate_pl.models.weights import infer_architecture

        arch = infer_architecture(net.state_dict())
        torch.save({"state_dict": {f"model.{k}": v for k, v in net.state_dict().items()},
                    "hyper_parameters": {"target": "sc_rpa_ipa", "net": arch}}, path)
    else:
        torch.save(net.state_dict(), path)
    return path


@pytest.mark.parametrize("extra", [[], ["ensemble.size=2"], ["experiment=active_learning_quick"]],
                         ids=["single", "ensemble", "active_learning"])
def test_an_sc_model_is_refused_as_the_start_of_a_spectrum_run(tmp_path, extra, cache_dir, cfg_train):
    from optimate_pl.config import ConfigError
    from optimate_pl.cli.train import run

    for path in (sc_model(tmp_path), sc_model(tmp_path, lightning=True)):
        cfg = cfg_train(tmp_path, "strategy=tl", f"strategy.checkpoint={path}", *extra)
        with pytest.raises(ConfigError, match=rf"strategy.checkpoint={path} is an SC\[RPA;IPA\] model \(one number "
                                              r"per material, target sc_rpa_ipa\); this run \(strategy=tl, "
                                              r"data.target=eps_imag\) needs a spectrum model \(Im ε on 2001"):
            run(cfg)
        assert not list((tmp_path / "run").rglob("*.ckpt")) and not (tmp_path / "run" / "config.yaml").exists()


def test_a_spectrum_model_is_refused_as_the_start_of_an_sc_run(tmp_path, weights, cache_dir, cfg_train, cli):
    from optimate_pl.config import ConfigError
    from optimate_pl.training.train import train

    cfg = cfg_train(tmp_path, "strategy=tl", f"strategy.checkpoint={weights}", "data.target=sc_rpa_ipa")
    with pytest.raises(ConfigError, match=r"is a spectrum model .* needs an SC\[RPA;IPA\] model .*strategy=sc"):
        train(cfg, init_weights=weights)  # the library call is checked too
    r = cli("strategy=tl", f"strategy.checkpoint={sc_model(tmp_path)}", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    errors = [line for line in r.stderr.splitlines() if line.startswith("error: ")]
    assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert errors[0].startswith("error: strategy.checkpoint=") and "is an SC[RPA;IPA] model" in errors[0]


def test_zero_epochs_from_random_weights_are_refused_and_from_given_weights_said(tmp_path, weights, cache_dir,
                                                                                   caplog, cfg_train, cli):
    from optimate_pl.config import ConfigError
    from optimate_pl.cli.train import run

    for args in (["strategy=dl", "trainer.max_epochs=0"], ["strategy=ipa", "trainer.max_epochs=0"],
                 ["strategy=sc", "trainer.max_steps=0"]):
        key = args[1].split("=")[0]
        with pytest.raises(ConfigError, match=rf"{key}=0 trains nothing: the test metrics would be those of random"):
            run(cfg_train(tmp_path, *args))
    r = cli("strategy=dl", "trainer.max_epochs=0", f"paths.root_dir={tmp_path}", cwd=tmp_path)
    assert r.returncode == 2 and "trainer.max_epochs=0 trains nothing" in r.stderr.splitlines()[0]
    # From given weights it evaluates them, and says so.
    with caplog.at_level(logging.WARNING, logger="optimate_pl"):
        metrics = run(cfg_train(tmp_path, "strategy=tl", f"strategy.checkpoint={weights}", "trainer.max_epochs=0"))
    assert f"nothing was trained (trainer.max_epochs=0): the test metrics are those of the initial weights " \
           f"{weights}" in caplog.text
    saved = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert saved["trained_steps"] == metrics["trained_steps"] == 0 and 0 < saved["test/sc_median"] <= 1


# -- processes and concurrency --------------------------------------------------------------------

def _children(pid):
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat))
    return out


def _alive(pid):
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _kill_and_watch(proc, expected_children, timeout=120):
    """Wait for ``expected_children`` child processes, kill -9 the parent, return the children still alive."""
    deadline = time.time() + timeout
    kids = []
    while time.time() < deadline and len(kids) < expected_children:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        kids = _children(proc.pid)
        time.sleep(0.2)
    assert len(kids) >= expected_children, kids
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 15
    while time.time() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.2)
    return [k for k in kids if _alive(k)]


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")
def test_workers_end_when_their_parent_is_killed(tmp_path, weights, records):
    path = tmp_path / "big.json"
    path.write_bytes(entries_json(records * 40))  # 1600 materials: minutes of work, killed early
    entry = "import sys; from optimate_pl.cli import predict_main; sys.argv[0] = 'optimate-pl-predict'; predict_main()"
    proc = subprocess.Popen([sys.executable, "-c", entry, f"checkpoint={weights}", f"input={path}",
                             f"output={tmp_path / 'out'}", "workers=1", "chunk_size=20", "plot=0"],
                            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # the featurising worker and multiprocessing's resource tracker
    assert _kill_and_watch(proc, expected_children=2) == []
    # The training side's pool (fork context) too: a process killed while featurising a database.
    script = ("import time\nfrom optimate_pl.utils.parallel import parallel_map\n"
              "parallel_map(time.sleep, [0.5] * 2000, workers=2)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    assert _kill_and_watch(proc, expected_children=2) == []


def test_a_second_prediction_into_the_same_folder_is_refused(tmp_path, weights, records, predict_cli):
    path = tmp_path / "in.json"
    path.write_bytes(entries_json(records[:6]))
    out = tmp_path / "out"
    out.mkdir()
    with file_lock(out / OUTPUT_LOCK):  # another prediction holds the folder
        with pytest.raises(InputError, match=rf"the output folder {out} is in use by another process"):
            run_prediction(weights, path, out, chunk_size=3, **QUICK)
        assert not (out / "run.json").exists()
    # Two real commands at once: the second is refused in a moment, the first finishes its tables.
    big = tmp_path / "big.json"
    big.write_bytes(entries_json(records * 5))
    release = tmp_path / "release"  # a long prediction: its first table waits until the second command has ended
    entry = ("import os, sys, time\nfrom optimate_pl.inference.stream import ShardWriter\nflush = ShardWriter._flush\n"
             f"def held(*a):\n    t = time.time()\n    while not os.path.exists({str(release)!r}) and time.time() < t + 120:\n"
             "        time.sleep(0.1)\n    return flush(*a)\nShardWriter._flush = held\n"
             "from optimate_pl.cli import predict_main\nsys.argv[0] = 'optimate-pl-predict'\npredict_main()\n")
    first = subprocess.Popen([sys.executable, "-c", entry, f"checkpoint={weights}", f"input={big}",
                              f"output={tmp_path / 'both'}", "workers=0", "chunk_size=20", "plot=0"], cwd=tmp_path,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (tmp_path / "both" / "run.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    second = predict_cli(f"checkpoint={weights}", f"input={big}", f"output={tmp_path / 'both'}", "workers=0",
                         cwd=tmp_path)
    lines = second.stderr.strip().splitlines()  # the command's one-line error (and the --verbose-errors hint)
    assert second.returncode == 2 and lines[0].startswith(f"error: the output folder {tmp_path / 'both'} is in use by "
                                                          f"another process") and len(lines) == 2, second.stderr[-2000:]
    release.touch()
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    summary = json.loads((tmp_path / "both" / "summary.json").read_text())
    assert summary["n_predicted"] == 200 and len(pd.read_csv(tmp_path / "both" / "materials.csv")) == 200
    # The lock goes with its holder: the same command again resumes (every chunk done) instead of being refused.
    res = run_prediction(weights, big, tmp_path / "both", chunk_size=20, **QUICK)
    assert res["n_predicted"] == 200
