"""The allocator setting: freed activations are reused instead of page-faulted in anew every step."""
import os
import subprocess
import sys

import pytest

STEPS = """
import resource, sys, torch
from optimate_pl.utils.allocator import keep_freed_memory
applied = keep_freed_memory(1 << 30) if sys.argv[1] == "keep" else False
torch.set_num_threads(1)
x = torch.randn(5000, 384)
def step():  # 32 blocks of 7 MiB alive at once, freed together: one training step's activations
    blocks = [x * float(i) for i in range(32)]
    return sum(b.sum() for b in blocks)
step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def page_faults(mode: str) -> tuple[bool, int]:
    # glibc raises its mmap threshold by itself once a large mmapped block is freed, so what the
    # default does depends on what was imported before. The reference pins glibc's initial 128 KiB.
    env = {**os.environ, **({"MALLOC_MMAP_THRESHOLD_": "131072"} if mode == "default" else {})}
    out = subprocess.run([sys.executable, "-c", STEPS, mode], capture_output=True, text=True, check=True,
                         env=env).stdout
    applied, faults = out.split()
    return applied == "True", int(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_keeping_freed_memory_stops_page_faulting_every_step():
    applied, kept = page_faults("keep")
    _, default = page_faults("default")
    assert applied
    # 10 steps x 32 blocks x 1875 pages: the default allocator faults every page in again each step.
    assert default > 400_000
    assert kept < default / 20
