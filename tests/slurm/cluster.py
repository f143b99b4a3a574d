"""Drive the single-node SLURM cluster of ``cluster.sh`` from Python: start/stop, sbatch, job states.

The session fixture ``slurm_cluster`` (tests/conftest.py) yields a :class:`SlurmCluster`; any test marked
``slurm`` can submit jobs to it, e.g. a job array::

    job = slurm_cluster.sbatch("--array=0-3", "-c", "1", wrap="python -m ... chunk=$SLURM_ARRAY_TASK_ID", cwd=tmp)
    states = slurm_cluster.wait(job)          # {"12_0": "COMPLETED", ...} for an array, one entry otherwise
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

SCRIPT = Path(__file__).with_name("cluster.sh")
#: Job states after which a job does not run again by itself.
FINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE"}


class SlurmError(RuntimeError):
    """The cluster cannot be used here (not installed, not root, or the daemons did not start)."""


class SlurmCluster:
    """A running cluster: ``conf`` is its slurm.conf (exported as SLURM_CONF), ``dir`` holds logs and jobcomp.txt."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory).resolve()
        self.conf = self.dir / "slurm.conf"

    # -- life cycle -------------------------------------------------------------------------------
    @classmethod
    def start(cls, directory: str | Path, timeout: float = 120) -> "SlurmCluster":
        check = subprocess.run(["bash", str(SCRIPT), "check"], capture_output=True, text=True)
        if check.returncode != 0:
            raise SlurmError(check.stderr.strip() or "tests/slurm/cluster.sh check failed")
        r = subprocess.run(["bash", str(SCRIPT), "start", str(directory)], capture_output=True, text=True,
                           timeout=timeout)
        if r.returncode != 0:
            raise SlurmError(f"the local SLURM cluster did not start: {r.stderr.strip()[-1500:]}")
        return cls(directory)

    def stop(self) -> None:
        jobs = self.client("squeue", "-h", "-o", "%A", check=False).stdout.split()
        if jobs:
            self.client("scancel", *sorted(set(jobs)), check=False)
        subprocess.run(["bash", str(SCRIPT), "stop", str(self.dir)], capture_output=True, text=True, timeout=60)

    # -- clients ----------------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """The environment of a client of this cluster (and, through sbatch, of its jobs)."""
        return {**os.environ, "SLURM_CONF": str(self.conf), "PYTHONUNBUFFERED": "1"}

    def client(self, *args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
        r = subprocess.run(list(args), env=self.env, capture_output=True, text=True, timeout=60, **kw)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def sbatch(self, *args: str, script: str | None = None, wrap: str | None = None, cwd: str | Path = ".") -> str:
        """Submit a batch job (a script text, or ``wrap``: one command); returns its job id."""
        extra = ["--wrap", wrap] if wrap is not None else []
        r = self.client("sbatch", "--parsable", *args, *extra, input=script, cwd=str(cwd))
        return r.stdout.strip().split(";")[0]

    def show(self, job: str) -> dict[str, str]:
        """``scontrol show job``: the fields of the job (of each array task: a list's first entry)."""
        out = self.client("scontrol", "-o", "show", "job", str(job), check=False).stdout.strip()
        return dict(re.findall(r"(\w+)=(\S*)", out.splitlines()[0])) if out else {}

    def states(self, job: str) -> dict[str, str]:
        """Job (or array task) id -> state, from ``scontrol`` (finished jobs stay there MinJobAge=3600 s)."""
        out = self.client("scontrol", "-o", "show", "job", str(job), check=False).stdout
        states = {}
        for line in out.splitlines():
            fields = dict(re.findall(r"(\w+)=(\S*)", line))
            if "ArrayTaskId" in fields:
                states[f"{fields['ArrayJobId']}_{fields['ArrayTaskId']}"] = fields["JobState"]
            elif "JobId" in fields:
                states[fields["JobId"]] = fields["JobState"]
        return states

    def wait(self, job: str, timeout: float = 300, poll: float = 1.0) -> dict[str, str]:
        """Wait until the job (every task of an array) is in a final state; returns the states."""
        deadline = time.time() + timeout
        while True:
            states = self.states(job)
            if states and all(s in FINAL for s in states.values()):
                return states
            if time.time() > deadline:
                raise TimeoutError(f"job {job} not finished after {timeout} s: {states}")
            time.sleep(poll)

    def jobcomp(self) -> list[dict[str, str]]:
        """Every job end the cluster recorded (jobcomp/filetxt): JobId, JobState (COMPLETED, PREEMPTED, ...)."""
        path = self.dir / "jobcomp.txt"
        text = path.read_text() if path.is_file() else ""
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in text.splitlines() if line.strip()]

    def log_tail(self, lines: int = 30) -> str:
        """The end of slurmctld's and slurmd's logs (for an assertion message)."""
        out = []
        for name in ("slurmctld.log", "slurmd.log"):
            path = self.dir / "log" / name
            if path.is_file():
                out.append(f"--- {name}\n" + "\n".join(path.read_text().splitlines()[-lines:]))
        return "\n".join(out)
