"""Helpers of tests/integration/test_web.py: the synthetic study on disk, the page seen from a
browser (selenium, see browser.py), and plain HTTP calls to the page's API (multipart built by hand: no client package needed)."""
from __future__ import annotations

import base64
import io
import json
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By

from support.browser import wait_for
from serving.client.model_client import ModelClient


def study_folder(manifest, index: int = 0) -> Path:
    study_uid = sorted(manifest.studies)[index]
    record = manifest.studies[study_uid]
    return manifest.out_dir / record.scanner / study_uid


def files_of_kind(manifest, study: Path, kind: str) -> list[Path]:
    paths = [manifest.out_dir / r.path for r in manifest.files if r.kind == kind]
    return sorted(p for p in paths if study in p.parents)


def zip_folders(target: Path, *folders: Path) -> Path:
    """A zip as a user makes it: the study folder itself at the top, its files below."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for folder in folders:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder.parent).as_posix())
    return target


def upload_in_page(chrome: WebDriver, web, paths: list[Path]) -> None:
    """Choose `paths` in the page's file input (newline-separated: several files) and analyse."""
    chrome.get(web.url)
    wait_for(chrome, "return document.body.dataset.state === 'ready' && "
             "!document.getElementById('model-line').textContent.startsWith('Connecting')")
    chrome.find_element(By.CSS_SELECTOR, "#files").send_keys("\n".join(str(p) for p in paths))
    chrome.find_element(By.CSS_SELECTOR, "#analyse").click()
    wait_for(chrome, "return document.body.dataset.state === 'done';", timeout_s=60)
    wait_for(chrome, "return [...document.images].every(image => image.complete);")


PAGE_STATE = """
const shown = (id) => !document.getElementById(id).hidden;
return {
  error: shown('error') ? document.getElementById('error').textContent : null,
  result: shown('result'),
  answered_by: document.getElementById('answered-by').textContent,
  notices: [...document.querySelectorAll('#notices li')].map(li => li.textContent),
  studies: [...document.querySelectorAll('article.study')].map(study => ({
    kind: study.dataset.kind,
    probability: Number(study.dataset.probability),
    shown: study.querySelector('.study-probability').textContent,
    answered_by: study.querySelector('.study-answered-by').textContent,
    text: study.textContent,
    slices: [...study.querySelectorAll('figure.slice')].map(figure => ({
      name: figure.dataset.name, frame: Number(figure.dataset.frame),
      probability: Number(figure.dataset.probability),
      shown: figure.querySelector('.slice-probability').textContent,
      thumbnail: figure.querySelector('img.thumbnail').src,
      loaded: figure.querySelector('img.thumbnail').naturalWidth})),
  })),
  rejections: [...document.querySelectorAll('tr.rejection')].map(row => ({
    name: row.dataset.name, reason: row.dataset.reason})),
  reasons_shown: [...document.querySelectorAll('.rejection-message')].map(td => td.textContent),
  page: document.body.innerText,
};
"""


def page_state(chrome: WebDriver) -> dict:
    return chrome.execute_script(PAGE_STATE)


def decode_thumbnail(data_url: str) -> np.ndarray:
    header, payload = data_url.split(",", 1)
    assert header == "data:image/png;base64"
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    if image.mode == "P":  # a heat map layer: palette + per-entry opacity -> RGBA
        image = image.convert("RGBA")
    return np.asarray(image)


def get_json(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "----mspipe-test-boundary-7d1f"
    parts = [f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
             f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
             + data + b"\r\n" for name, data in files]
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), \
        f"multipart/form-data; boundary={boundary}"


def post_files(url: str, files: list[tuple[str, bytes]]) -> tuple[int, dict]:
    body, content_type = multipart(files)
    request = urllib.request.Request(url + "api/predict", data=body, method="POST",
                                     headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for_versions(model_client: ModelClient, versions: set[int], timeout_s: float = 60):
    deadline = time.monotonic() + timeout_s
    while {s.version for s in model_client.model_status() if s.state == "AVAILABLE"} < versions:
        assert time.monotonic() < deadline, f"versions {versions} did not load"
        time.sleep(0.1)
