"""Which materials optimate-pl-compute takes on, in which order (no GPAW needed): size order, the gap
pre-filter, ids lists (next_rpa's ranking), chunks of an array job, what counts as done, and that a worker yields
the CPU."""
from __future__ import annotations

import json
import os

import pytest

from optimate_pl.dft.compute import ComputeOptions, Workdir, read_ids, select
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
    # b finished (its RPA entry), d failed in another chunk for a reason of its own, e timed out.
    (out / "rpa" / "b.json").write_text(json.dumps({}))
    (out / "errors-1-of-3.csv").write_text("id,source,reason,message,seconds\n"
                                           "d,x,not_insulator,metal,1\ne,x,time_limit,slow,900\n")
    todo, _ = select(items(), ComputeOptions("x", str(out), min_gap_eV=None), Workdir(out, "both"))
    assert [it.id for it in todo] == ["a", "c", "f"]
    todo, _ = select(items(), ComputeOptions("x", str(out), min_gap_eV=None, retry_failed=True), Workdir(out, "both"))
    assert [it.id for it in todo] == ["a", "c", "e", "f"]  # a time-out is retried on request, a metal never


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


def test_the_time_limit_counts_running_time_not_pauses():
    """`kill -STOP` of a compute run (to time something else on the machine) must not fail its materials: the
    limit counts the seconds a worker could run. A worker that runs past it is still stopped."""
    import signal
    import subprocess
    import sys
    import threading
    import time

    from optimate_pl.dft.runner import communicate_within

    sleeper = [sys.executable, "-c", "import time; time.sleep(3)"]
    paused = subprocess.Popen(sleeper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)
    paused.send_signal(signal.SIGSTOP)  # stopped 3.5 s: 3.8 s of wall time in all, ~0.3 s of it running
    threading.Timer(3.5, paused.send_signal, (signal.SIGCONT,)).start()
    t0 = time.monotonic()
    communicate_within(paused, 2.5)
    assert paused.returncode == 0 and time.monotonic() - t0 > 3.0
    running = subprocess.Popen(sleeper, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        communicate_within(running, 1.5)
    assert time.monotonic() - t0 < 2.9
    running.kill()
    running.communicate()
