"""The web page's memory stays bounded whatever the sequence of uploads (issue 12, item 4).

Measured on the real process (`mspipe web` in a subprocess, against a local model server):
its peak resident set (VmHWM, reset through /proc/<pid>/clear_refs after a warm-up upload)
minus its resident set before the uploads.

Stated bounds:
- 20 uploads in a row, each at the upload limit (20 MB here, `--max-upload-mb 20`), grow the
  peak by less than 3x the limit: one upload in flight (its parsed buffer, the files it
  holds, the slices being scored) and nothing kept from the ones before. Before the fix each
  upload stayed referenced through a request<->environ cycle until a garbage collection, ~1x
  the limit per upload (1.76 GB after 18 uploads of 99 MB).
- A zip that honestly unpacks to 395 MB (under the 400 MB default) grows the peak by less
  than 100 MB (the default upload limit, a quarter of what it unpacks to): members are
  inflated one at a time. Before the fix: 0.95 GB.
"""
from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from components.dicom.preprocessing import PNG_SIGNATURE
from components.synthetic import generate_dataset
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.web.settings import MB
from support.serving_fixtures import MODEL_NAME, running_server, save_version
from support.web_fixtures import files_of_kind, post_files, study_folder

REPO = Path(__file__).resolve().parents[2]
LIMIT_MB = 20
UPLOADS = 20
UPLOAD_GROWTH_BOUND = 3 * LIMIT_MB * MB
ZIP_UNPACKED = 395 * MB
ZIP_GROWTH_BOUND = 100 * MB


@pytest.fixture(scope="module")
def model_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("memory_models")
    save_version(root / MODEL_NAME, 1, image_size=64)
    write_model_config(root / "models.config",
                       build_model_config([model_entry(MODEL_NAME, root / MODEL_NAME)]))
    with running_server(root / "models.config") as server:
        yield server


@pytest.fixture(scope="module")
def axial_files(tmp_path_factory) -> list[tuple[str, bytes]]:
    manifest = generate_dataset(tmp_path_factory.mktemp("memory_dicom") / "hospital",
                                studies=2, slices_per_series=3)
    paths = files_of_kind(manifest, study_folder(manifest), "axial")
    return [(f"slice{i}.dcm", path.read_bytes()) for i, path in enumerate(paths)]


class WebProcess:
    """`mspipe web` in a subprocess; its URL and its memory as /proc reports it."""

    def __init__(self, server_address: str, *extra: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mspipe.main", "web", "--server", server_address,
             "--port", "0", *extra], cwd=REPO, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = re.search(r"http://\S+/", self.process.stdout.readline()).group(0)
        self.stderr: list[str] = []  # drained, so a chatty log never blocks the process
        threading.Thread(target=lambda: self.stderr.extend(self.process.stderr),
                         daemon=True).start()

    def memory(self, field: str) -> int:
        """VmRSS (now) or VmHWM (peak since the last reset), in bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.M).group(1)) * 1024

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak_growth(self) -> int:
        return self.memory("VmHWM") - self.baseline

    def start_measuring(self) -> None:
        self.baseline = self.memory("VmRSS")
        self.reset_peak()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=30)


def upload_at_the_limit(axial_files: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Real slices (scored) plus one filler file (not_dicom) up to exactly the limit."""
    filler = LIMIT_MB * MB - sum(len(data) for _, data in axial_files)
    return [*axial_files, ("notes.bin", os.urandom(filler))]


def test_twenty_uploads_at_the_limit_keep_memory_bounded(model_server, axial_files):
    web = WebProcess(model_server.address, "--max-upload-mb", str(LIMIT_MB))
    try:
        upload = upload_at_the_limit(axial_files)
        status, answer = post_files(web.url, upload)  # warm-up: imports, first buffers
        assert status == 200 and answer["studies"][0]["slice_count"] == len(axial_files)
        web.start_measuring()
        for _ in range(UPLOADS):
            status, answer = post_files(web.url, upload)
            assert status == 200 and len(answer["rejections"]) == 1
        growth, peak = web.peak_growth(), web.memory("VmHWM")
    finally:
        web.stop()
    print(f"web peak RSS growth over {UPLOADS} uploads of {LIMIT_MB} MB: "
          f"{growth / MB:.0f} MB (bound {UPLOAD_GROWTH_BOUND / MB:.0f} MB), peak RSS "
          f"{peak / MB:.0f} MB")
    assert growth < UPLOAD_GROWTH_BOUND


def zip_unpacking_to(size: int, axial_files: list[tuple[str, bytes]]) -> bytes:
    """A study folder's slices plus 40 large members (a PNG signature, then zeros: each must
    be inflated whole and judged by the preprocessing): tiny zipped, `size` unpacked."""
    members = 40
    filler = (size - sum(len(data) for _, data in axial_files)) // members
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        for name, data in axial_files:
            archive.writestr(f"study/{name}", data)
        for index in range(members):
            archive.writestr(f"study/extra/block{index:02d}.png",  # distinct: each is scored
                             PNG_SIGNATURE + bytes([index])
                             + bytes(filler - len(PNG_SIGNATURE) - 1))
    return buffer.getvalue()


def test_a_zip_unpacking_to_395_mb_is_read_member_by_member(model_server, axial_files):
    data = zip_unpacking_to(ZIP_UNPACKED, axial_files)
    assert len(data) < 1 * MB
    web = WebProcess(model_server.address)
    try:
        post_files(web.url, axial_files)  # warm-up
        web.start_measuring()
        status, answer = post_files(web.url, [("study.zip", data)])
        assert status == 200 and answer["studies"][0]["slice_count"] == len(axial_files)
        assert [r["reason"] for r in answer["rejections"]] == ["unreadable_image"] * 40
        growth = web.peak_growth()
    finally:
        web.stop()
    print(f"web peak RSS growth for a zip unpacking to {ZIP_UNPACKED / MB:.0f} MB: "
          f"{growth / MB:.0f} MB (bound {ZIP_GROWTH_BOUND / MB:.0f} MB)")
    assert growth < ZIP_GROWTH_BOUND
