"""Which materials optimate-pl-compute takes on, in which order (no GPAW needed): size order, the gap
pre-filter, ids lists (next_rpa's ranking), chunks of an array job, what counts as done, and that a worker yields
the CPU."""
from __future__ import annotations

import json
import os

import pytest

from optimate_pl.data.entries import entry_file_name
from optimate_pl.dft.compute import ComputeOptions, Workdir, read_ids, select, validate_options
from optimate_pl.data.inputs import InputItem


def items():
    spec = [("a", 4, 2.0), ("b", 1, 3.0), ("c", 2, 0.2), ("d", 2, 1.5), ("e", 3, 4.0), ("f", 1, 6.0)]
    return [InputItem(m, f"x.json#{i}", "entry", {"data": {"mat_id": m, "nsites": n, "band_gap_ind": g}})
            for i, (m, n, g) in enumerate(spec)]


def test_size_order_gap_filter_and_max_sites(tmp_path):
    wd = Workdir(tmp_path, "both")
    todo, dropped = select(items(), ComputeOptions("x", str(tmp_path), order="size", max_sites=3), wd)
    assert [it.id for it in todo] == ["b", "f", "d", "e"]  # smallest first, input order within a size
    assert [(it.id, why) for it, why, _ in dropped] == [("c", "small_gap")]
    todo, _ = select(items(), ComputeOptions("x", str(tmp_path), min_gap_eV=None), wd)
    assert [it.id for it in todo] == ["a", "b", "c", "d", "e", "f"]


def test_a_zip_of_entries_is_selected_as_a_folder_of_them(tmp_path):
    """The authors' databases come as .zip files: their members' nsites and band_gap_ind order and filter the run as
    a JSON file's entries do (a zip was computed in archive order, its small-gap materials each costing a ground
    state)."""
    import zipfile

    from optimate_pl.data.inputs import iter_inputs

    with zipfile.ZipFile(tmp_path / "db.zip", "w") as zf:
        for item in items():
            zf.writestr(f"{item.id}.json", json.dumps(item.payload))
    wd = Workdir(tmp_path / "out", "both")
    todo, dropped = select(iter_inputs(tmp_path / "db.zip"), ComputeOptions("x", str(tmp_path), order="size",
                                                                             max_sites=3), wd)
    assert [it.id for it in todo] == ["b", "f", "d", "e"] and [it.id for it, _, _ in dropped] == ["c"]


def test_ids_file_orders_and_restricts(tmp_path):
    ranked = tmp_path / "next_rpa.csv"
    ranked.write_text("rank,mat_id,score\n1,e,0.9\n2,a,0.8\n3,zz,0.7\n")
    assert read_ids(ranked) == ["e", "a", "zz"]
    (tmp_path / "ids.txt").write_text("# chosen\nd\nb\n")
    assert read_ids(tmp_path / "ids.txt") == ["d", "b"]
    wd = Workdir(tmp_path / "out", "both")
    todo, _ = select(items(), ComputeOptions("x", str(tmp_path), ids=str(ranked), order="size"), wd)
    assert [it.id for it in todo] == ["e", "a"]  # the ranking's order, not size order; unknown ids ignored


def test_chunks_partition_and_done_materials_are_skipped(tmp_path):
    out = tmp_path / "out"
    chunks = [select(items(), ComputeOptions("x", str(out), chunk=f"{i}/3", min_gap_eV=None),
                     Workdir(out, "both", f"{i}/3"))[0] for i in range(3)]
    ids = [it.id for c in chunks for it in c]
    assert sorted(ids) == ["a", "b", "c", "d", "e", "f"] and len(set(ids)) == 6
    # b finished (its IPA and RPA entries), d failed in another chunk for a reason of its own, e timed out.
    for kind in ("ipa", "rpa"):
        (out / kind).mkdir(exist_ok=True)
        (out / kind / "b.json").write_text(json.dumps({"structure": {}, "data": {"mat_id": "b"}}))
    (out / "errors-1-of-3.csv").write_text("id,source,reason,message,seconds\n"
                                           "d,x,not_insulator,metal,1\ne,x,time_limit,slow,900\n")
    todo, _ = select(items(), ComputeOptions("x", str(out), min_gap_eV=None), Workdir(out, "both"))
    assert [it.id for it in todo] == ["a", "c", "f"]
    todo, _ = select(items(), ComputeOptions("x", str(out), min_gap_eV=None, retry_failed=True), Workdir(out, "both"))
    assert [it.id for it in todo] == ["a", "c", "e", "f"]  # a time-out is retried on request, a metal never


def test_damaged_entries_are_computed_again(tmp_path):
    out = tmp_path / "out"
    wd = Workdir(out, "both")
    whole = json.dumps({"structure": {"lattice": {}}, "data": {"mat_id": "a"}})
    (out / "ipa" / "a.json").write_text(whole)
    (out / "rpa" / "a.json").write_text(whole)
    (out / "rpa" / "b.json").write_text(whole[:20])          # cut short (a full disk, a killed copy)
    (out / "rpa" / "c.json").write_text("[1, 2]")            # JSON, but no entry
    (out / "rpa" / "d.json").write_bytes(b"\x00" * 64)       # zeros from a crashed file system
    todo, _ = select(items(), ComputeOptions("x", str(out), min_gap_eV=None), wd)
    assert [it.id for it in todo] == ["b", "c", "d", "e", "f"]
    assert sorted(p.name for p in (out / "rpa").iterdir()) == ["a.json", "b.json.damaged", "c.json.damaged",
                                                               "d.json.damaged"]


def test_one_id_one_file_name():
    ids = ["a b", "a_b", "a/b", "a%20b", ".hidden", "Fe₂O₃", "agm001234567", "x+y-z.1"]
    names = [entry_file_name(m) for m in ids]
    assert len(set(names)) == len(ids)                        # injective: never two ids to one file
    assert names[0] == "a%20b.json" and names[1] == "a_b.json" and names[3] == "a%2520b.json"
    assert names[4] == "%2Ehidden.json" and names[6] == "agm001234567.json" and names[7] == "x+y-z.1.json"
    assert all("/" not in n and not n.startswith(".") for n in names)


@pytest.mark.parametrize("setting, value, said", [
    ("time_limit_s", "abc", "time_limit_s='abc': give a positive number"), ("time_limit_s", 0, "positive number"),
    ("nice", "abc", "nice='abc': give a whole number, 0..19"), ("nice", 25, "0..19"),
    ("workers", "abc", "workers='abc': give a whole number"), ("workers", 0, "at least 1"),
    ("mpi_procs", "two", "mpi_procs='two'"), ("mpi_procs", 3, "needs 3 cores; this machine gives this process 2"),
    ("chunk", "a/b", "chunk='a/b': give i/n"), ("chunk", "2/2", "0 <= i < n"), ("chunk", "1", "give i/n"),
    ("limit", -1, "limit=-1: give a whole number, at least 1"), ("max_sites", 0, "max_sites=0"),
    ("order", "random", "order='random': use input or size"), ("level", "rpa", "level='rpa': use ipa or both"),
])
def test_settings_are_refused_before_any_work(setting, value, said, monkeypatch):
    from optimate_pl.utils import parallel

    monkeypatch.setattr(parallel, "usable_cores", lambda: 2)
    with pytest.raises(ValueError) as err:
        validate_options(ComputeOptions("x", "y", **{setting: value}))
    assert said in str(err.value)
    assert validate_options(ComputeOptions("x", "y", workers=2, chunk="1/3", limit=5)).workers == 2


def test_a_niced_worker_yields_across_sessions(tmp_path):
    """A worker starts its own session; with autogroups (Linux) that is its own scheduling group, where a plain
    nice value ranks nothing else: the group's nice must be lowered too, or each worker takes a full core's
    share from the user's work."""
    import subprocess
    import sys
    from functools import partial
    from pathlib import Path

    from optimate_pl.dft.runner import _worker_setup

    if not Path("/proc/self/autogroup").is_file():
        pytest.skip("no scheduler autogroups on this kernel")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                             preexec_fn=partial(_worker_setup, 7), start_new_session=True)
    try:
        group = Path(f"/proc/{child.pid}/autogroup").read_text()
        assert group.split()[-1] == "7", group
        assert os.getpriority(os.PRIO_PROCESS, child.pid) == os.getpriority(os.PRIO_PROCESS, 0) + 7
    finally:
        child.kill()
        child.wait()


def test_the_time_limit_counts_computing_time_not_pauses_or_shared_cores():
    """`kill -STOP` of a compute run (to time something else on the machine) or other jobs on the same cores must
    not fail its materials: the limit counts the CPU seconds the worker computes. One that computes past it is
    stopped, and one that hangs without computing is stopped at WALL_FACTOR times the limit."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    from optimate_pl.dft.runner import WALL_FACTOR, communicate_within

    def start(code: str) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    busy = "import time\nt = time.process_time()\nwhile time.process_time() - t < {}: pass"
    # 0.5 s asleep, stopped for 3 s in between: 3.5 s on the clock, beyond the wall cap of a 0.25 s limit (2 s)
    # unless the pause is left out, as it must be.
    paused = start("import time; time.sleep(0.5)")
    time.sleep(0.2)
    paused.send_signal(signal.SIGSTOP)
    threading.Timer(3.0, paused.send_signal, (signal.SIGCONT,)).start()
    t0 = time.monotonic()
    communicate_within(paused, 0.25)
    assert paused.returncode == 0 and time.monotonic() - t0 > 3.0 > WALL_FACTOR * 0.25
    # Waiting (as a worker does while others hold the cores) uses no computing time: 2.5 s within a 1 s limit.
    waiting = start("import time; time.sleep(2.5)")
    communicate_within(waiting, 1.0)
    assert waiting.returncode == 0
    # Computing without end, in a grandchild (a rank under mpiexec): stopped once its CPU seconds pass the limit.
    spinning = start(f"import subprocess, sys; subprocess.run([sys.executable, '-c', {busy.format(60)!r}])")
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        communicate_within(spinning, 1.0)
    assert time.monotonic() - t0 < 4.5
    import psutil

    for p in psutil.Process(spinning.pid).children(recursive=True):
        p.kill()
    spinning.kill()
    spinning.communicate()
    # Two ranks: the limit is per rank, so 1.5 CPU seconds in all are within a 1 s limit.
    two = start(busy.format(1.5))
    communicate_within(two, 1.0, procs=2)
    assert two.returncode == 0
    # Hanging without computing: stopped at WALL_FACTOR times the limit on the clock.
    hanging = start("import time; time.sleep(60)")
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        communicate_within(hanging, 0.25)
    assert WALL_FACTOR * 0.25 <= time.monotonic() - t0 < WALL_FACTOR * 0.25 + 3
    hanging.kill()
    hanging.communicate()


POSCAR = "{name}\n1.0\n{a} 0 0\n0 {a} 0\n0 0 {a}\n{species}\n{counts}\nDirect\n{coords}"


def poscar(path, n: int) -> None:
    """A cubic POSCAR of ``n`` sites (Na and Cl alternating along the diagonal)."""
    coords = "\n".join(f"{i / n:.3f} {i / n:.3f} {i / n:.3f}" for i in range(n)) + "\n"
    na, cl = (n + 1) // 2, n // 2
    path.write_text(POSCAR.format(name=path.stem, a=3.0 * n, species="Na Cl" if cl else "Na",
                                  counts=f"{na} {cl}" if cl else f"{na}", coords=coords))


def test_size_order_reads_structure_files_and_ids_files_may_be_gzipped(tmp_path):
    """order=size and max_sites once ignored POSCAR/CIF input (their size is known only when read)."""
    import gzip

    from optimate_pl.data.inputs import iter_inputs

    for name, n in (("big", 4), ("one", 1), ("three", 3), ("two", 2)):
        poscar(tmp_path / f"{name}.vasp", n)
    wd = Workdir(tmp_path / "out", "both")
    todo, _ = select(iter_inputs(tmp_path), ComputeOptions(str(tmp_path), "out", order="size"), wd)
    assert [it.id for it in todo] == ["one.vasp", "two.vasp", "three.vasp", "big.vasp"]
    todo, _ = select(iter_inputs(tmp_path), ComputeOptions(str(tmp_path), "out", max_sites=2), wd)
    assert [it.id for it in todo] == ["one.vasp", "two.vasp"]
    (tmp_path / "ids.txt.gz").write_bytes(gzip.compress(b"three.vasp\nbig.vasp\n"))
    (tmp_path / "rank.csv.gz").write_bytes(gzip.compress(b"rank,mat_id\n1,two.vasp\n"))
    assert read_ids(tmp_path / "ids.txt.gz") == ["three.vasp", "big.vasp"]
    assert read_ids(tmp_path / "rank.csv.gz") == ["two.vasp"]
    (tmp_path / "cut.txt.gz").write_bytes(gzip.compress(b"a\nb\n" * 100)[:20])
    with pytest.raises(ValueError, match=r"ids=.*cut.txt.gz: not a readable text or .gz file \(EOFError"):
        read_ids(tmp_path / "cut.txt.gz")


def test_subfolders_not_searched_are_named(tmp_path, caplog):
    from optimate_pl.data.inputs import iter_inputs

    poscar(tmp_path / "top.vasp", 2)
    for sub in ("batch1", "batch2"):
        (tmp_path / sub).mkdir()
        poscar(tmp_path / sub / "inner.vasp", 2)
    with caplog.at_level("WARNING"):
        assert [it.id for it in iter_inputs(tmp_path)] == ["top.vasp"]
    assert "2 subfolder(s) not searched (e.g. batch1); add recursive=true" in caplog.text
    caplog.clear()
    assert len(list(iter_inputs(tmp_path, recursive=True))) == 3 and "not searched" not in caplog.text


class _Result:
    positions = [[0, 0, 0]]
    core_seconds, times = 1.0, {"total": 1.0}


def _fake_compute(monkeypatch, free):
    """compute() with the DFT replaced by a stub and the disk's free bytes given by ``free()``."""
    import shutil
    from collections import namedtuple

    from optimate_pl.dft import compute as mod

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(mod, "gpaw_python", lambda _: ("python", "stub"))
    monkeypatch.setattr(mod, "_compute_entries", lambda item, *a: (
        {"ipa": {"structure": {}, "data": {"mat_id": item.id}}, "rpa": {"structure": {}, "data": {"mat_id": item.id}}},
        _Result()))
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(1 << 40, 0, free()))
    return mod


def test_a_nearly_full_disk_stops_the_run_before_a_material_not_after(tmp_path, monkeypatch):
    from optimate_pl.utils.atomic import DiskFullError

    checks = iter([1 << 40] * 2 + [1 << 20] * 100)  # enough at the start (output, scratch), not after material a
    mod = _fake_compute(monkeypatch, lambda: next(checks))
    out = tmp_path / "out"
    with pytest.raises(DiskFullError, match=rf"no space for the entries of the next material: the folder {out} has "
                                            r"1.0 MiB free, 16.0 MiB needed"):
        mod.compute(_opts(tmp_path, out), progress=False)
    assert sorted(p.name for p in (out / "rpa").iterdir()) == ["a.json"]  # the finished one written, b not started
    mod = _fake_compute(monkeypatch, lambda: 1 << 20)
    with pytest.raises(DiskFullError, match="needed. Free some space there or choose another folder, then run the command again"):
        mod.compute(_opts(tmp_path, out), progress=False)


def _opts(tmp_path, out):
    import json as _json

    src = tmp_path / "in.json"
    src.write_text(_json.dumps([{"structure": {}, "data": {"mat_id": m, "nsites": 1}} for m in "abc"]))
    return ComputeOptions(str(src), str(out), min_gap_eV=None)


def test_chunks_share_the_folder_but_not_with_a_whole_folder_run(tmp_path, monkeypatch):
    """A chunk run once took only its own lock: a whole-folder run beside the array job computed the same materials."""
    from optimate_pl.utils.atomic import LockedError, file_lock

    mod = _fake_compute(monkeypatch, lambda: 1 << 40)
    out = tmp_path / "out"
    out.mkdir()
    with file_lock(out / ".compute.lock", shared=True), file_lock(out / ".compute-0-of-2.lock"):  # chunk 0 running
        assert mod.compute(ComputeOptions(**{**vars(_opts(tmp_path, out)), "chunk": "1/2"}),
                           progress=False)["this_run"]["computed"] == 1  # another chunk: fine
        with pytest.raises(LockedError, match=f"output folder {out} \\(chunk 0/2\\) is in use"):
            mod.compute(ComputeOptions(**{**vars(_opts(tmp_path, out)), "chunk": "0/2"}), progress=False)
        with pytest.raises(LockedError, match=f"output folder {out} is in use by another process"):
            mod.compute(_opts(tmp_path, out), progress=False)
    with file_lock(out / ".compute.lock"):  # a whole-folder run
        with pytest.raises(LockedError, match=f"output folder {out} is in use"):
            mod.compute(ComputeOptions(**{**vars(_opts(tmp_path, out)), "chunk": "0/2"}), progress=False)


def test_materials_left_out_by_a_setting_are_computed_when_it_changes(tmp_path):
    """max_sites and min_gap_eV once recorded their materials as failed for good: a run with other settings (and
    retry_failed=true) computed nothing."""
    out = tmp_path / "out"
    wd = Workdir(out, "both")
    _, dropped = select(items(), ComputeOptions("x", str(out)), wd)
    for item, reason, message in dropped:
        wd.record_failure(item, reason, message, 0.0)
    wd.record_failure(items()[0], "too_large", "4 sites > max_sites=3", 0.0)
    wd.record_failure(items()[4], "not_insulator", "a metal", 10.0)
    again = Workdir(out, "both")
    todo, _ = select(items(), ComputeOptions("x", str(out), min_gap_eV=None, max_sites=6), again)
    assert [it.id for it in todo] == ["a", "b", "c", "d", "f"]  # c (gap) and a (size) again; e is a metal


def test_the_local_field_basis_has_a_floor_in_g_vectors():
    """A 30 eV cutoff kept 1 G-vector for c-BN (no local fields: RPA = IPA). The floor raises the cutoff of small
    cells until at least min_G G-vectors are in; the reference is the simple-cubic shell structure, whose shells
    |G|² = (2π/a)² x 0, 1, 2, 3, 4 hold 1, 6, 12, 8, 6 vectors."""
    import importlib.util
    from pathlib import Path

    import numpy as np

    import optimate_pl.dft as dft

    spec = importlib.util.spec_from_file_location("gpaw_worker", Path(dft.__file__).parent / "gpaw_worker.py")
    worker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(worker)  # numpy only at import: GPAW is imported inside compute()
    a, hartree, bohr = 3.0, 27.211386245988, 0.529177210903
    unit = 0.5 * (2 * np.pi / a * bohr) ** 2 * hartree  # |G|²/2 of the first shell, eV (16.7 eV at a = 3 Å)
    cell = np.eye(3) * a
    assert worker.local_field_cutoff(cell, 5.0, 1) == 5.0                       # no floor: the cutoff as given
    assert worker.local_field_cutoff(cell, 5.0, 7) == pytest.approx(unit, rel=1e-5)       # G = 0 and 6 neighbours
    assert worker.local_field_cutoff(cell, 5.0, 15) == pytest.approx(2 * unit, rel=1e-5)  # the 12 of shell 2 too
    assert worker.local_field_cutoff(cell, 5.0, 27) == pytest.approx(3 * unit, rel=1e-5)
    assert worker.local_field_cutoff(cell, 500.0, 15) == 500.0                  # a large cutoff is never lowered
    big = np.eye(3) * 12.0  # a large cell already holds many G-vectors at 30 eV: unchanged
    assert worker.local_field_cutoff(big, 30.0, 15) == 30.0
    # The convergence check compares with the G-vectors within half the cutoff: with a floor of 15 that basis
    # holds more than G = 0 (the 7 of shell 1 here), so a basis with no local fields no longer passes unseen.
    assert worker.local_field_cutoff(cell, 5.0, 15) / 2 >= unit * (1 - 1e-6)


def test_the_commands_settings_are_the_ladder_settings():
    """conf/compute.yaml lists every GPAW setting with LadderSettings' default (a key missing there cannot be set on
    the command line: Hydra refuses it), and the command hands them on unchanged."""
    from hydra import compose, initialize_config_module

    from optimate_pl.dft.compute import options_from_config
    from optimate_pl.dft.settings import LadderSettings

    with initialize_config_module("optimate_pl.conf", version_base="1.3"):
        cfg = compose("compute", overrides=["input=x", "output=y", "settings.eigenstates_tol=0.5", "settings.basis=dzp"])
    defaults = LadderSettings().as_dict()
    assert set(cfg.settings) == set(defaults)
    for key, value in defaults.items():
        if key not in ("eigenstates_tol", "basis"):
            assert cfg.settings[key] == value, key
    _, settings = options_from_config(cfg)
    assert settings == LadderSettings(eigenstates_tol=0.5, basis="dzp")


def test_a_damaged_ipa_entry_beside_a_whole_rpa_one_is_computed_again(tmp_path):
    """level=both counted a material done by its RPA entry alone: a damaged IPA entry was never recomputed, and every
    pack of the folder failed on it."""
    out = tmp_path / "out"
    wd = Workdir(out, "both")
    whole = json.dumps({"structure": {"lattice": {}}, "data": {"mat_id": "a"}})
    for kind in ("ipa", "rpa"):
        (out / kind / "a.json").write_text(whole)
        (out / kind / "b.json").write_text(whole)
    (out / "ipa" / "a.json").write_text(whole[:20])
    todo, _ = select(items(), ComputeOptions("x", str(out), min_gap_eV=None), wd)
    assert [it.id for it in todo] == ["a", "c", "d", "e", "f"]
    assert sorted(p.name for p in (out / "ipa").iterdir()) == ["a.json.damaged", "b.json"]
    # level=ipa needs the IPA entry alone.
    (out / "ipa" / "c.json").write_text(whole)
    assert Workdir(out, "ipa").done("c", retry_failed=False) and not Workdir(out, "both").done("c", retry_failed=False)


def test_a_failure_after_the_dft_is_retried_on_request_an_unreadable_structure_never(tmp_path, monkeypatch):
    """Any ValueError after GPAW had finished (making the entries) was recorded as an unreadable input: skipped for
    good, even with retry_failed=true."""
    import csv

    from optimate_pl.dft import compute as mod

    monkeypatch.setattr(mod, "gpaw_python", lambda _: ("python", "stub"))
    monkeypatch.setattr(mod, "run_material", lambda *a, **k: _Result())

    def no_entry(*a):
        raise ValueError("no RPA rung in the output")

    monkeypatch.setattr(mod, "rpa_entry", no_entry)
    monkeypatch.setattr(mod, "ipa_entry", lambda *a: {"structure": {}, "data": {}})
    src = tmp_path / "in.json"
    good = {"lattice": {"matrix": [[3, 0, 0], [0, 3, 0], [0, 0, 3]]},
            "sites": [{"species": [{"element": "Na", "occu": 1}], "abc": [0, 0, 0]}]}
    src.write_text(json.dumps([{"structure": good, "data": {"mat_id": "a", "nsites": 1}},
                               {"structure": {"lattice": "nonsense"}, "data": {"mat_id": "b", "nsites": 1}}]))
    out = tmp_path / "out"
    mod.compute(ComputeOptions(str(src), str(out), min_gap_eV=None), progress=False)
    reasons = {r["id"]: r["reason"] for r in csv.DictReader((out / "errors.csv").open())}
    assert reasons == {"a": "after_dft", "b": "unreadable"}
    todo, _ = select(mod.iter_inputs(str(src)), ComputeOptions(str(src), str(out), min_gap_eV=None, retry_failed=True),
                     Workdir(out, "both"))
    assert [it.id for it in todo] == ["a"]


def test_a_run_with_other_settings_than_the_previous_one_is_told(tmp_path, monkeypatch, caplog):
    """A resumed IPA-rung run that forgot settings.pw_cutoff_eV=350 would add PW-400 entries to a PW-350 folder
    without a word (materials are never recomputed, so nothing else shows it)."""
    import logging

    from optimate_pl.dft.settings import LadderSettings

    mod = _fake_compute(monkeypatch, lambda: 1 << 40)
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        mod.compute(_opts(tmp_path, out), LadderSettings(pw_cutoff_eV=350.0), progress=False)
        assert "previous run" not in caplog.text  # a first run: nothing to compare with
        assert mod.settings_drift(out, LadderSettings(pw_cutoff_eV=350.0)) == {}
        (out / "rpa" / "a.json").unlink()  # one material left to compute
        mod.compute(_opts(tmp_path, out), progress=False)
    assert "the previous run into it used pw_cutoff_eV=350.0; this run uses pw_cutoff_eV=400.0" in caplog.text
    assert mod.settings_drift(out, LadderSettings()) == {}  # this run's are now the previous ones


def test_a_background_run_logs_how_far_it_is(tmp_path, monkeypatch, caplog):
    """Without a terminal there is no progress bar: each material's log line says how many of the run's are done and
    about how long the rest takes (this run's wall time per material times the ones left)."""
    import logging

    from optimate_pl.dft.compute import progress_line

    assert progress_line(12, 1866, 600.0) == "12/1866, about 25.8 h left"  # 50 s a material, 1854 left: 25.75 h
    assert progress_line(3, 10, 90.0) == "3/10, about 4 min left"  # 30 s a material, 7 left: 210 s
    assert progress_line(10, 10, 90.0) == "10/10" and progress_line(0, 10, 0.0) == "0/10"
    mod = _fake_compute(monkeypatch, lambda: 1 << 40)
    with caplog.at_level(logging.INFO):
        mod.compute(_opts(tmp_path, tmp_path / "out"), progress=False)
    lines = [r.getMessage() for r in caplog.records if "core-s" in r.getMessage()]
    assert [line.split("[")[-1].split(",")[0].rstrip("]") for line in lines] == ["1/3", "2/3", "3/3"]
    assert lines[0].startswith("a: 1 sites, 1.0 core-s") and "left]" in lines[0]
