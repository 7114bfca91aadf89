"""The clinicians' web page, in a real headless Chromium, against the real local model server.

The page must show what the thin client library answers for the same files (thumbnails equal
to the preprocessed tensors, probabilities equal to serving.client.predict's), give every bad
upload a readable message while staying up, and keep file names out of its logs. The served
model is a test SavedModel at the full 512x512 input size.
"""
from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from support.browser import full_page_screenshot, headless_chromium, wait_for
from components.dicom.overlay import heat_rgba
from components.dicom.preprocessing import PreprocessedSlice, preprocess_path
from components.synthetic import generate_dataset
from support.rollout_fixtures import FAST, common, initial_config
from support.rollout_fixtures import mspipe as rollout
from serving.client.model_client import ModelClient
from serving.client.predict import predict_paths, read_studies
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.rollout.traffic import CanaryRouter
from serving.web.app import UNREACHABLE_MESSAGE as UNREACHABLE, start_web
from support.serving_fixtures import MODEL_NAME, free_port, running_server, save_version
from support.web_fixtures import (decode_thumbnail, files_of_kind, get_json, page_state, post_files,
                          study_folder, upload_in_page, wait_for_versions, zip_folders)

IMAGE_SIZE = 512
REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
PATIENT_LIKE_NAME = "Doe^Jane_MRN-4711-XYZ.dcm"
HOSTILE_NAME = "<img src=x onerror=\"document.title='owned'\">notes.txt"  # shown as text


MODEL_THRESHOLD = 0.37  # the served model's own operating threshold (not the 0.5 fallback)


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def page_model_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("web_models")
    save_version(root / MODEL_NAME, 1, image_size=IMAGE_SIZE, threshold=MODEL_THRESHOLD)
    write_model_config(root / "models.config",
                       build_model_config([model_entry(MODEL_NAME, root / MODEL_NAME)]))
    with running_server(root / "models.config") as server:
        yield server


@pytest.fixture(scope="module")
def client(page_model_server):
    with ModelClient(page_model_server.address) as model_client:
        yield model_client


@pytest.fixture(scope="module")
def web(page_model_server):
    with start_web(page_model_server.address, port=0) as handle:
        yield handle


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("web_dicom") / "hospital"
    manifest = generate_dataset(root, studies=2, slices_per_series=3)
    return manifest


@pytest.fixture(scope="module")
def chrome():
    with headless_chromium() as driver:
        yield driver


def sent_tensor(path: Path, frame_index: int) -> np.ndarray:
    outcomes = preprocess_path(path, image_size=IMAGE_SIZE)
    (item,) = [o for o in outcomes if isinstance(o, PreprocessedSlice)
               and o.frame_index == frame_index]
    return item.image[:, :, 0]


def assert_slices_match_client(shown_slices: list[dict], expected, path_of) -> None:
    """Every slice the client scored is on the page, same probability, same pixels."""
    expected_by_key = {(path_of(s.path), s.frame_index): s for s in expected.slices}
    assert {(s["name"], s["frame"]) for s in shown_slices} == set(expected_by_key)
    for shown in shown_slices:
        reference = expected_by_key[(shown["name"], shown["frame"])]
        assert shown["probability"] == reference.probability
        assert abs(float(shown["shown"]) - reference.probability) <= 0.0005
        assert shown["loaded"] == IMAGE_SIZE  # the <img> decoded in the browser
        np.testing.assert_array_equal(decode_thumbnail(shown["thumbnail"]),
                                      sent_tensor(Path(reference.path), shown["frame"]))


# ---------------------------------------------------------------------- browser tests
def test_study_zip_shows_what_the_client_library_answers(chrome, web, client, dataset,
                                                          tmp_path):
    study = study_folder(dataset)
    archive = zip_folders(tmp_path / "study.zip", study)
    upload_in_page(chrome, web, [archive])
    state = page_state(chrome)
    ARTIFACTS.mkdir(exist_ok=True)
    full_page_screenshot(chrome, ARTIFACTS / "web.png")
    assert state["error"] is None and state["result"]

    expected = predict_paths(client, [str(study)])
    relative = lambda path: Path(path).relative_to(study.parent).as_posix()  # noqa: E731
    (shown_study,) = state["studies"]
    assert shown_study["kind"] == "dicom" and len(shown_study["slices"]) == 3
    assert_slices_match_client(shown_study["slices"], expected, relative)
    (expected_study,) = expected.studies
    assert shown_study["probability"] == pytest.approx(expected_study.probability, rel=1e-12)
    assert shown_study["shown"] == f"{expected_study.probability:.3f}"
    assert {(r["name"], r["reason"]) for r in state["rejections"]} == {
        (relative(r.path), r.reason) for r in expected.rejections}
    # the served model's own threshold, the one `mspipe predict` reads from the same reply
    assert (expected.threshold, expected.threshold_source) == (pytest.approx(MODEL_THRESHOLD),
                                                               "model")
    assert expected_study.above_threshold == (expected_study.probability > MODEL_THRESHOLD)
    assert "decision threshold of 0.37, the model's own operating threshold" in \
        shown_study["text"]
    assert shown_study["answered_by"] == ("Answered by ms_mri version 1 (the server's default "
                                          "version; no version label).")
    assert "Model ms_mri · input 512×512 pixels · 12 file(s) received." == state["answered_by"]
    assert "Research tool, not a diagnosis" in state["page"]
    assert "Not an axial slice" in state["page"]
    # a thumbnail opens at the size the model saw
    chrome.find_element(By.CSS_SELECTOR, "figure.slice").click()
    assert wait_for(chrome, "const viewer = document.getElementById('viewer'); return "
                    "viewer.open && viewer.querySelector('img').naturalWidth;") == 512


def test_loose_dicom_files_and_a_png_in_one_upload(chrome, web, client, dataset, tmp_path):
    study = study_folder(dataset, 1)
    axial = files_of_kind(dataset, study, "axial")
    sagittal = files_of_kind(dataset, study, "sagittal")[:1]
    picture = tmp_path / "screenshot.png"
    Image.fromarray(sent_tensor(axial[0], 0)).save(picture)
    upload_in_page(chrome, web, [*axial, *sagittal, picture])
    state = page_state(chrome)
    assert state["error"] is None
    dicom, images = state["studies"]
    assert (dicom["kind"], images["kind"]) == ("dicom", "images")

    expected = predict_paths(client, [str(p) for p in axial])
    assert_slices_match_client(dicom["slices"], expected, lambda path: Path(path).name)
    mean = np.mean([s.probability for s in expected.slices])
    assert dicom["probability"] == pytest.approx(mean, rel=1e-12)
    (png_slice,) = images["slices"]
    assert png_slice["probability"] == predict_paths(client, [str(picture)]).slices[0].probability
    assert [(r["name"], r["reason"]) for r in state["rejections"]] == [
        (sagittal[0].name, "non_axial")]
    assert any("JPEG and PNG images carry no" in notice for notice in state["notices"])


def bad_inputs(dataset, folder: Path) -> dict[str, tuple[list[Path], str]]:
    """name -> (files to upload, text the page must show)."""
    study = study_folder(dataset)
    text_file = folder / HOSTILE_NAME
    text_file.write_text("Patient complains of numbness. Not an image.")
    axial = files_of_kind(dataset, study, "axial")[0]
    truncated = folder / "MR.cut.dcm"
    truncated.write_bytes(axial.read_bytes()[: axial.stat().st_size // 2])
    huge = folder / "huge.dcm"
    with open(huge, "wb") as stream:  # sparse: 200 MB on paper, nothing on disk
        stream.truncate(200_000_000)
    empty_zip = folder / "empty.zip"
    zipfile.ZipFile(empty_zip, "w").close()
    evil_zip = folder / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as archive:
        archive.writestr("study/MR.0001.dcm", axial.read_bytes())
        archive.writestr("../../etc/cron.d/evil", b"* * * * * root rm -rf /\n")
    return {
        "not_dicom": ([text_file], "Not a DICOM file, nor a JPEG or PNG image."),
        "truncated": ([truncated], "The file is cut short"),
        "sagittal_only": (files_of_kind(dataset, study, "sagittal"),
                          "The upload holds only sagittal, coronal or oblique slices"),
        "200_MB": ([huge], "The upload is 200 MB; the limit is 100 MB per upload"),
        "empty_zip": ([empty_zip], "is empty: it holds no files"),
        "zip_with_dotdot": ([evil_zip], "refused for safety: it holds a path that points "
                                        "outside its folder"),
    }


BAD_INPUTS = ("not_dicom", "truncated", "sagittal_only", "200_MB", "empty_zip",
              "zip_with_dotdot")


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_upload_gets_a_readable_message(case, chrome, web, dataset, tmp_path):
    paths, message = bad_inputs(dataset, tmp_path)[case]
    upload_in_page(chrome, web, paths)
    state = page_state(chrome)
    shown = state["error"] if state["error"] is not None else " ".join(
        state["notices"] + state["reasons_shown"])
    assert message in shown
    if state["error"] is None:  # content problems: listed per file, nothing scored
        assert state["studies"] == [] and state["rejections"]
        assert any("gave an image the model can score" in n for n in state["notices"])
    if case == "not_dicom":  # names are text on the page, never markup
        assert [r["name"] for r in state["rejections"]] == [HOSTILE_NAME]
        assert chrome.execute_script("return document.querySelectorAll('main img').length "
                                     "=== 0 && document.title !== 'owned';")
    if case == "zip_with_dotdot":
        full_page_screenshot(chrome, ARTIFACTS / "web-bad-zip.png")
    assert get_json(web.url + "healthz")[0] == 200  # still up


# ---------------------------------------------------------------------- HTTP-level tests
def test_server_refuses_a_200_mb_body_itself_and_stays_up(web):
    """The page checks sizes before sending; the server must not rely on that."""
    host, port = web.url.split("//")[1].rstrip("/").split(":")
    boundary = "b0undary"
    head = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; '
            f'filename="huge.dcm"\r\n\r\n').encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    size = 200_000_000
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    connection.putrequest("POST", "/api/predict")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + size + len(tail)))
    connection.endheaders()
    try:
        connection.send(head)
        chunk = bytes(1 << 20)
        for _ in range(size // len(chunk)):
            connection.send(chunk)
        connection.send(bytes(size % len(chunk)) + tail)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and close before the body is all sent
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413
    assert "the limit is 100 MB per upload" in answer["error"]
    assert get_json(web.url + "healthz")[0] == 200


def test_two_studies_in_one_zip_are_scored_apart(web, client, dataset, tmp_path):
    folders = [study_folder(dataset, 0), study_folder(dataset, 1)]
    status, answer = post_files(web.url, [("both.zip",
                                           zip_folders(tmp_path / "b.zip", *folders).read_bytes())])
    assert status == 200
    assert [s["title"] for s in answer["studies"]] == ["Study 1", "Study 2"]
    expected = predict_paths(client, [str(f) for f in folders]).studies
    assert [s["probability"] for s in answer["studies"]] == pytest.approx(
        [s.probability for s in expected], rel=1e-12)
    assert any("2 different DICOM studies" in n for n in answer["notices"])
    for study in answer["studies"]:  # no header UID goes back (names are the user's own)
        for slice_ in study["slices"]:
            del slice_["name"]
    assert "2.25." not in json.dumps(answer["studies"])


def test_unsafe_or_unusable_zips_are_refused(web, dataset):
    good = files_of_kind(dataset, study_folder(dataset), "axial")[0].read_bytes()

    def zipped(*members: tuple[str | zipfile.ZipInfo, bytes]) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for name, data in members:
                archive.writestr(name, data)
        return buffer.getvalue()

    link = zipfile.ZipInfo("study/link.dcm")
    link.external_attr = (0o120777 << 16)
    cases = {
        "absolute path": (zipped(("/etc/passwd", b"x")), "points outside its folder"),
        "windows ..": (zipped(("study\\..\\..\\x.dcm", good)), "points outside its folder"),
        "symlink": (zipped((link, b"/etc/shadow")), "symbolic link"),
        "damaged": (zipped(("study/a.dcm", good))[:-30], "damaged or incomplete"),
        "only macOS forks": (zipped(("__MACOSX/._a.dcm", b"x"), (".DS_Store", b"x")),
                             "is empty"),
    }
    for case, (data, message) in cases.items():
        status, answer = post_files(web.url, [("upload.zip", data)])
        assert status == 400 and message in answer["error"], case
    status, answer = post_files(web.url, [])
    assert status == 400 and "No file was received" in answer["error"]


def test_model_server_down_gives_a_readable_answer(caplog):
    """Plain words on the page (issue 12: it showed gRPC's raw 'UNAVAILABLE: failed to connect
    to all addresses ... Connection refused (111)'); the technical detail goes to the log."""
    caplog.set_level(logging.WARNING, logger="serving.web.app")
    with start_web(f"127.0.0.1:{free_port()}", port=0, timeout_s=2.0) as handle:
        status, info = get_json(handle.url + "api/info")
        assert status == 503 and info["error"] == UNREACHABLE
        assert get_json(handle.url + "healthz")[0] == 503
        status, answer = post_files(handle.url, [("a.png", b"\x89PNG\r\n\x1a\n")])
        assert status == 502 and answer["error"] == UNREACHABLE
    assert "the model server is not reachable; try again in a minute" in UNREACHABLE.lower()
    logged = [r.getMessage() for r in caplog.records if "model server error" in r.getMessage()]
    assert any(line.startswith("predict: model server error UNAVAILABLE") for line in logged)
    assert any("info: model server error" in line for line in logged)


def test_cli_serves_without_tensorflow_and_logs_no_file_names(page_model_server, dataset):
    axial = files_of_kind(dataset, study_folder(dataset), "axial")[0]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mspipe.main", "web", "--server", page_model_server.address,
         "--port", "0", "--log-level", "DEBUG"], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://\S+/", line).group(0)
        status, health = get_json(url + "healthz")
        assert status == 200 and health["model"]["version"] == 1
        status, answer = post_files(url, [(PATIENT_LIKE_NAME, axial.read_bytes()),
                                          ("Mustermann^Erika notes.txt", b"free text")])
        assert status == 200 and answer["studies"][0]["slices"][0]["name"] == PATIENT_LIKE_NAME
        maps = Path(f"/proc/{process.pid}/maps").read_text()
        assert "_pywrap_tensorflow_internal" not in maps and "libtensorflow" not in maps
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "predict: 2 files, 1 slices scored" in err
    for secret in ("Doe", "Jane", "4711", "Mustermann", "notes.txt", "2.25."):
        assert secret not in out + err


def test_the_answer_names_the_version_and_label_that_answered(tmp_path, dataset):
    """stable -> 1, canary -> 2: the page says which version answered and which labels point
    at it, and scores with exactly that version."""
    base = tmp_path / MODEL_NAME
    save_version(base, 1)
    save_version(base, 2)
    config = tmp_path / "models.config"
    write_model_config(config, build_model_config([model_entry(
        MODEL_NAME, base, versions=[1, 2], labels={"stable": 1, "canary": 2})]))
    axial = files_of_kind(dataset, study_folder(dataset), "axial")[0]
    # as TF Serving at startup, labels may name versions that are still loading
    with running_server(config, allow_version_labels_for_unavailable_models=True,
                        poll_seconds=0.2) as server, \
            ModelClient(server.address) as labelled_client:
        wait_for_versions(labelled_client, {1, 2})
        # no label: the server's default, the latest available version, which canary names
        for label, version, labels in (("stable", 1, ["stable"]), ("canary", 2, ["canary"]),
                                       (None, 2, ["canary"])):
            with start_web(server.address, port=0, label=label) as handle:
                status, answer = post_files(handle.url, [("a.dcm", axial.read_bytes())])
            assert status == 200
            answered_by = answer["studies"][0]["answered_by"]
            assert (answered_by["version"], answered_by["labels"], answered_by["routed_to"],
                    answer["model"]["requested_label"]) == (version, labels, None, label)
            expected = predict_paths(labelled_client, [str(axial)], label=label)
            assert answer["studies"][0]["slices"][0]["probability"] == \
                expected.slices[0].probability


def test_during_a_canary_rollout_each_study_goes_where_mspipe_predict_sends_it(
        tmp_path, model_source, dataset):
    model_source.good(1)
    model_source.good(2, logit_shift=0.3)
    config = initial_config(tmp_path, model_source)
    folders = [study_folder(dataset, 0), study_folder(dataset, 1)]
    upload = [("both.zip", zip_folders(tmp_path / "both.zip", *folders).read_bytes())]

    def answered(web) -> list[tuple[int, str | None]]:
        status, answer = post_files(web.url, upload)
        assert status == 200
        return [(s["answered_by"]["version"], s["answered_by"]["routed_to"])
                for s in answer["studies"]]

    with running_server(config, **FAST) as server, \
            start_web(server.address, port=0, model_config=str(config)) as web, \
            ModelClient(server.address) as cli_client:
        assert answered(web) == [(1, None), (1, None)]  # not rollout-managed yet
        code, _, err = rollout("start", *common(server, config), "--version", "2",
                               "--weight", "1")
        assert code == 0, err
        assert answered(web) == [(2, "canary"), (2, "canary")]
        assert get_json(web.url + "api/info")[1]["model"]["routing"] == {"weight": 1.0}
        code, _, err = rollout("weight", *common(server, config), "0.5")
        assert code == 0, err
        cli_router = CanaryRouter.from_rollout_state(cli_client, config)
        expected = [cli_router.label_for(study.key)
                    for study in read_studies([str(f) for f in folders], IMAGE_SIZE)[1]]
        assert [label for _, label in answered(web)] == expected
        code, _, err = rollout("weight", *common(server, config), "0")
        assert code == 0, err
        assert answered(web) == [(1, "stable"), (1, "stable")]


# ---------------------------------------------------------------------- keyboard only
ACTIVE = ("const a = document.activeElement; "
          "return a.id || (a.classList.contains('slice') ? 'slice' : a.tagName.toLowerCase());")


def press(chrome, *keys) -> str:
    """Send keys to whatever has the focus, as a keyboard would; the focused control after."""
    ActionChains(chrome).send_keys(*keys).perform()
    return chrome.execute_script(ACTIVE)


def tab_until(chrome, target: str, most: int = 20) -> list[str]:
    """Press Tab until `target` has the focus; the controls passed on the way."""
    seen = []
    for _ in range(most):
        seen.append(press(chrome, Keys.TAB))
        if seen[-1] == target:
            return seen
    raise AssertionError(f"Tab never reached {target}: {seen}")


def test_every_control_is_reached_and_used_by_keyboard(chrome, web, dataset):
    """Issue 12: "choose a study folder" could not be reached with Tab (a label for a hidden
    input). Every control of the form, each slice and the viewer's Close work by keyboard."""
    axial = files_of_kind(dataset, study_folder(dataset), "axial")[0]
    chrome.get(web.url)
    wait_for(chrome, "return document.body.dataset.state === 'ready'")
    chrome.execute_script(  # the OS file chooser is not the page's: record that it was asked
        "for (const id of ['files', 'folder']) document.getElementById(id).addEventListener("
        "'click', (event) => { event.preventDefault(); window.opened = id; });")
    assert tab_until(chrome, "files") == ["files"]  # the first control of the page
    press(chrome, Keys.SPACE)
    assert chrome.execute_script("return window.opened") == "files"
    assert press(chrome, Keys.TAB) == "choose-folder"
    press(chrome, Keys.ENTER)
    assert chrome.execute_script("return window.opened") == "folder"
    chrome.find_element(By.CSS_SELECTOR, "#files").send_keys(str(axial))  # what the chooser gives
    chrome.execute_script("document.getElementById('choose-folder').focus()")
    assert press(chrome, Keys.TAB) == "analyse"
    assert press(chrome, Keys.TAB) == "clear"
    ActionChains(chrome).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    assert chrome.execute_script(ACTIVE) == "analyse"
    press(chrome, Keys.ENTER)
    wait_for(chrome, "return document.body.dataset.state === 'done' && "
             "!document.getElementById('result').hidden", timeout_s=60)
    tab_until(chrome, "slice")
    press(chrome, Keys.ENTER)
    assert chrome.execute_script("return document.getElementById('viewer').open")
    assert chrome.execute_script(ACTIVE) == "button"  # the viewer's Close has the focus
    press(chrome, Keys.ENTER)
    assert not chrome.execute_script("return document.getElementById('viewer').open")
    press(chrome, Keys.SPACE)  # the focus is back on the slice; Space opens it too
    assert chrome.execute_script("return document.getElementById('viewer').open")
    press(chrome, Keys.ESCAPE)
    assert not chrome.execute_script("return document.getElementById('viewer').open")
    chrome.execute_script("document.getElementById('analyse').focus()")
    assert press(chrome, Keys.TAB) == "clear"
    press(chrome, Keys.ENTER)
    assert chrome.execute_script("return document.getElementById('chosen').textContent") \
        == "No file chosen."


# ---------------------------------------------------------------------- where the model looked
HEATMAP_STATE = """
return [...document.querySelectorAll('figure.slice')].map(figure => {
  const layer = figure.querySelector('img.heatmap');
  return {name: figure.dataset.name, frame: Number(figure.dataset.frame),
          src: layer && layer.src, loaded: layer && layer.naturalWidth,
          shown: layer !== null && getComputedStyle(layer).display !== 'none'};
});
"""


def test_heat_maps_overlay_each_slice_and_toggle_by_keyboard(chrome, web, client, dataset,
                                                            tmp_path):
    """The result comes without heat maps (they cost ~7x a probability); the toggle, which Tab
    reaches and Space switches, asks for them: each slice then carries the served model's
    Grad-CAM (serving_explain) of exactly the tensor it scored, as a layer over it."""
    study = study_folder(dataset)
    upload_in_page(chrome, web, [zip_folders(tmp_path / "study.zip", study)])
    assert chrome.execute_script("return !document.getElementById('heatmap-toggle').hidden")
    layers = chrome.execute_script(HEATMAP_STATE)
    assert len(layers) == 3 and not any(layer["src"] for layer in layers)  # none asked yet

    chrome.execute_script("document.getElementById('analyse').focus()")
    tab_until(chrome, "show-heatmaps")
    press(chrome, Keys.SPACE)
    wait_for(chrome, "return document.body.dataset.heatmaps === 'done' && [...document."
             "querySelectorAll('figure.slice img.heatmap')].every(l => l.naturalWidth)",
             timeout_s=60)
    layers = chrome.execute_script(HEATMAP_STATE)
    assert len(layers) == 3 and all(layer["shown"] for layer in layers)
    by_path = {path.relative_to(study.parent).as_posix(): path for path in study.rglob("*")}
    images = np.stack([sent_tensor(by_path[layer["name"]], layer["frame"])[..., None]
                       for layer in layers])
    heatmaps = client.explain_tensors(images).heatmaps
    assert heatmaps.max() == 1.0  # the test model has evidence to show
    for layer, heatmap in zip(layers, heatmaps):
        assert layer["loaded"] == IMAGE_SIZE
        np.testing.assert_array_equal(decode_thumbnail(layer["src"]), heat_rgba(heatmap))
    ARTIFACTS.mkdir(exist_ok=True)
    full_page_screenshot(chrome, ARTIFACTS / "web-heatmap.png")
    chrome.find_element(By.CSS_SELECTOR, "figure.slice").click()  # the viewer shows it too
    assert wait_for(chrome, "const layer = document.getElementById('viewer-heatmap'); return "
                    "document.getElementById('viewer').open && "
                    "getComputedStyle(layer).display !== 'none' && layer.naturalWidth;") == 512
    press(chrome, Keys.ESCAPE)
    chrome.execute_script("document.getElementById('show-heatmaps').focus()")
    press(chrome, Keys.SPACE)
    assert not any(layer["shown"] for layer in chrome.execute_script(HEATMAP_STATE))
    press(chrome, Keys.SPACE)  # on again: the layers are there, not asked for twice
    assert all(layer["shown"] for layer in chrome.execute_script(HEATMAP_STATE))
    assert len(chrome.find_elements(By.CSS_SELECTOR, "figure.slice img.heatmap")) == 3


def post_explain(url: str, document) -> tuple[int, dict]:
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    request = urllib.request.Request(url + "api/explain", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def png_url(pixels: np.ndarray) -> str:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def test_explain_api_answers_the_versions_heat_maps_and_refuses_bad_requests(web, client,
                                                                            dataset, tmp_path):
    study = study_folder(dataset)
    status, answer = post_files(web.url, [("s.zip", zip_folders(tmp_path / "s.zip",
                                                                study).read_bytes())])
    assert status == 200
    (scored,) = answer["studies"]
    assert scored["explainable"] and all("heatmap" not in item for item in scored["slices"])
    version = scored["answered_by"]["version"]
    thumbnails = [item["thumbnail"] for item in scored["slices"]]
    status, reply = post_explain(web.url, {"version": version, "images": thumbnails})
    assert status == 200 and len(reply["heatmaps"]) == len(thumbnails)
    images = np.stack([decode_thumbnail(url)[..., None] for url in thumbnails])
    for layer, heatmap in zip(reply["heatmaps"],
                              client.explain_tensors(images, version=version).heatmaps):
        np.testing.assert_array_equal(decode_thumbnail(layer), heat_rgba(heatmap))

    grey = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    refusals = {
        "not JSON": (b"{", 400, "not JSON"),
        "no version": ({"images": thumbnails}, 400, '"version"'),
        "no images": ({"version": version, "images": []}, 400, '"images"'),
        "not a PNG URL": ({"version": version, "images": ["hello"]}, 400,
                          "Image 1 of the heat map request is not a PNG data URL"),
        "broken PNG": ({"version": version, "images": [thumbnails[0], thumbnails[0][:200]]},
                       400, "Image 2 of the heat map request is not a readable PNG"),
        "wrong size": ({"version": version, "images": [png_url(grey[:64, :64])]}, 400,
                       "is L 64x64; the model's thumbnails are 8-bit grey 512x512"),
        "colour": ({"version": version, "images": [png_url(np.zeros((512, 512, 3),
                                                                     np.uint8))]}, 400, "RGB"),
        "unknown version": ({"version": version + 41, "images": thumbnails}, 409,
                            f"version {version + 41} is no longer served"),
        "too many": ({"version": version, "images": thumbnails * 6}, 413,
                     "At most 16 images per heat map request, got 18"),
    }
    for case, (document, code, text) in refusals.items():
        status, reply = post_explain(web.url, document)
        assert status == code and text in reply["error"], (case, status, reply)
    status, _ = post_explain(web.url, {"version": version, "images": thumbnails[:1]})
    assert status == 200  # and the page's server is still up
