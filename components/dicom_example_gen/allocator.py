"""glibc malloc settings for ingest workers: keep freed memory for the next slice.

Measured (issue 13, tests on our 2-core VMs): glibc gives large freed blocks back to the kernel
(blocks above its mmap threshold are unmapped, and the heap top is trimmed once more than its
trim threshold is free), so the arrays of every slice came back as fresh pages, each a page
fault: ~3,000 faults and ~5 ms per 384x416 slice resized to 512 (~12 MB of temporaries), more
than pydicom's decode of that slice. With both thresholds raised, those blocks stay in the
process for the next slice: the faults drop to ~0. Memory stays flat: a worker keeps at most
its largest working set plus TRIM_THRESHOLD_BYTES of free heap (bench/ingest.py prints peak RSS
at two dataset sizes).

Only DicomExampleGen's workers (FileToExamplesDoFn.setup) and bench/ingest.py, which measures
their per-file work, call it: it changes the whole process's allocator, so a library import
must not. Not glibc (macOS, musl): nothing happens.
"""
from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 << 20  # blocks up to this come from the heap, not a fresh mmap
TRIM_THRESHOLD_BYTES = 64 << 20  # free heap kept before giving memory back


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds in this process; False where it could not."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already uses
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
                and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES))
