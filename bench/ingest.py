"""Benchmark: ingest cost per slice (vs pydicom's decode alone) and per dataset (DicomExampleGen
on its default runner settings vs a plain in-process loop), with the mosmed-scale extrapolation.

Part 1, per slice (issue 13 deliverable 1), in this process, same files on disk:
  decode only  `pydicom.dcmread(path).pixel_array`: the baseline row;
  work         `file_to_examples.file_outcome`: read, study check, decode, preprocess, serialize
               (the component's whole per-file work except the TFRecord write),
for 384x416 and 512x512 axial MR slices in Explicit VR Little Endian and in each compressed
transfer syntax we can write (RLE, JPEG 2000 lossless, JPEG baseline), naming the decoder plugin
pydicom uses; then what gzip adds per slice at zlib level 6 (Beam's default) and 1 (ours).
Part 2, per dataset (deliverable 2): mosmed-like exports (bench/slice_files.py: 512x512
uncompressed single-frame slices, studies of 40) of two sizes; for each, in its own subprocess:
  loop       file_outcome -> gzip TFRecord (level 1), one process, one core;
  component  the one-component TFX pipeline of `mspipe ingest` on LocalDagRunner, by default
             with no Beam argument, i.e. DicomExampleGen's own DEFAULT_BEAM_ARGS
             (multi_processing, one worker per core); `--modes` adds other DirectRunner modes.
It prints slices/s (work time: imports excluded, Beam start-up included), the marginal rate
between the two sizes (start-up cancels out), the extrapolated time for 51,867 slices
(fixed cost + 51,867 / marginal rate; goal < 10 min on 2 cores), and peak memory at both sizes:
the largest single process (ru_maxrss from wait4) and the whole process tree (RSS summed,
sampled). Memory must not grow with the number of slices.

  .venv/bin/python bench/ingest.py                        # per slice + 500 and 5,000 slices
  .venv/bin/python bench/ingest.py --sizes 400,2000 --slice-files 16
  .venv/bin/python bench/ingest.py --skip datasets        # per-slice rows only (~2 min)

Last runs, 2 CPUs shared with six other engineers' test runs (load average 10-13 throughout, so
absolute figures are 3-5x a quiet machine's and vary between rows; the lead reruns it quiet).
`.venv/bin/python bench/ingest.py --sizes 400,2000 --slice-files 16`, per-slice part:
  per-slice cost, best of passes over the same files (decode only = pydicom.dcmread(path).pixel_array; work = read, decode, preprocess, serialize)
  matrix   transfer syntax                              decoder             decode ms  work ms work/decode work/native decode
  384x416  Explicit VR Little Endian                    pydicom (native)         3.54    27.73        7.83               7.83
  384x416  RLE Lossless                                 pylibjpeg-rle            5.95    29.70        4.99               8.38
  384x416  JPEG 2000 Image Compression (Lossless Only)  pylibjpeg-openjpeg     104.45   134.82        1.29              38.05
  384x416  JPEG Baseline (Process 1)                    pylibjpeg-libjpeg       16.26    34.60        2.13               9.77
  512x512  Explicit VR Little Endian                    pydicom (native)         5.96    18.12        3.04               3.04
  512x512  RLE Lossless                                 pylibjpeg-rle            9.00    21.48        2.39               3.60
  512x512  JPEG 2000 Image Compression (Lossless Only)  pylibjpeg-openjpeg     189.47   139.65        0.74              23.43
  512x512  JPEG Baseline (Process 1)                    pylibjpeg-libjpeg       23.17    32.68        1.41               5.48
  JPEG-LS: decoded by pylibjpeg-libjpeg, but no JPEG-LS encoder is installed to write a test file, so it has no row.
  gzip of one 512x512 slice (256 KiB): level 6 24.27 ms -> 182 KiB, level 1 14.26 ms -> 183 KiB
  Same load, step 5 alone (clip_and_scale, in-process): 384x416 14.7 -> 1.2 ms, 512x512
  23.6 -> 2.2 ms (table path vs np.percentile + float64). The 384x416 rows are dominated by the
  Lanczos resize (Pillow "F"); 512x512 needs none. The J2K rows' work < decode is load noise.
`.venv/bin/python bench/ingest.py --sizes 400,2000 --skip slices` (after the gzip change):
  DicomExampleGen vs in-process loop, image 512x512, 2 CPUs
   slices run                           seconds  slices/s  ratio  max proc MB  tree MB
      400 loop                             24.0     16.68   1.00          893      894
      400 component[default]               65.1      6.15   0.37          911     1405
     2000 loop                             53.5     37.41   1.00          852      849
     2000 component[default]               68.6     29.16   0.78          888     1391
  marginal rate 400->2000 slices (start-up cancels out), and the extrapolated time for 51,867 slices (mosmed.ai) = fixed cost + slices / marginal rate (goal < 10 min):
    loop                            54.27 slices/s  ratio 1.00  fixed cost   16.6 s  mosmed  16.2 min  peak RSS 893->852 MB per process, 894->849 MB tree
    component[default]             457.09 slices/s  ratio 8.42  fixed cost   64.2 s  mosmed   3.0 min  peak RSS 911->888 MB per process, 1405->1391 MB tree
  Start-up (TFX, MLMD, two Beam workers importing under load) varied by tens of seconds, so the
  component's marginal rate at these sizes is noise (457 slices/s is impossible); the loop's,
  54 slices/s on one core past start-up, is less affected but still moved with the load (it
  fell from ~11 to ~4 during the run; issue 13's quiet baseline was 27 slices/s). Two workers
  at most double it: ~8 min + ~1 min start-up for 51,867 slices, an estimate to be confirmed by
  the default sizes (500,5000) on a quiet machine. Memory is flat: peak RSS 911 -> 888 MB per
  process and 1405 -> 1391 MB for the tree at 400 -> 2000 slices.
  An earlier run (gzip still at level 6, before one-parse headers) gave the loop 5.7 slices/s
  marginal under the same kind of load.
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
    slice_repeats: int = 5                         # per-slice rows: best of this many passes


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
    decoder: str
    decode_ms: float   # pydicom.dcmread(path).pixel_array
    work_ms: float     # file_to_examples.file_outcome: read, decode, preprocess, serialize


def decoder_name(transfer_syntax) -> str:
    from pydicom.pixels import get_decoder

    decoder = get_decoder(transfer_syntax)
    if decoder.is_native:
        return "pydicom (native)"
    plugin = next(iter(decoder._available), "none")  # tried first: registration order
    return PLUGIN_PACKAGES.get(transfer_syntax.name, plugin) if plugin == "pylibjpeg" else plugin


def per_slice_costs(settings: BenchSettings) -> list[SliceCost]:
    """Decode alone vs the component's whole per-file work, same files, same process.

    Both read the file from disk; the best of `slice_repeats` passes over `slice_files` files
    is kept (the machine is shared: the minimum is the least disturbed pass).
    """
    import pydicom
    from pydicom.uid import (ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit,
                             RLELossless)

    from components.dicom_example_gen import file_to_examples as fte
    from components.dicom_example_gen.allocator import keep_freed_memory
    from components.features import hash_uid
    from slice_files import slice_files

    keep_freed_memory()  # as DicomExampleGen's workers do (FileToExamplesDoFn.setup)
    syntaxes = (ExplicitVRLittleEndian, RLELossless, JPEG2000Lossless, JPEGBaseline8Bit)
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

            decode_ms, work_ms = (_best_ms(run, len(paths), settings.slice_repeats)
                                  for run in (decode, work))
            costs.append(SliceCost(f"{rows}x{cols}", syntax.name, decoder_name(syntax),
                                   decode_ms, work_ms))
            shutil.rmtree(folder, ignore_errors=True)
    return costs


def _best_ms(run, count: int, repeats: int) -> float:
    """CPU time of this process per call, best of `repeats` passes: on a machine shared with
    other engineers' jobs, wall time also counts the time their processes held our core."""
    run()  # warm: imports, plugin look-up, page cache
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        run()
        best = min(best, time.process_time() - started)
    return best / count * 1000


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
        parts.append(f"{name} {_best_ms(run, 1, repeats):.2f} ms -> "
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
    lines.append("JPEG-LS: decoded by pylibjpeg-libjpeg, but no JPEG-LS encoder is installed to "
                 "write a test file, so it has no row.")
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
