"""Shared fixtures: the composed config (``cfg_train``), the command-line runners (``cli``, ``predict_cli``),
test structures and their files, a small weight file, a tiny synthetic database cached once per session,
and a one-node SLURM cluster. Tests that run a command in a subprocess (they request ``cli`` or
``predict_cli``) are marked ``slow``, so ``make test-fast`` leaves them out.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .warm_python import WarmPython

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # Under `pytest -n 2` (make test) each worker and the commands it starts use one intra-op thread: two
    # workers with two threads each on two cores wait on each other's descheduled threads (a step ~10x slower).
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"

#: Small enough to generate and train on in seconds, large enough for every split to be populated.
TINY_SIZES = {"ipa": [200, 40, 40], "rpa": [100, 20, 20]}

#: Rocksalt NaCl lattice constant (Å).
NACL_A = 5.64


def _rocksalt_nacl():
    """Rocksalt NaCl in its 2-atom fcc primitive cell (a = 5.64 Å)."""
    from pymatgen.core import Lattice, Structure

    a = NACL_A
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


#: Overrides of a run of seconds: two epochs on the tiny synthetic data, no progress bars.
FAST = ["trainer.max_epochs=2", "trainer.check_val_every_n_epoch=1", "trainer.accelerator=cpu",
        "trainer.precision=32-true",  # the same numbers on every CPU (auto gives bf16-mixed where it has bf16 units)
        "data.source=synthetic",  # the command's default is the built-in GPAW ladder; tests train on tiny toy data
        f"data.synthetic_sizes.ipa={TINY_SIZES['ipa']}", f"data.synthetic_sizes.rpa={TINY_SIZES['rpa']}",
        "data.batch_size=16", "callbacks.progress_bar=null", "callbacks.model_summary=null"]
#: GPAW settings of a DFT test material in seconds (NaCl): far from converged, enough to test the mechanics.
DFT_LOW = dict(pw_cutoff_eV=200, kpt_density_gs=1.5, kpt_density_nscf=2.0, empty_bands_above_vbm_eV=15,
               empty_band_factor=1.0, min_empty_bands=6, extra_bands=2, response_cutoff_eV=15)
#: The network of the ``weights`` fixture: small enough to predict thousands of structures in seconds.
SMALL_NET = dict(node_widths=[16], gat_layers=[[16, 2]], out_widths=[64])


@pytest.fixture(scope="session")
def rocksalt_nacl():
    """``rocksalt_nacl()``: a new rocksalt NaCl structure (2-atom primitive cell, a = 5.64 Å)."""
    return _rocksalt_nacl


@pytest.fixture(scope="session")
def fast():
    """:data:`FAST`: the overrides of a run of seconds."""
    return list(FAST)


@pytest.fixture(scope="session")
def cfg_train():
    """``cfg_train(tmp_path, *overrides)``: the packaged ``train`` config composed as the command composes it,
    with :data:`FAST` and the run's folders under ``tmp_path`` (output in ``tmp_path/run``)."""
    from hydra import compose, initialize_config_module

    def make(tmp_path, *overrides):
        with initialize_config_module("optimate_pl.conf", version_base="1.3"):
            return compose("train", overrides=[*FAST, f"paths.output_dir={tmp_path / 'run'}",
                                               f"paths.root_dir={tmp_path}", *overrides])
    return make


#: One warm Python per pytest worker (tests/warm_python.py): the ``cli`` and ``predict_cli`` commands fork from it
#: instead of importing Lightning & co. afresh (~10 s each). ``OPTIMATE_PL_TEST_COLD=1`` starts every one cold.
_WARM = None if os.environ.get("OPTIMATE_PL_TEST_COLD") == "1" else WarmPython()


def _run(argv, cwd, timeout, cold=False):
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONUNBUFFERED": "1"}
    if _WARM is not None and not cold:
        return _WARM.run(argv, cwd, env, timeout)
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def pytest_sessionfinish(session):
    if _WARM is not None:
        _WARM.close()


@pytest.fixture(scope="session")
def cli():
    """``cli(*args, cwd, timeout=300, module="optimate_pl", cold=False)``: ``python -m module args`` in a process of
    its own, forked from the warm Python (``cold=True``: a new interpreter)."""
    def run(*args, cwd, timeout=300, module="optimate_pl", cold=False):
        return _run([sys.executable, "-m", module, *args], cwd, timeout, cold)
    return run


@pytest.fixture(scope="session")
def predict_cli():
    """``predict_cli(*args, cwd)``: the ``optimate-pl-predict`` console command in a subprocess."""
    entry = "import sys; from optimate_pl.cli import predict_main; sys.argv[0] = 'optimate-pl-predict'; predict_main()"

    def run(*args, cwd, timeout=300):
        return _run([sys.executable, "-c", entry, *args], cwd, timeout)
    return run


@pytest.fixture(scope="session")
def structures():
    """``structures()``: rocksalt NaCl and zincblende GaAs."""
    from pymatgen.core import Lattice, Structure

    def make():
        gaas = Structure(Lattice([[0, 2.83, 2.83], [2.83, 0, 2.83], [2.83, 2.83, 0]]), ["Ga", "As"],
                         [[0, 0, 0], [0.25, 0.25, 0.25]])
        return _rocksalt_nacl(), gaas
    return make


@pytest.fixture(scope="session")
def write_cifs(structures):
    """``write_cifs(folder, stem="s")``: the test structures as ``<stem><i>.cif`` in ``folder`` (created)."""
    def write(folder, stem="s"):
        folder.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(structures()):
            s.to(filename=str(folder / f"{stem}{i}.cif"))
        return folder
    return write


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """A published-layout state_dict of a small untrained network (:data:`SMALL_NET`), seeded."""
    import torch

    from optimate_pl.models import Optimate

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "small.pt"
    torch.save(Optimate(**SMALL_NET).state_dict(), path)
    return path


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A session cache folder; also exported so subprocess runs reuse it.

    One folder for all xdist workers (the parent of their base folders): the full-size synthetic stores and the GPAW
    store were built once per worker. Builds take a file lock and write atomically, so the workers share them."""
    base = tmp_path_factory.getbasetemp()
    path = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "shared-cache"
    path.mkdir(exist_ok=True)
    os.environ["OPTIMATE_PL_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_rpa(cache_dir):
    from optimate_pl.data import RPADataModule

    dm = RPADataModule(source="synthetic", cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES, batch_size=16, eval_batch_size=32)
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def tiny_ipa(cache_dir):
    from optimate_pl.data import IPADataModule

    dm = IPADataModule(source="synthetic", cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES, batch_size=16, eval_batch_size=32)
    dm.setup()
    return dm


# The most the suite holds on disk at once with pyproject's retention policy (passing tests' folders deleted):
# the session's caches plus two workers' end-to-end runs: 2.5 GiB at the peak of a `make test` (2026-11-28,
# `du` every 10 s; 11 GB a run before the policy). Twice that, for margin.
MIN_FREE_GIB = 5


def pytest_configure(config):
    """Refuse to start on a nearly full disk, naming the folder and what is free, instead of failing half-way
    with pytest's "could not create numbered dir" (what a full /tmp did to a CI run)."""
    import shutil
    import tempfile

    base = config.option.basetemp or tempfile.gettempdir()
    probe = base if os.path.isdir(base) else os.path.dirname(os.path.abspath(base)) or "."
    free_gib = shutil.disk_usage(probe).free / 2**30
    if free_gib < MIN_FREE_GIB and not os.environ.get("PYTEST_XDIST_WORKER"):
        raise pytest.UsageError(f"only {free_gib:.1f} GiB free under {probe}; the tests need about {MIN_FREE_GIB} "
                                f"GiB for checkpoints and caches: free some space (old pytest-of-* folders there?)")
    config.addinivalue_line("markers", "slurm: runs jobs on a local one-node SLURM cluster (tests/slurm/; skipped "
                                       "where SLURM is not installed or cannot start)")


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    """A test that runs a command in a subprocess is an end-to-end test: marked ``slow``. The tests on the
    one-node SLURM cluster share one xdist worker (``--dist loadgroup``): one cluster per machine."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if {"cli", "predict_cli", "slurm_cluster"} & fixtures:
            item.add_marker(pytest.mark.slow)
        if "slurm_cluster" in fixtures:
            item.add_marker(pytest.mark.xdist_group("slurm"))
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # Long tests first, so that the two workers end together instead of one finishing a long test alone.
        # A stable sort: a module's tests keep their order, and a grouped module stays in one piece.
        items.sort(key=lambda it: not (it.get_closest_marker("slow") or it.get_closest_marker("xdist_group")))


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory):
    """A real single-node SLURM cluster on this machine for the whole session (tests/slurm/cluster.sh).

    Yields a :class:`tests.slurm.cluster.SlurmCluster` (sbatch, states, wait, jobcomp) and exports its
    ``SLURM_CONF``, so that `sbatch`, `srun`, `scontrol` and submitit talk to it; the daemons stop at the end.
    Skipped, with the reason, where SLURM is not installed (``make system-deps`` as root) or does not start.
    """
    from .slurm.cluster import SlurmCluster, SlurmError

    try:
        cluster = SlurmCluster.start(tmp_path_factory.mktemp("slurm"))
    except SlurmError as err:
        pytest.skip(str(err))
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if old is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = old
