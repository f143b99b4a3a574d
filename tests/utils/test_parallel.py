"""The warning for torch threads on cores that other processes hold."""
from optimate_pl.utils.parallel import busy_cores_warning


def test_threads_on_busy_cores_are_warned_about_with_the_remedy():
    # A background job on one of 2 cores (running now, load ~1): 2 threads crawl; the remedy is 1 thread.
    msg = busy_cores_warning(threads=2, cores=2, others=1, load=1.05)
    assert msg is not None and "OMP_NUM_THREADS=1" in msg and "1 other process(es) are running on these 2 cores" in msg
    msg = busy_cores_warning(threads=16, cores=16, others=3, load=3.2)  # 3 busy cores of 16: use 13
    assert msg is not None and "OMP_NUM_THREADS=13" in msg


def test_no_warning_on_an_idle_machine_one_thread_spare_cores_or_a_finished_job():
    assert busy_cores_warning(threads=2, cores=2, others=0, load=0.3) is None    # idle
    assert busy_cores_warning(threads=1, cores=2, others=1, load=1.9) is None    # one thread: nothing to wait for
    assert busy_cores_warning(threads=4, cores=16, others=6, load=6.0) is None   # 4 threads, 10 cores free
    # The previous command just ended: the 1-minute load still says 1.6, but nothing else runs now.
    assert busy_cores_warning(threads=2, cores=2, others=0, load=1.6) is None
    # A process passing through right now on an otherwise idle machine (load still low): no warning.
    assert busy_cores_warning(threads=2, cores=2, others=1, load=0.2) is None


def test_torch_runs_on_the_free_cores_unless_the_user_chose(monkeypatch):
    """On a busy machine two threads per process ran 5-10x slower than one: the count now follows the free cores."""
    import torch

    from optimate_pl.utils import parallel

    before = torch.get_num_threads()
    monkeypatch.setattr(parallel, "usable_cores", lambda: 4)
    monkeypatch.setattr(parallel, "_others_running", lambda samples=5: 3)
    monkeypatch.setattr(parallel.os, "getloadavg", lambda: (3.2, 3.0, 3.0))
    monkeypatch.setattr(parallel.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(parallel, "secondary_rank", lambda: False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    try:
        torch.set_num_threads(4)
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        said = parallel.fit_threads_to_free_cores()
        assert torch.get_num_threads() == 1 and "using 1 torch thread(s) instead of 4" in said
        torch.set_num_threads(4)
        monkeypatch.setenv("OMP_NUM_THREADS", "4")  # the user's choice is kept, and warned about
        said = parallel.fit_threads_to_free_cores()
        assert torch.get_num_threads() == 4 and "OMP_NUM_THREADS=1" in said
        monkeypatch.setattr(parallel, "_others_running", lambda samples=5: 0)
        monkeypatch.setattr(parallel.os, "getloadavg", lambda: (0.1, 0.1, 0.1))
        assert parallel.fit_threads_to_free_cores() is None and torch.get_num_threads() == 4  # idle: untouched
    finally:
        torch.set_num_threads(before)
