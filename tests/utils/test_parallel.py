"""The warning for torch threads on cores that other processes hold."""
from optimate_pl.utils.parallel import busy_cores_warning


def test_threads_on_busy_cores_are_warned_about_with_the_remedy():
    # A background job on one of 2 cores (load ~1): 2 threads crawl; the message says how many to use.
    msg = busy_cores_warning(threads=2, cores=2, load=1.05)
    assert msg is not None and "OMP_NUM_THREADS=1" in msg and "1.1 on 2 cores" in msg
    assert busy_cores_warning(threads=16, cores=16, load=3.2) is not None  # 3 busy cores of 16: use 12
    assert "OMP_NUM_THREADS=12" in busy_cores_warning(threads=16, cores=16, load=3.2)


def test_no_warning_on_an_idle_machine_one_thread_or_spare_cores():
    assert busy_cores_warning(threads=2, cores=2, load=0.3) is None     # this process's own start-up
    assert busy_cores_warning(threads=1, cores=2, load=1.9) is None     # one thread: nothing to wait for
    assert busy_cores_warning(threads=4, cores=16, load=6.0) is None    # 4 threads, 10 cores free
