"""Shared fixtures: a tiny synthetic database cached once per test session."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

#: Small enough to generate and train on in seconds, large enough for every split to be populated.
TINY_SIZES = {"ipa": [200, 40, 40], "rpa": [100, 20, 20]}

#: Rocksalt NaCl lattice constant (Å).
NACL_A = 5.64


def rocksalt_nacl():
    """Rocksalt NaCl in its 2-atom fcc primitive cell (a = 5.64 Å)."""
    from pymatgen.core import Lattice, Structure

    a = NACL_A
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Na", "Cl"],
                     [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    """A session cache folder; also exported so subprocess runs reuse it."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["OPTIMATE_PL_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def tiny_rpa(cache_dir):
    from optimate_pl.data import RPADataModule

    dm = RPADataModule(cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES, batch_size=16, eval_batch_size=32)
    dm.setup()
    return dm


@pytest.fixture(scope="session")
def tiny_ipa(cache_dir):
    from optimate_pl.data import IPADataModule

    dm = IPADataModule(cache_dir=str(cache_dir), synthetic_sizes=TINY_SIZES, batch_size=16, eval_batch_size=32)
    dm.setup()
    return dm


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: runs jobs on a local one-node SLURM cluster (tests/slurm/; skipped "
                                       "where SLURM is not installed or cannot start)")


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
