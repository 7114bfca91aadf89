"""Benchmark: ingest cost per slice (vs pydicom's decode alone) and per dataset (DicomExampleGen
on its default runner settings vs a plain in-process loop), with the mosmed-scale extrapolation.

Part 1, per step (issue 13's profile): file_outcome's path on uncompressed 384x416 and 512x512
slices, step by step as components.dicom.slices and preprocessing call them, in process CPU
time, beside the decode-only baseline split into pydicom's parse and its pixel_array.
Part 2, per slice (issue 13 deliverable 1), in this process, same files on disk:
  decode only  `pydicom.dcmread(path).pixel_array`: the baseline row;
  work         `file_to_examples.file_outcome`: read, study check, decode, preprocess, serialize
               (the component's whole per-file work except the TFRecord write),
for 384x416 and 512x512 axial MR slices in Explicit VR Little Endian and in each compressed
transfer syntax we can write (RLE, JPEG 2000 lossless, JPEG-LS lossless, JPEG baseline),
naming the decoder plugin each side uses; then what gzip adds per slice: zlib level 6 (Beam's
default), zlib level 1, and ISA-L level 1 (DicomExampleGen's sink, gzip_sink.py). Both rows are
process CPU time, best of `slice_repeats` passes: on our shared machine wall time also counts
other jobs' turns on the core.
This process keeps freed memory (allocator.keep_freed_memory) as the component's workers do.
Part 3, per dataset (deliverable 2): mosmed-like exports (bench/slice_files.py: 512x512
uncompressed single-frame slices, studies of 40) of two sizes; for each, in its own subprocess:
  loop       file_outcome -> gzip TFRecord through the component's own GzipWriter, one process,
             one core, no Beam pipeline;
  component  the one-component TFX pipeline of `mspipe ingest` on LocalDagRunner, by default
             with no Beam argument, i.e. DicomExampleGen's own DEFAULT_BEAM_ARGS
             (multi_processing, one worker per core); `--modes` adds other DirectRunner modes.
It prints slices/s (wall time: imports excluded, Beam start-up included), the marginal rate
between the two sizes (start-up cancels out), the extrapolated time for 51,867 slices
(fixed cost + 51,867 / marginal rate; goal < 10 min on 2 cores), and peak memory at both sizes:
the largest single process (ru_maxrss from wait4) and the whole process tree (RSS summed,
sampled). Memory must not grow with the number of slices.

  .venv/bin/python bench/ingest.py                        # per step, per slice, 500 and 5,000
  .venv/bin/python bench/ingest.py --sizes 400,2000 --slice-files 16
  .venv/bin/python bench/ingest.py --skip datasets        # per-step and per-slice rows (~2 min)
  .venv/bin/python bench/ingest.py --skip slices          # the datasets only

Issue 13, second round: what each step cost, what was cut (tensors unchanged: the synthetic
export in every transfer syntax and 96 bench slices of 6 matrices x 4 syntaxes give byte-
identical tensors before and after; tests/unit/test_lanczos.py and test_preprocessing_fast_path
compare each new path bit for bit with its definition):
  - the Lanczos resize of a matrix that is not 512 on its long side was ~4 ms of ~10 ms at
    384x416 (Pillow mode "F", a scalar double loop). components/dicom/lanczos.py computes
    Pillow's own weights and sums as two scipy sparse products: same bits, ~half the time.
    Pillow's 8-bit "L" / "I;16" resampling was measured too: no faster on this build (4.2 / 7.5
    ms), and it would change bytes by up to 24 levels (L clips between passes); OpenCV's
    INTER_LANCZOS4 took 1.5 ms and differs by up to 11 levels (another kernel), so neither.
  - every resized slice page-faulted its ~12 MB of temporaries back in (~3,000 faults, ~5 ms:
    glibc unmapped and trimmed them after each slice); the workers now keep freed memory
    (components/dicom_example_gen/allocator.py): 0 faults.
  - steps 5-7 at 512x512 (no resize): the float image, its clip/rint/cast and a second index
    cast were ~1.7 ms; the table of levels is now rounded to uint8 once and looked up per pixel,
    with one intp index for the histogram and the lookup, and the percentiles in scalars.
    What is left (~0.8 ms) is numpy's bincount and take over 262,144 pixels.
  - header checks built a pydicom Dataset per check for a missing file meta; numpy's cross
    product on 3-vectors took ~0.1 ms; the Example encoder copied the image at every nesting
    level (0.57 -> 0.13 ms).
  - gzip: zlib level 1 cost ~5.5 ms a slice, twice all the rest; ISA-L level 1 ~0.8 ms, for
    files 3 % larger (gzip_sink.py).

Last runs, this session (22:00-22:40 UTC), 2 CPUs shared with two other engineers' jobs (one
training): load average 3-6.5 throughout, so wall times are up to 3x a quiet machine's and
move between rows; the ratio to the decode in the same run, and CPU time, are the figures.
`.venv/bin/python bench/ingest.py --skip datasets` (load 3.1-4.9; per-slice rows then best of 3):
  per-step CPU ms per uncompressed slice (file_outcome's path, step by step; best of passes)
  step                         384x416   512x512
  baseline: dcmread(path)        0.606     0.602
  baseline: .pixel_array         0.508     0.553
  read file                      0.088     0.114
  parse header                   0.461     0.480
  study check + scanner          0.146     0.143
  MR checks                      0.355     0.346
  frame geometry                 0.113     0.109
  decode (pydicom)               0.397     0.448
  steps 5-7                      2.674     0.875
  serialize                      0.125     0.118
  decode only (baseline)         1.115     1.155
  all steps (work)               4.358     2.633
  matrix   transfer syntax                              decoder             decode ms  work ms work/decode work/native decode
  384x416  Explicit VR Little Endian                    pydicom (native)         0.90     6.61        7.30               7.30
  384x416  RLE Lossless                                 pylibjpeg-rle            1.36     4.73        3.48               5.23
  384x416  JPEG 2000 Image Compression (Lossless Only)  pylibjpeg-openjpeg      34.16    44.11        1.29              48.77
  384x416  JPEG Baseline (Process 1)                    pylibjpeg-libjpeg        4.49     8.45        1.88               9.34
  512x512  Explicit VR Little Endian                    pydicom (native)         1.47     3.03        2.06               2.06
  512x512  RLE Lossless                                 pylibjpeg-rle            2.58     4.64        1.80               3.16
  512x512  JPEG 2000 Image Compression (Lossless Only)  pylibjpeg-openjpeg      66.25    69.69        1.05              47.46
  512x512  JPEG Baseline (Process 1)                    pylibjpeg-libjpeg       10.61    11.51        1.09               7.84
  gzip of one 512x512 slice (256 KiB): zlib level 6 14.40 ms -> 182 KiB, zlib level 1 7.35 ms -> 183 KiB, ISA-L level 1 (ours) 1.25 ms -> 188 KiB
Two earlier runs of the per-slice rows this session (same code but the profile) gave 512x512
uncompressed 2.66x and 2.51x decode, 384x416 4.97x and 4.27x; the per-step table's sums give
2.28x and 3.91x. A last run (best of 5 passes, load 3.3-3.9, every CPU time ~1.5x the above):
512x512 2.39x (per-step sums 2.31x), 384x416 6.30x (4.00x). So, deliverable 1: at 512x512
(mosmed's matrix) the whole per-slice work is 2.1-2.7x pydicom's decode alone (was 3.0x), not
yet the 2x goal; at 384x416 3.9-6.3x (was 7.8x),
where the exact Lanczos resize alone (~2 ms) exceeds the decode (~1.1 ms). What is left beside
pydicom's own parse + decode is numpy's bincount + take (~0.8 ms at 512x512: at numpy's floor;
np.add.at, np.histogram, scipy.ndimage.histogram and Pillow's point/histogram were slower or
binned) and ~0.8 ms of header reads, checks, hashing and serializing in Python (each pydicom
element conversion costs 10-50 us). Closing the last 0.2-0.6 ms would need a compiled
histogram + lookup kernel (numba or Cython: a new build or JIT dependency in every client).
Compressed rows: the decoder dominates and work/decode is 1.05-1.9.
`.venv/bin/python bench/ingest.py --skip slices` (default sizes 500,5000), three runs, the last
while this session's integration and e2e tests also ran (load 6-7.5):
  run    load     loop marginal  component marginal  fixed cost  mosmed (wall)  peak RSS per process / tree
  1      4.9-6.5  75.0 slices/s  137.6 slices/s      89.8 s      7.8 min        797->800 / 2378->2388 MB
  2      4.7-6.0  82.1 slices/s   70.5 slices/s      81.0 s     13.6 min        798->801 / 2378->2388 MB
  3      6.0-7.5  74.5 slices/s   71.5 slices/s      96.2 s     13.7 min        798->801 / 2378->2388 MB
  run 3 in full:
  DicomExampleGen vs in-process loop, image 512x512, 2 CPUs
   slices run                           seconds  slices/s  ratio  max proc MB  tree MB
      500 loop                             10.2     48.80   1.00          780      781
      500 component[default]              103.2      4.84   0.10          798     2378
     5000 loop                             70.7     70.74   1.00          781      782
     5000 component[default]              166.2     30.08   0.43          801     2388
  marginal rate 500->5000 slices (start-up cancels out), and the extrapolated time for 51,867 slices (mosmed.ai) = fixed cost + slices / marginal rate (goal < 10 min):
    loop                            74.46 slices/s  ratio 1.00  fixed cost    3.5 s  mosmed  11.7 min  peak RSS 780->781 MB per process, 781->782 MB tree
    component[default]              71.46 slices/s  ratio 0.96  fixed cost   96.2 s  mosmed  13.7 min  peak RSS 798->801 MB per process, 2378->2388 MB tree
  marginal CPU per slice (user + system of every process of the run, 500->5000 slices), and the mosmed time if all 2 cores were the run's: fixed cost + 51,867 x CPU per slice / cores (on a shared machine the wall-time rate above also counts other jobs):
    loop                           6.54 CPU ms/slice on 1 core(s)  mosmed   5.7 min
    component[default]             9.07 CPU ms/slice on 2 core(s)  mosmed   5.5 min
So, deliverable 2: memory is flat (peak RSS +3 MB per process and +10 MB for the tree from 500
to 5,000 slices); the wall-time extrapolation moved from 7.8 to 13.7 min with the other jobs'
load (the component's two workers got well under two cores: its marginal rate fell below the
one-core loop's in runs 2-3); by CPU, DicomExampleGen needs ~9 ms a slice (Beam's staging
write + read and routing add ~2.5 ms to the loop's 6.5), i.e. ~5.5 min for mosmed when the 2
cores are its own. Before this round (zlib level 1, Pillow resize), the same runs under the
same kind of load gave the loop 54-87 slices/s and the component 82 slices/s (11.4 min). The
lead's quiet rerun of `bench/ingest.py` settles the wall-time figure.

The lead's quiet reruns (2026-12-01 23:27-23:35, nothing else running, load 0.9-1.4), after
the merge that added the `no_anatomy` check (components/dicom/anatomy.py) to steps 5-7:
`.venv/bin/python bench/ingest.py --skip datasets`: per-step CPU ms (every figure ~1.5x the
loaded run above, baselines included: another CPU clock, same ratios)
  step                         384x416   512x512
  decode only (baseline)         1.672     1.668
  steps 5-7 (incl. no_anatomy)   5.805     2.558
  all steps (work)               8.382     5.120
  384x416  Explicit VR Little Endian  decode 1.41 ms  work 8.21 ms  work/decode 5.83
  512x512  Explicit VR Little Endian  decode 1.53 ms  work 3.99 ms  work/decode 2.61
  (RLE 3.96 / 2.36, JPEG 2000 1.25 / 1.12, JPEG baseline 2.38 / 1.53; ISA-L gzip 1.20 ms)
The anatomy check costs ~1.2 ms a slice at 512x512 and ~1.9 ms at 384x416 (two ndimage.label
calls on the 64x64 grid, Otsu, and at 384x416 the uneven block means): it moved 512x512 from
~2.1-2.4x to 2.6x decode. Deliverable 1 (<= 2x) is not met.
`.venv/bin/python bench/ingest.py --skip slices` (500 and 5,000 slices):
  loop                 134.87 slices/s marginal  fixed  -0.6 s  mosmed 6.4 min
  component[default]   232.31 slices/s marginal  fixed 34.7 s  mosmed 4.3 min
  peak RSS: 1151 -> 1151 MB per process, 2379 -> 2390 MB tree (flat)
  marginal CPU: loop 8.60 ms/slice (1 core), component 8.98 ms/slice (2 cores): 4.5 min
Deliverable 2 (mosmed under 10 minutes on 2 cores, memory flat) is met: 4.3 min.

Third round (2026-12-02, the lead alone on the machine, load 0.8-1.3; tensors byte-identical
before/after, rejections included: 48 bench slice files (384x416, 512x512, 256x256, 448x400;
Explicit VR Little Endian and RLE; 6 each) and every file of pydicom's test set, 57 tensors):
  - decode: uncompressed little-endian integer frames are a read-only numpy view of the pixel
    bytes (frames._native_frame, unused high bits as pydicom treats them; compared with
    pydicom's decoder by tests/unit/test_native_frames.py): "decode (pydicom)" 0.68 -> 0.17 ms.
  - header reads: pydicom converts an element on first access in ~30 us (its DataElement
    set-up and checks) and we read ~25 a slice; frames.read_attribute now reads plain
    US/UL/SS/SL/CS/UI/LO/SH/IS/DS values from the raw bytes and leaves the rest to pydicom
    (tests/unit/test_plain_values.py: hypothesis against pydicom on arbitrary bytes); the
    pixel-length check computes pydicom's expected length from those values. Study check +
    MR checks + geometry: 0.96 -> 0.41 ms.
  - no_anatomy check: integer block sums of the rounded frame, Pearson's r from sums, Otsu in
    one expression without np.clip, labels with a prebuilt structure, holes looked for only
    when the region alone is too small: 0.87 -> ~0.3 ms at 512x512 (same decisions on 360
    cuts and noise images, same thresholds on 3,000 grids); the 384x416 grid by a reshape
    where rows divide evenly (reduceat along rows alone was 0.5 ms).
  - the frame's min/max found once (three passes before), np.take without bounds checks,
    one-byte varints in the Example encoder, the truncation check walks raw elements.
  - the per-slice rows now alternate decode and work passes (a change of CPU speed during a
    row otherwise lands on one side of the ratio only), best of 8.
`.venv/bin/python bench/ingest.py` (per step, per slice, then 500 and 5,000 slices), and
`--skip datasets` three more times; the CPU clock of this VM drifts by up to 1.5x between
runs, so the ratios, not the milliseconds, are the figures:
  512x512 Explicit VR Little Endian  decode 1.62-2.16 ms  work 2.99-4.88 ms  work/decode 1.85,
      2.26, 2.26, 2.21 (per-step sums 2.14, 2.16, 2.14, 2.04); an in-process loop over the same
      24 files, 5 x best of 8 alternating: 2.37-2.53 (median 2.45).
  384x416 Explicit VR Little Endian  work/decode 4.14, 3.84, 4.68, 4.98 (the exact Lanczos
      resize, ~2 ms, is more than pydicom's whole decode, ~1.2 ms).
  RLE 1.83-2.19 (512x512) / 3.3-4.4 (384x416); JPEG 2000 1.04-1.16; JPEG baseline 1.29-1.73
      (512x512) / 2.0-2.4 (384x416): there the decoder's own cost dominates.
  mosmed-like datasets (first run): loop 106.6 slices/s marginal (6.56 CPU ms/slice),
  DicomExampleGen 365.5 slices/s marginal (5.73 CPU ms/slice on 2 workers), fixed cost 41 s:
  mosmed 3.1 min (was 4.3); peak RSS 1275 -> 1275 MB per process, 2379 -> 2390 MB tree (flat).
So deliverable 1 is still not met: at 512x512 the whole per-slice work is 2.0-2.5x pydicom's
decode alone (was 2.6-3.4x the same day, same files), at 384x416 3.8-5x. What is left beside
pydicom's own parse is numpy's floor (at 512x512: bincount ~0.43 ms, the table lookup ~0.33 ms,
the index cast ~0.1 ms; the bincount's increments stall on long runs of equal background
values) and ~0.5 ms of checks, anatomy and serializing in Python. A compiled histogram +
lookup kernel (numba or Cython: a build or JIT dependency in every client) is what remains.

Fourth round (2026-12-02 06:40-06:50, load 0.6-0.7): JPEG-LS gets its row. pyjpegls (CharLS,
pydicom's JPEG-LS encoder plugin) is now in the lock, so bench/slice_files.py writes JPEG-LS
Lossless slices (components/synthetic/dicom_files.encode picks pydicom's encoder per syntax).
Its row showed pydicom's default decoder, pylibjpeg-libjpeg, at 24-54 ms a slice: 4-5x CharLS's
(7.5 / 11.0 ms at 384x416 / 512x512, same pixels, ad hoc). components.dicom.frames now decodes
JPEG-LS with CharLS first (PREFERRED_DECODERS; pydicom's own order when it fails;
tests/unit/test_preferred_decoders.py: same values on every JPEG-LS file pydicom ships and on
synthetic 12-bit MR slices). `.venv/bin/python bench/ingest.py --skip datasets`:
  matrix   transfer syntax                     decoder             decode ms  work ms  work/decode
  384x416  Explicit VR Little Endian           pydicom (native)         1.59     6.39     4.02
  384x416  RLE Lossless                        pylibjpeg-rle            2.31     7.62     3.29
  384x416  JPEG 2000 (Lossless Only)           pylibjpeg-openjpeg      36.95    44.55     1.21
  384x416  JPEG-LS Lossless                    pyjpegls                31.72    13.17     0.42
  384x416  JPEG Baseline (Process 1)           pylibjpeg-libjpeg        6.13    11.40     1.86
  512x512  Explicit VR Little Endian           pydicom (native)         1.63     3.58     2.20
  512x512  RLE Lossless                        pylibjpeg-rle            2.90     5.54     1.91
  512x512  JPEG 2000 (Lossless Only)           pylibjpeg-openjpeg      59.28    63.50     1.07
  512x512  JPEG-LS Lossless                    pyjpegls                40.14    12.32     0.31
  512x512  JPEG Baseline (Process 1)           pylibjpeg-libjpeg        6.34     8.74     1.38
  (JPEG-LS: "decode ms" is pydicom's default decoder, pylibjpeg-libjpeg, the baseline as for
  every row; the work decodes with pyjpegls.) A run minutes earlier, before the switch: JPEG-LS
  decode 24.0 / 54.0 ms, work 34.7 / 56.3 ms (1.44x / 1.04x); uncompressed 4.70x / 2.38x.
Deliverable 1 is unchanged for uncompressed slices (512x512 2.2-2.4x, 384x416 4.0-4.7x in these
two runs). A compiled histogram + lookup kernel was weighed again and not built: it would save
~0.5 ms at 512x512 (to ~1.8-1.9x) but leave 384x416 over 2x (the Lanczos resize, ~2 ms, and
the block means stay), for a JIT (numba: ~0.4 s import and a compile cache in every client)
or a C build in every install; the mosmed-scale goal is already met (3.1 min).

Fifth round (2026-12-02 09:04, quiet machine, load 0.0-0.4; code as at c93d9c2):
`.venv/bin/python bench/ingest.py --skip datasets`:
  per step (CPU ms)            384x416   512x512
  decode only (baseline)         1.247     1.229
  read file                      0.098     0.125
  parse header                   0.525     0.495
  checks + geometry              0.356     0.336
  decode (ours)                  0.140     0.144
  steps 5-7                      3.529     1.384
  serialize                      0.115     0.096
  all steps (work)               4.762     2.579      (2.10x decode at 512x512, 3.82x at 384x416)
  per slice, work/decode: Explicit VR Little Endian 4.62 (384x416), 2.27 (512x512); RLE 3.63 /
  1.81; JPEG 2000 1.05 / 1.07; JPEG-LS (CharLS) 0.42 / 0.32 of pydicom's default decoder;
  JPEG baseline 1.91 / 1.35; ISA-L gzip 0.96 ms a slice.
The compiled kernel, measured instead of estimated: bench/histogram_kernel.py times steps 5 + 7
of the same kind of 512x512 slices with the histogram and lookup in C (cc -O3) and in numba,
against the production numpy path: 0.76 -> 0.41 (C) / 0.37 (numba) ms a slice, i.e. 512x512 at
~1.8-2.0x decode with it, at the goal within the run-to-run swing, and 384x416 still ~4x (the
resize). numba would cost every preprocessing process ~2.7 s of start-up (import 1.4-1.7 s,
its cached kernels 1.2-1.3 s; the 0.4 s estimated above was wrong), twice the thin client's
imports today; C a compiler in every install and a second implementation of steps 5 and 7.
Not built. Deliverable 1 for uncompressed slices stays unmet by that choice: 512x512 2.1-2.3x,
384x416 3.8-4.6x pydicom's decode alone. At 384x416 no resize could close it: lanczos_resize
takes 1.5 ms of steps 5-7's 3.5 (and padding + rounding the 473x512 result 0.4 ms; ad hoc,
best of 300), so with a free resize the slice would still be ~2.6x its decode.
`.venv/bin/python bench/ingest.py --skip slices` (09:17, load 0.2-0.4):
  loop                 145.61 slices/s marginal (3.81 CPU ms/slice)  mosmed 5.9 min
  component[default]   234.47 slices/s marginal (5.79 CPU ms/slice)  fixed 29.7 s  mosmed 4.2 min
  peak RSS 798 -> 803 MB per process, 2381 -> 2392 MB tree (500 -> 5,000 slices: flat)
Deliverable 2 stays met (4.2 min here, 3.1 min in the third round; by CPU 3.0 min).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SALT = "bench-salt"
DEFAULT_MODE = "default"  # no Beam arguments: DicomExampleGen's own DEFAULT_BEAM_ARGS
MODES = (DEFAULT_MODE, "multi_processing", "multi_threading", "in_memory")
MOSMED_SLICES = 51_867   # the seed's data set (mosmed.ai), 512x512 slices
GOAL_MINUTES = 10.0
PLUGIN_PACKAGES = {  # what pydicom's first available plugin is, per transfer syntax
    "RLE Lossless": "pylibjpeg-rle",
    "JPEG 2000 Image Compression (Lossless Only)": "pylibjpeg-openjpeg",
    "JPEG Baseline (Process 1)": "pylibjpeg-libjpeg",
    "JPEG-LS Lossless Image Compression": "pylibjpeg-libjpeg",
}


@dataclass(frozen=True)
class BenchSettings:
    sizes: tuple[int, ...] = (500, 5000)           # kept slices per dataset (512x512 inputs)
    image_size: int = 512                          # production size
    modes: tuple[str, ...] = (DEFAULT_MODE,)       # DirectRunner modes for the component
    workdir: Path = REPO / "bench_out" / "ingest"
    keep_outputs: bool = False
    slice_files: int = 24                          # files per per-slice row
    slice_repeats: int = 8                         # per-slice rows: best of this many passes


@dataclass(frozen=True)
class Measurement:
    name: str
    slices: int
    seconds: float      # work time reported by the child (imports excluded)
    max_rss_mb: float   # largest single process (ru_maxrss of the child and its waited children)
    tree_rss_mb: float  # peak of the summed RSS of the child's process tree (sampled)
    cpu_seconds: float = 0.0  # user + system CPU of the child and its waited children (wait4),
                              # imports included: differences between sizes cancel them

    @property
    def rate(self) -> float:
        return self.slices / self.seconds if self.seconds else 0.0


# ------------------------------------------------------------------ datasets

def dataset_for(size: int, settings: BenchSettings) -> tuple[Path, Path, int]:
    """A mosmed-like export of `size` 512x512 uncompressed axial slices, written once and reused.

    Size grows by studies of 40 slices, never by file size, so memory-vs-size compares like
    with like.
    """
    from slice_files import mosmed_like_dataset

    data = settings.workdir / f"mosmed-{size}"
    marker = settings.workdir / f"mosmed-{size}.json"  # outside the export: it would be ingested
    if not (marker.exists() and data.is_dir()):
        shutil.rmtree(data, ignore_errors=True)
        started = time.perf_counter()
        mosmed_like_dataset(data, size)
        marker.write_text(json.dumps({"slices": size}))
        print(f"generated {data}: {size} slices in {time.perf_counter() - started:.0f} s",
              file=sys.stderr)
    return data, data / "labels.csv", size


# ------------------------------------------------------------------ per-slice costs

@dataclass(frozen=True)
class SliceCost:
    matrix: str
    transfer_syntax: str
    decoder: str           # the plugin the work decodes with
    baseline_decoder: str  # pydicom's default plugin: the decode-only row's
    decode_ms: float   # pydicom.dcmread(path).pixel_array
    work_ms: float     # file_to_examples.file_outcome: read, decode, preprocess, serialize


def decoder_name(transfer_syntax, *, ours: bool = True) -> str:
    """The plugin the work decodes with (ours: components.dicom.frames' preferred one, where it
    has one), or pydicom's first available one (what the decode-only baseline uses)."""
    from pydicom.pixels import get_decoder

    from components.dicom.frames import decoding_plugin

    decoder = get_decoder(transfer_syntax)
    if decoder.is_native:
        return "pydicom (native)"
    if ours and (preferred := decoding_plugin(transfer_syntax)):
        return preferred
    plugin = next(iter(decoder._available), "none")  # tried first: registration order
    return PLUGIN_PACKAGES.get(transfer_syntax.name, plugin) if plugin == "pylibjpeg" else plugin


def per_slice_costs(settings: BenchSettings) -> list[SliceCost]:
    """Decode alone vs the component's whole per-file work, same files, same process.

    Both read the file from disk; the best of `slice_repeats` passes over `slice_files` files
    is kept (the machine is shared: the minimum is the least disturbed pass).
    """
    import pydicom
    from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                             JPEGLSLossless, RLELossless)

    from components.dicom_example_gen import file_to_examples as fte
    from components.dicom_example_gen.allocator import keep_freed_memory
    from components.features import hash_uid
    from slice_files import slice_files

    keep_freed_memory()  # as DicomExampleGen's workers do (FileToExamplesDoFn.setup)
    syntaxes = (ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGLSLossless,
                JPEGBaseline8Bit)
    costs = []
    for rows, cols in ((384, 416), (512, 512)):
        for syntax in syntaxes:
            folder = settings.workdir / "slices" / f"{rows}x{cols}-{syntax}"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            files = slice_files(rows, cols, syntax, settings.slice_files)
            paths = []
            for number, data in enumerate(files, 1):
                paths.append(folder / f"IM{number:05d}")
                paths[-1].write_bytes(data)
            study = pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID
            ingest = fte.IngestSettings(str(folder), settings.image_size, ("axial",), SALT,
                                        {hash_uid(study, SALT): 1})

            def decode() -> None:
                for path in paths:
                    pydicom.dcmread(path).pixel_array

            def work() -> None:
                for path in paths:
                    outcome = fte.file_outcome(path.name, str(path), ingest)
                    if len(outcome.examples) != 1:
                        raise SystemExit(f"{path}: no example ({outcome.rejects})")

            decode_ms, work_ms = _best_ms_alternating((decode, work), len(paths),
                                                      settings.slice_repeats)
            costs.append(SliceCost(f"{rows}x{cols}", syntax.name, decoder_name(syntax),
                                   decoder_name(syntax, ours=False), decode_ms, work_ms))
            shutil.rmtree(folder, ignore_errors=True)
    return costs


def best_ms(run, count: int, repeats: int) -> float:
    """CPU time of this process per call, best of `repeats` passes: on a machine shared with
    other engineers' jobs, wall time also counts the time their processes held our core."""
    run()  # warm: imports, plugin look-up, page cache
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best / count * 1000


def _best_ms_alternating(runs, count: int, repeats: int) -> list[float]:
    """best_ms of each run, their passes alternating (decode, work, decode, work, ...): a
    change of the CPU's speed during the row (another job, the host) then reaches both sides
    of the ratio instead of one."""
    for run in runs:
        run()  # warm
    best = [float("inf")] * len(runs)
    for _ in range(repeats):
        for index, run in enumerate(runs):
            started = time.process_time()
            run()
            best[index] = min(best[index], time.process_time() - started)
    return [seconds / count * 1000 for seconds in best]


def gzip_cost(repeats: int = 20) -> str:
    """What gzip adds per slice: one serialized 512x512 example, zlib level 6 (Beam's
    WriteToTFRecord), zlib level 1, and ISA-L level 1 (DicomExampleGen's sink)."""
    import zlib

    from pydicom.uid import ExplicitVRLittleEndian

    from components.dicom.preprocessing import preprocess_dicom
    from components.dicom_example_gen.gzip_sink import GZIP_LEVEL, compressor
    from slice_files import slice_files

    image = preprocess_dicom(slice_files(512, 512, ExplicitVRLittleEndian, 1)[0])[0].image
    data = image.tobytes()
    parts = []
    for name, make in (("zlib level 6", lambda: zlib.compressobj(6, zlib.DEFLATED, 31)),
                       ("zlib level 1", lambda: zlib.compressobj(1, zlib.DEFLATED, 31)),
                       (f"ISA-L level {GZIP_LEVEL} (ours)", lambda: compressor(GZIP_LEVEL))):
        def run() -> None:
            stream = make()
            parts_out[0] = len(stream.compress(data) + stream.flush())
        parts_out = [0]
        parts.append(f"{name} {best_ms(run, 1, repeats):.2f} ms -> "
                     f"{parts_out[0] / 1024:.0f} KiB")
    return f"gzip of one 512x512 slice ({len(data) / 1024:.0f} KiB): " + ", ".join(parts)


def format_slice_costs(costs: list[SliceCost]) -> str:
    lines = [f"per-slice cost, best of passes over the same files (decode only = "
             f"pydicom.dcmread(path).pixel_array; work = read, decode, preprocess, serialize)",
             f"{'matrix':<8} {'transfer syntax':<44} {'decoder':<19} {'decode ms':>9} "
             f"{'work ms':>8} {'work/decode':>11} {'work/native decode':>18}"]
    native = {c.matrix: c.decode_ms for c in costs if c.decoder == "pydicom (native)"}
    for c in costs:
        lines.append(f"{c.matrix:<8} {c.transfer_syntax[:44]:<44} {c.decoder:<19} "
                     f"{c.decode_ms:>9.2f} {c.work_ms:>8.2f} {c.work_ms / c.decode_ms:>11.2f} "
                     f"{c.work_ms / native[c.matrix]:>18.2f}")
    for syntax, ours, default in sorted({(c.transfer_syntax, c.decoder, c.baseline_decoder)
                                         for c in costs if c.decoder != c.baseline_decoder}):
        lines.append(f"{syntax}: the work decodes with {ours} (components.dicom.frames."
                     f"PREFERRED_DECODERS); the decode-only baseline with pydicom's default, "
                     f"{default}")
    lines.append(gzip_cost())
    return "\n".join(lines)


# ------------------------------------------------------------------ per-step profile

STEPS = ("read file", "parse header", "study check + scanner", "MR checks", "frame geometry",
         "decode (pydicom)", "steps 5-7", "serialize")


def step_costs(settings: BenchSettings, rows: int, cols: int) -> dict[str, float]:
    """CPU ms per slice of each step of file_outcome's path on uncompressed slices, called one
    by one as components.dicom.slices / preprocessing call them (best of passes; fresh files
    each pass, so pydicom's lazy header conversions are paid where they happen), beside the
    decode-only baseline split into its parse and its pixel_array."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian

    from components.dicom import frames, preprocessing, records
    from components.dicom.scanner import read_scanner
    from components.dicom.slices import labelled_studies_only
    from components.dicom_example_gen import file_to_examples as fte
    from components.features import hash_uid
    from slice_files import slice_files

    folder = settings.workdir / "steps" / f"{rows}x{cols}"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = []
    for number, data in enumerate(slice_files(rows, cols, ExplicitVRLittleEndian,
                                              settings.slice_files), 1):
        paths.append(folder / f"IM{number:05d}")
        paths[-1].write_bytes(data)
    study = pydicom.dcmread(paths[0], stop_before_pixels=True).StudyInstanceUID
    check = labelled_studies_only({hash_uid(study, SALT): 1}, SALT)
    preprocess = preprocessing.PreprocessSettings(image_size=settings.image_size)
    best: dict[str, float] = {}
    for _ in range(settings.slice_repeats + 5):
        spent = dict.fromkeys(("baseline: dcmread(path)", "baseline: .pixel_array", *STEPS), 0.0)
        for path in paths:
            clock = [time.process_time()]

            def step(name: str) -> None:
                now = time.process_time()
                spent[name] += now - clock[0]
                clock[0] = now

            dataset = pydicom.dcmread(path)
            step("baseline: dcmread(path)")
            dataset.pixel_array
            step("baseline: .pixel_array")
            data = fte.read_file_bytes(str(path))
            step("read file")
            parsed = preprocessing.parse_dicom(data)
            step("parse header")
            check(preprocessing.read_study_identity(parsed)[0])
            read_scanner(parsed)
            step("study check + scanner")
            dataset = frames.read_mr_dataset(data, parsed.dataset)
            frames.frame_count(dataset), frames.image_shape(dataset)
            frames.optional_uid(dataset, "SeriesInstanceUID")
            frames.optional_int(dataset, "InstanceNumber")
            step("MR checks")
            info = frames.frame_info(dataset, 0)
            frames.classify_orientation(info.orientation_cosines)
            step("frame geometry")
            pixels = frames.frame_pixels(dataset, info)
            step("decode (pydicom)")
            image = preprocessing._pixels_to_tensor(pixels, preprocess)
            step("steps 5-7")
            records.encode_example({"image": image.tobytes(), "label": 1, "study_id": "s" * 22,
                                    "series_id": "s" * 22, "scanner": "ge_signa",
                                    "slice_index": 1, "orientation": "axial", "rows": rows,
                                    "cols": cols})
            step("serialize")
        for name, seconds in spent.items():
            best[name] = min(best.get(name, float("inf")), seconds / len(paths) * 1000)
    shutil.rmtree(folder, ignore_errors=True)
    return best


def format_step_costs(settings: BenchSettings) -> str:
    from components.dicom_example_gen.allocator import keep_freed_memory

    keep_freed_memory()
    columns = {f"{rows}x{cols}": step_costs(settings, rows, cols)
               for rows, cols in ((384, 416), (512, 512))}
    lines = ["per-step CPU ms per uncompressed slice (file_outcome's path, step by step; best "
             "of passes)", f"{'step':<26}" + "".join(f"{name:>10}" for name in columns)]
    names = [name for name in next(iter(columns.values()))]
    for name in names:
        lines.append(f"{name:<26}" + "".join(f"{costs[name]:>10.3f}"
                                             for costs in columns.values()))
    for label, pick in (("decode only (baseline)", lambda n: n.startswith("baseline")),
                        ("all steps (work)", lambda n: not n.startswith("baseline"))):
        lines.append(f"{label:<26}" + "".join(
            f"{sum(v for n, v in costs.items() if pick(n)):>10.3f}" for costs in columns.values()))
    return "\n".join(lines)


# ------------------------------------------------------------------ children

def child_loop(data: str, labels: str, out: str, image_size: int) -> dict:
    """The baseline: the same per-file work, no TFX and no Beam pipeline, one gzip TFRecord
    file written by the component's own compressor (gzip_sink.GzipWriter)."""
    from apache_beam.io.tfrecordio import _TFRecordUtil

    from components.dicom.labels import read_labels
    from components.dicom_example_gen import file_to_examples as fte
    from components.dicom_example_gen.allocator import keep_freed_memory
    from components.dicom_example_gen.executor import list_input_files
    from components.dicom_example_gen.gzip_sink import GzipWriter

    keep_freed_memory()  # as DicomExampleGen's workers do (FileToExamplesDoFn.setup)
    started = time.perf_counter()
    labels = read_labels(labels, SALT)
    settings = fte.IngestSettings(data, image_size, ("axial",), SALT, dict(labels.labels))
    kept = 0
    os.makedirs(out, exist_ok=True)
    writer = GzipWriter(open(os.path.join(out, "loop.tfrecord.gz"), "wb"))
    try:
        for relative_path in list_input_files(data):
            outcome = fte.file_outcome(relative_path, fte.read_file_bytes(
                os.path.join(data, relative_path)), settings)
            for example in outcome.examples:
                _TFRecordUtil.write_record(writer, example)
                kept += 1
    finally:
        writer.close()
    return {"slices": kept, "seconds": time.perf_counter() - started}


def child_component(data: str, labels: str, out: str, image_size: int, mode: str) -> dict:
    import tfx.orchestration.local.local_dag_runner  # noqa: F401 -- imports are not timed

    from components.dicom_example_gen import component
    from mspipe.commands import ingest as cli  # noqa: F401

    args = argparse.Namespace(
        data=data, labels=labels, out=out, image_size=image_size, orientations="axial",
        splits="train=0.8,eval=0.2", salt=SALT,
        beam_args=[] if mode == DEFAULT_MODE else [f"--direct_running_mode={mode}",
                                                   "--direct_num_workers=0"])
    started = time.perf_counter()
    summary = cli.ingest(args)
    seconds = time.perf_counter() - started
    return {"slices": sum(summary["examples"].values()), "seconds": seconds}


# ------------------------------------------------------------------ parent: run and measure

def measure(name: str, child_args: list[str]) -> Measurement:
    """Runs one child; samples its process tree's RSS; reads its own rusage with wait4."""
    import psutil

    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONWARNINGS="ignore")
    result_path = Path(child_args[3] + ".result.json")
    result_path.unlink(missing_ok=True)
    log_path = Path(child_args[3] + ".log")
    with log_path.open("wb") as log:  # TFX / Beam chatter, kept for a failed run
        process = subprocess.Popen([sys.executable, __file__, "--child", *child_args],
                                   cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        try:
            root = psutil.Process(process.pid)
            while not done.is_set():
                try:
                    tree = [root, *root.children(recursive=True)]
                    peak[0] = max(peak[0], sum(_rss(p) for p in tree))
                except psutil.Error:
                    pass
                time.sleep(0.2)
        except psutil.Error:
            return

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    done.set()
    sampler.join()
    if process.returncode:
        raise SystemExit(f"{name} failed (exit {process.returncode}); see {log_path}")
    log_path.unlink()
    result = json.loads(result_path.read_text())
    result_path.unlink()
    return Measurement(name, result["slices"], result["seconds"], usage.ru_maxrss / 1024,
                       peak[0] / 2 ** 20, usage.ru_utime + usage.ru_stime)


def _rss(process) -> int:
    try:
        return process.memory_info().rss
    except Exception:  # noqa: BLE001 -- a worker may exit between listing and reading
        return 0


def run_benchmark(settings: BenchSettings) -> list[tuple[int, list[Measurement]]]:
    settings.workdir.mkdir(parents=True, exist_ok=True)
    results = []
    for size in settings.sizes:
        data, labels, expected = dataset_for(size, settings)
        rows = []
        for name, mode in [("loop", None)] + [(f"component[{m}]", m) for m in settings.modes]:
            out = settings.workdir / f"out-{size}-{mode or 'loop'}"
            shutil.rmtree(out, ignore_errors=True)
            child = ["loop" if mode is None else "component", str(data), str(labels), str(out),
                     str(settings.image_size)] + ([mode] if mode else [])
            print(f"running {name} on {expected} slices ...", file=sys.stderr)
            measurement = measure(name, child)
            if measurement.slices != expected:
                raise SystemExit(f"{name} kept {measurement.slices} slices, expected {expected}")
            rows.append(measurement)
            if not settings.keep_outputs:
                shutil.rmtree(out, ignore_errors=True)
        results.append((expected, rows))
    return results


def format_table(results: list[tuple[int, list[Measurement]]], settings: BenchSettings) -> str:
    lines = [f"DicomExampleGen vs in-process loop, image {settings.image_size}x{settings.image_size}, "
             f"{os.cpu_count()} CPUs",
             f"{'slices':>7} {'run':<28} {'seconds':>8} {'slices/s':>9} {'ratio':>6} "
             f"{'max proc MB':>12} {'tree MB':>8}"]
    for slices, rows in results:
        loop = rows[0]
        for row in rows:
            lines.append(f"{slices:>7} {row.name:<28} {row.seconds:>8.1f} {row.rate:>9.2f} "
                         f"{row.rate / loop.rate:>6.2f} {row.max_rss_mb:>12.0f} {row.tree_rss_mb:>8.0f}")
    if len(results) >= 2:
        (small, small_rows), (large, large_rows) = results[0], results[-1]
        loop_rate = (large - small) / (large_rows[0].seconds - small_rows[0].seconds)
        lines.append(f"marginal rate {small}->{large} slices (start-up cancels out), and the "
                     f"extrapolated time for {MOSMED_SLICES:,} slices (mosmed.ai) = fixed cost "
                     f"+ slices / marginal rate (goal < {GOAL_MINUTES:.0f} min):")
        for before, after in zip(small_rows, large_rows):
            rate = (large - small) / (after.seconds - before.seconds)
            fixed = before.seconds - small / rate
            minutes = (fixed + MOSMED_SLICES / rate) / 60
            lines.append(f"  {after.name:<28} {rate:>8.2f} slices/s  ratio {rate / loop_rate:.2f}  "
                         f"fixed cost {fixed:>6.1f} s  mosmed {minutes:>5.1f} min  peak RSS "
                         f"{before.max_rss_mb:.0f}->{after.max_rss_mb:.0f} MB per process, "
                         f"{before.tree_rss_mb:.0f}->{after.tree_rss_mb:.0f} MB tree")
        lines.append(f"marginal CPU per slice (user + system of every process of the run, "
                     f"{small}->{large} slices), and the mosmed time if all {os.cpu_count()} "
                     f"cores were the run's: fixed cost + {MOSMED_SLICES:,} x CPU per slice / "
                     f"cores (on a shared machine the wall-time rate above also counts other "
                     f"jobs):")
        for before, after in zip(small_rows, large_rows):
            cpu_ms = (after.cpu_seconds - before.cpu_seconds) / (large - small) * 1000
            rate = (large - small) / (after.seconds - before.seconds)
            fixed = before.seconds - small / rate
            cores = 1 if after.name == "loop" else os.cpu_count()
            minutes = (fixed + MOSMED_SLICES * cpu_ms / 1000 / cores) / 60
            lines.append(f"  {after.name:<28} {cpu_ms:>6.2f} CPU ms/slice on {cores} core(s)  "
                         f"mosmed {minutes:>5.1f} min")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        kind, data, labels, out, image_size, *rest = argv[1:]
        result = (child_loop(data, labels, out, int(image_size)) if kind == "loop"
                  else child_component(data, labels, out, int(image_size), rest[0]))
        Path(out + ".result.json").write_text(json.dumps(result))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,5000", help="target slices, comma-separated")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--modes", default=DEFAULT_MODE,
                        help=f"DirectRunner modes for the component, comma-separated: {MODES}")
    parser.add_argument("--keep-outputs", action="store_true")
    parser.add_argument("--slice-files", type=int, default=24, help="files per per-slice row")
    parser.add_argument("--skip", choices=("slices", "datasets"), action="append", default=[],
                        help="leave out the per-slice rows or the dataset runs")
    args = parser.parse_args(argv)
    settings = BenchSettings(sizes=tuple(int(s) for s in args.sizes.split(",") if s),
                             image_size=args.image_size,
                             modes=tuple(m for m in args.modes.split(",") if m),
                             keep_outputs=args.keep_outputs, slice_files=args.slice_files)
    settings.workdir.mkdir(parents=True, exist_ok=True)
    if "slices" not in args.skip:
        print(format_step_costs(settings), flush=True)
        print(format_slice_costs(per_slice_costs(settings)), flush=True)
    if "datasets" not in args.skip:
        print(format_table(run_benchmark(settings), settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
