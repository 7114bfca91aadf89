"""components/dicom_example_gen/allocator.py: freed blocks stay in the process.

Counted in page faults, not time: a fresh process allocates and frees arrays of a resized
slice's size over and over; glibc's defaults fault every one of them back in from the kernel,
with keep_freed_memory() the blocks are reused. Each case runs in its own interpreter, since
the setting is process-wide.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import resource, sys
import numpy as np
from components.dicom_example_gen.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None

def one_slice():  # the temporaries of a resized slice: several 2 MB arrays alive at once
    arrays = [np.ones((2 << 20) // 8) for _ in range(6)]
    del arrays

one_slice()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    one_slice()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def faults(mode: str) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode], cwd=ROOT, check=True,
                         capture_output=True, text=True, timeout=120).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_slices_are_reused_instead_of_faulted_back_in():
    default_applied, default_faults = faults("default")
    applied, kept_faults = faults("keep")
    assert applied == "True" and default_applied == "None"
    assert default_faults > 20 * 1000  # 12 MB a slice: ~3,000 fresh pages each time
    assert kept_faults < default_faults / 20
