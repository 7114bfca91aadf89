"""The clinician's wait: a 30-slice study .zip uploaded through the web page, until the result is
on screen, split into phases, beside the in-process model calls for the same slices.

    .venv/bin/python bench/web.py [--slices 30] [--repeats 3] [--no-browser]

Real parts only: the Trainer's architecture at 512x512 (untrained weights: compute is what
matters) exported with its real signatures and served by `mspipe serve` in its own process; the
page by `mspipe web` in its own process, talking to it over gRPC; a synthetic study (uncompressed
MR, components/synthetic, plus its few sagittal/coronal slices, which the page rejects) zipped as
a user zips a folder. Two drivers upload it:
- browser: headless Chromium (selenium, as tests/support/browser.py) chooses the zip in the page
  and clicks Analyse; the clock runs from the click until the page says done and every thumbnail
  is decoded;
- HTTP: a multipart POST to /api/predict from this process (no rendering), for comparison.
Then each driver asks for the heat maps as the page does when the user turns them on (POST
/api/explain with each study's thumbnails, `explain_batch` of them a request since 05:20;
the figures below were taken with one request per study): column "heat maps", from the toggle's click until
every layer is decoded (browser) or the answer is parsed (HTTP), beside the in-process
`serving_explain` call for the same slices.
The page's `Server-Timing` header (serving/web/timing.py) splits the server's part: upload
(body received and parsed), preprocess (zip inflated, DICOM decoded, preprocessing), model (every
model-server call: metadata, labels, one Predict of the whole study) and render (thumbnails +
JSON); the browser adds the answer's download and its own rendering (DOM and images).
Beside them, in this process: the same slices' preprocessing, and the model called in-process
once per slice (the sum), in batches of 4, and once for the whole batch.

Findings (shared 2-core machine, load average 11-12 from other engineers' tests):
- The PNG thumbnails were the largest part of the wait: Pillow's default zlib level cost 50 ms
  CPU per 512x512 slice (render 5.6-5.8 s of a 9.3-11 s wait in a first run); at level 1
  (still lossless, 13% more bytes) 12.6 ms, and render is now 1.4 s of 5.1 s.
- Model: the page sends the whole study as one Predict (the client's max_batch is 32), which at
  512x512 on 2 CPU cores is slower than single-slice calls: in-process, 30 single calls took
  776 ms, batches of 4 1139 ms, one batch of 30 1791 ms (activations of 30 images do not fit
  in cache). Smaller batches for CPU serving are a candidate (serving/client/settings.py
  max_batch), not changed here: the client's default serves GPUs and TF Serving batching too.
- Preprocessing in the page (874-1187 ms) is the in-process cost (962 ms): zip inflation and
  the shared preprocessing, nothing added.

2026-12-01, load average 11.0, commit after 7e3ae7a:  bench/web.py --repeats 3
web page benchmark: 30 slices kept of a 4.8 MB study zip, real Trainer architecture at 512x512
  driver   total  before request  upload  preprocess  model  render  download  browser render (ms)
    HTTP    5038               -      26        1187   2626    1408         -               -
 browser    5103               2      21         874   2118    1382        25             290
in this process, same slices (ms): preprocess 962, model: sum of per-slice calls 776,
batches of 4 1139, one batched call 1791
browser: total / (in-process preprocess + batched model) = 1.85; model phase / in-process
batched call = 1.18 (HTTP: 1.83, 1.47)

2026-12-02, the quiet machine (load 1.5), after issue 14's guided Grad-CAM heat maps and this
round's ingest work:  bench/web.py
  driver   total  before request  upload  preprocess  model  render  download  browser render (ms)
    HTTP    7768               -      11         317   5547    1682         -               -
 browser    8241               3      20         285   5389    2070        56             412
in this process, same slices (ms): preprocess 176, model: sum of per-slice calls 486,
batches of 4 501, one batched call 406
browser: total / (in-process preprocess + batched model) = 14.16; model phase / in-process
batched call = 13.28 (HTTP: 13.35, 13.67)
- Preprocessing in the page is now 285-317 ms for 30 slices (in process 176 ms; 962 ms in the
  run above, at load 11, before the ingest work).
- The model phase is now the heat maps: the page asks the scoring version for every slice's
  Grad-CAM (`serving_explain`), and that signature costs ~150 ms a 512x512 slice against
  ~20 ms for the probability (ModelClient, same server: explain of 30 slices 4.4-5.2 s at
  max_batch 32, 4 or 1; predict 0.65 s). The probabilities alone would make the wait ~2.5 s.
  Computing heat maps only when the user turns them on (a second request for the slices
  shown) is the change this points to; not made this round.

2026-12-02 03:26, quiet machine (load 1.2), heat maps now asked for only when turned on
(POST /api/explain):  bench/web.py
  driver   total  before request  upload  preprocess  model  render  download  browser render  heat maps (ms)
    HTTP    1273               -       9         292    476     470         -               -       6816
 browser    1525               2      23         244    492     574        18             206       6806
in this process, same slices (ms): preprocess 205, model: sum of per-slice calls 570, batches of
4 482, one batched call 453; heat maps, one batched explain call 1646
- The wait for the result on screen fell from 8.2 s to 1.5 s (browser; 1.09x the in-process
  batched call in the model phase).
- Heat maps, when asked for, took 6.8 s, 4.1x the in-process explain call. Measured (ad hoc,
  8 slices): Servable.run of serving_explain in the server process 0.42 s, the same through
  gRPC 1.15 s. The gap was protobuf, not TensorFlow: the server writes outputs as typed values
  (float_val, as TF Serving replies) and protobuf's Python API copies 2 M floats one Python
  number at a time (0.27 s to write, 0.38 s to read), and the C++ protobuf runtime's first
  access to a parsed reply's `outputs` map copied each entry value by value (0.08 s). Now
  serving/api/tensor_codec.py writes and reads float_val/double_val as byte runs (same
  messages) and the client reads the outputs map from the wire form: 8 slices 0.5 s.
After that (03:46, load 1.6):  bench/web.py
  driver   total  before request  upload  preprocess  model  render  download  browser render  heat maps (ms)
    HTTP    1109               -       9         253    409     400         -               -       2769
 browser    1441               2      25         256    464     475        15             176       3586
in this process, same slices (ms): preprocess 197, model: sum of per-slice calls 606, batches of
4 470, one batched call 494; heat maps, one batched explain call 1792
browser: total / (in-process preprocess + batched model) = 2.09; model phase / in-process
batched call = 0.94; heat maps / in-process explain call = 2.00 (HTTP: 1.60, 0.83, 1.54).
The result is on screen in 1.4 s; the heat maps follow in 3.6 s when asked for (2.8 s over
HTTP: the rest is the browser's upload of 30 thumbnails as JSON, the server's PNG decode and
heat-map encode, and the layers' decode).
The explain request's Server-Timing, split (04:11, load 1.5; the same code): upload 14-17 ms,
preprocess (30 thumbnails decoded) 231-248, model 1875-2423, render 1580-1595: the layers,
coloured in float64 (49 ms a layer) and written as RGBA PNGs. Now a layer is the heat in 256
levels (components/dicom/overlay.py heat_levels) sent as a palette PNG with per-entry opacity,
which decodes to exactly heat_rgba (tests/integration/test_web.py compares them):
04:16, load 1.5:  bench/web.py
  driver   total  before request  upload  preprocess  model  render  download  browser render  heat maps (ms)
    HTTP     997               -       6         192    364     416         -               -       2114
 browser    1466               2      27         244    483     483        18             174       2990
in this process (ms): preprocess 173, model: one batched call 446; heat maps, one batched
explain call 1646. Heat maps' server phases: render 156-207 ms (was ~1590), model 1683-2200.
browser: heat maps / in-process explain call = 1.82 (HTTP 1.28); result on screen 1.47 s.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(ROOT / "tests"))  # tests/support/browser.py: the same headless Chromium

import numpy as np  # noqa: E402


def bench_serving():
    """bench/serving.py's helpers (model export, free port, server start): one home."""
    spec = importlib.util.spec_from_file_location("bench_serving", ROOT / "bench" / "serving.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def study_zip(work: Path, slices: int) -> tuple[Path, list[tuple[str, bytes]]]:
    """One synthetic study of `slices` axial MR slices (uncompressed), zipped as its folder;
    also its files as (name, bytes)."""
    from pydicom.uid import ExplicitVRLittleEndian

    from components.synthetic import generate_dataset

    manifest = generate_dataset(work / "export", studies=2, seed=13, slices_per_series=slices,
                                plant_defects=False, transfer_syntaxes=(ExplicitVRLittleEndian,))
    study_uid = sorted(manifest.studies)[0]
    folder = manifest.out_dir / manifest.studies[study_uid].scanner / study_uid
    files = [(path.relative_to(folder.parent).as_posix(), path.read_bytes())
             for path in sorted(folder.rglob("*")) if path.is_file()]
    target = work / "study.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return target, files


def start_web(server_address: str) -> tuple[subprocess.Popen, str]:
    """`mspipe web` on a free port, in its own process; returns it and the page's URL."""
    command = [sys.executable, "-m", "mspipe.main", "web", "--server", server_address,
               "--port", "0", "--log-level", "WARNING"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    line = process.stdout.readline()
    if "Web page" not in line:
        process.kill()
        raise SystemExit(f"web page did not start: {line!r}")
    return process, line.split(": ", 1)[1].split()[0]


def server_timing(header: str) -> dict[str, float]:
    """{'upload': ms, ...} from a Server-Timing header."""
    phases = {}
    for entry in header.split(","):
        name, _, duration = entry.strip().partition(";dur=")
        if name:
            phases[name] = float(duration)
    return phases


BROWSER_TIMES = """
const done = arguments[arguments.length - 1];
Promise.all([...document.images].map(image => image.decode().catch(() => null))).then(() => {
  const entry = performance.getEntriesByType('resource')
      .filter(e => e.name.endsWith('/api/predict')).pop();
  done({clicked: window.__clicked, rendered: performance.now(), fetch: entry.startTime,
        responseStart: entry.responseStart, responseEnd: entry.responseEnd,
        server: Object.fromEntries(entry.serverTiming.map(t => [t.name, t.duration])),
        slices: document.querySelectorAll('#result img').length});
});
"""


HEATMAP_TIMES = """
const done = arguments[arguments.length - 1];
const layers = [...document.querySelectorAll('#result img.heatmap')];
Promise.all(layers.map(image => image.decode().catch(() => null))).then(() => {
  const server = {};
  for (const entry of performance.getEntriesByType('resource')
      .filter(e => e.name.endsWith('/api/explain') && e.startTime >= window.__toggled))
    for (const t of entry.serverTiming) server[t.name] = (server[t.name] || 0) + t.duration;
  done({toggled: window.__toggled, rendered: performance.now(), layers: layers.length, server});
});
"""


def through_browser(url: str, zip_path: Path, repeats: int) -> list[dict]:
    """Each repeat: a fresh page load, choose the zip, click, wait until done and decoded;
    then turn the heat maps on and wait until every layer is decoded."""
    from selenium.webdriver.common.by import By

    from support.browser import headless_chromium, wait_for

    rows = []
    with headless_chromium(timeout_s=300) as chrome:
        for _ in range(repeats + 1):  # the first is a warm-up (page cache, gRPC channel)
            chrome.get(url)
            wait_for(chrome, "return document.body.dataset.state === 'ready' && "
                     "!document.getElementById('model-line').textContent"
                     ".startsWith('Connecting')", timeout_s=120)
            chrome.find_element(By.CSS_SELECTOR, "#files").send_keys(str(zip_path))
            chrome.execute_script("document.getElementById('analyse').addEventListener("
                                  "'click', () => { window.__clicked = performance.now(); }, "
                                  "{capture: true});")
            chrome.find_element(By.CSS_SELECTOR, "#analyse").click()
            wait_for(chrome, "return document.body.dataset.state === 'done';", timeout_s=300)
            times = chrome.execute_async_script(BROWSER_TIMES)
            chrome.execute_script("window.__toggled = performance.now(); "
                                  "document.getElementById('show-heatmaps').click();")
            wait_for(chrome, "return document.body.dataset.heatmaps === 'done';", timeout_s=300)
            heat = chrome.execute_async_script(HEATMAP_TIMES)
            assert heat["layers"] == times["slices"], heat  # one layer per thumbnail
            rows.append({
                "heat maps": heat["rendered"] - heat["toggled"],
                **{f"heat maps: {name}": ms for name, ms in heat["server"].items()},
                "total": times["rendered"] - times["clicked"],
                "before request": times["fetch"] - times["clicked"],
                **times["server"],
                "download": times["responseEnd"] - times["responseStart"],
                "browser render": times["rendered"] - times["responseEnd"],
                "slices": times["slices"],
                "server total": times["responseStart"] - times["fetch"]})
    return rows[1:]


def through_http(url: str, zip_path: Path, repeats: int) -> list[dict]:
    """Each repeat: one multipart POST of the zip; the JSON answer parsed, nothing rendered."""
    import requests

    data = zip_path.read_bytes()
    rows = []
    with requests.Session() as session:
        batch = session.get(url + "api/info", timeout=60).json()["limits"]["explain_batch"]
        for _ in range(repeats + 1):
            started = time.perf_counter()
            reply = session.post(url + "api/predict", timeout=300,
                                 files={"files": ("study.zip", data, "application/zip")})
            reply.raise_for_status()
            answer = reply.json()
            total = (time.perf_counter() - started) * 1000
            started, heat_phases = time.perf_counter(), {}
            for study in answer["studies"]:  # what the page sends when heat maps are turned on
                thumbnails = [item["thumbnail"] for item in study["slices"]]
                for first in range(0, len(thumbnails), batch):
                    chunk = thumbnails[first:first + batch]
                    explained = session.post(url + "api/explain", timeout=300, json={
                        "version": study["answered_by"]["version"], "images": chunk})
                    explained.raise_for_status()
                    assert len(explained.json()["heatmaps"]) == len(chunk)
                    for name, ms in server_timing(explained.headers["Server-Timing"]).items():
                        heat_phases[f"heat maps: {name}"] = heat_phases.get(
                            f"heat maps: {name}", 0.0) + ms
            rows.append({"total": total, **server_timing(reply.headers["Server-Timing"]),
                         "heat maps": (time.perf_counter() - started) * 1000, **heat_phases,
                         "slices": sum(study["slice_count"] for study in answer["studies"])})
    return rows[1:]


def in_process(files: list[tuple[str, bytes]], version_dir: Path, repeats: int) -> dict:
    """The same files preprocessed here, and the model called here: per slice and batched."""
    import tensorflow as tf

    from components import contract
    from components.dicom.slices import NamedInput, files_to_slices

    started = time.perf_counter()
    slices = [item.image for file in files_to_slices(
        (NamedInput(name, data, "upload") for name, data in files), image_size=512)
        for item in file.slices]
    preprocess = (time.perf_counter() - started) * 1000
    images = np.stack(slices)
    signatures = tf.saved_model.load(str(version_dir)).signatures
    function = signatures[contract.SERVING_DEFAULT]
    explain = signatures[contract.SERVING_EXPLAIN]

    def call(batch):
        function(**{contract.IMAGE_INPUT: tf.constant(batch)})[contract.PROBABILITY].numpy()

    def heat(batch):
        explain(**{contract.IMAGE_INPUT: tf.constant(batch)})[contract.HEATMAP].numpy()

    call(images[:1]), call(images)  # warm-up: graph optimisation for both shapes
    call(images[:4]), heat(images)
    per_slice, by_four, batched, explained = [], [], [], []
    for _ in range(repeats):
        for times, size in ((per_slice, 1), (by_four, 4), (batched, len(images))):
            started = time.perf_counter()
            for index in range(0, len(images), size):
                call(images[index:index + size])
            times.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        heat(images)
        explained.append((time.perf_counter() - started) * 1000)
    return {"slices": len(images), "preprocess": preprocess,
            "model, sum of per-slice calls": statistics.median(per_slice),
            "model, batches of 4": statistics.median(by_four),
            "model, one batched call": statistics.median(batched),
            "heat maps, one batched explain call": statistics.median(explained)}


COLUMNS = ("total", "before request", "upload", "preprocess", "model", "render", "download",
           "browser render", "heat maps")


def print_table(drivers: dict[str, list[dict]], reference: dict, zip_bytes: int,
                args) -> None:
    print(f"\nweb page benchmark: {reference['slices']} slices kept of a {zip_bytes / 1e6:.1f} MB "
          f"study zip, real Trainer architecture at 512x512, median of {args.repeats}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'driver':>8} " + " ".join(f"{name:>14}" for name in COLUMNS) + "   (ms)")
    for driver, rows in drivers.items():
        cells = []
        for name in COLUMNS:
            values = [row[name] for row in rows if name in row]
            cells.append(f"{statistics.median(values):14.0f}" if values else f"{'-':>14}")
        print(f"{driver:>8} " + " ".join(cells))
    print("in this process, same slices (ms): " + ", ".join(
        f"{name} {value:.0f}" for name, value in reference.items() if name != "slices"))
    for driver, rows in drivers.items():
        split = {name.split(": ", 1)[1]: statistics.median(row[name] for row in rows)
                 for name in rows[0] if name.startswith("heat maps: ")}
        print(f"{driver}: heat maps' server phases (ms): " + ", ".join(
            f"{name} {ms:.0f}" for name, ms in split.items()))
    batched = reference["model, one batched call"]
    for driver, rows in drivers.items():
        total = statistics.median(row["total"] for row in rows)
        model = statistics.median(row["model"] for row in rows)
        heat = statistics.median(row["heat maps"] for row in rows)
        print(f"{driver}: total / (in-process preprocess + batched model) = "
              f"{total / (reference['preprocess'] + batched):.2f}; "
              f"model phase / in-process batched call = {model / batched:.2f}; heat maps / "
              f"in-process explain call = "
              f"{heat / reference['heat maps, one batched explain call']:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=30, help="axial slices in the study")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-browser", action="store_true", help="HTTP driver only")
    args = parser.parse_args()

    from components import contract
    from serving.api.model_config import build_model_config, model_entry, write_model_config

    serving_bench = bench_serving()
    work = Path(tempfile.mkdtemp(prefix="bench_web_"))
    zip_path, files = study_zip(work, args.slices)
    base_path = work / contract.DEFAULT_MODEL_NAME
    version_dir = serving_bench.export_model(base_path, 512)
    write_model_config(work / "models.config", build_model_config(
        [model_entry(contract.DEFAULT_MODEL_NAME, base_path)]))
    server, address = serving_bench.start_server(work / "models.config",
                                                 serving_bench.free_port())
    web = None
    try:
        web, url = start_web(address)
        drivers = {"HTTP": through_http(url, zip_path, args.repeats)}
        if not args.no_browser:
            drivers["browser"] = through_browser(url, zip_path, args.repeats)
        reference = in_process(files, version_dir, args.repeats)
        print_table(drivers, reference, zip_path.stat().st_size, args)
    finally:
        for process in (web, server):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
