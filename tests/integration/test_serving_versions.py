"""Versions come and go without failed requests; labels and reloads follow TF Serving's rules."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import pytest

from serving.client.model_client import ModelClient
from serving.api.errors import ServingError
from serving.api.model_config import build_model_config, model_entry, write_model_config
from support.waiting import FAST, wait_until
from support.serving_fixtures import (MODEL_NAME, copy_version, free_port, random_images,
                              running_server, save_version)





def states(client: ModelClient) -> dict[int, str]:
    return {s.version: s.state for s in client.model_status()}


class PredictLoop(threading.Thread):
    """A client predicting in a loop, recording which version answered and every failure."""

    def __init__(self, address: str):
        super().__init__(daemon=True)
        self.client = ModelClient(address, retries=0, timeout_s=10)
        self.images = random_images(1)
        self.versions: list[int] = []
        self.failures: list[str] = []
        self.stop_event = threading.Event()

    def run(self):
        while not self.stop_event.is_set():
            try:
                self.versions.append(self.client.predict_tensors(self.images).model_version)
            except ServingError as error:
                self.failures.append(str(error))

    def finish(self):
        self.stop_event.set()
        self.join(timeout=10)
        self.client.close()


def test_new_version_rolls_in_while_a_client_loops(tmp_path):
    base = tmp_path / MODEL_NAME
    first = save_version(base, 1)
    write_model_config(tmp_path / "models.config",
                       build_model_config([model_entry(MODEL_NAME, base)]))  # latest 1
    with running_server(tmp_path / "models.config", **FAST) as server:
        loop = PredictLoop(server.address)
        loop.start()
        wait_until(lambda: len(loop.versions) > 20, what="first answers")
        # a half-written version (no saved_model.pb yet) must be ignored
        partial = base / "5"
        (partial / "variables").mkdir(parents=True)
        save_version(base, 2)  # temp folder, then rename: appears whole
        wait_until(lambda: loop.versions and loop.versions[-1] == 2, what="version 2")
        count = len(loop.versions)
        wait_until(lambda: len(loop.versions) > count + 20, what="more answers")
        copy_version(first, base, 3)  # the same SavedModel republished as version 3
        wait_until(lambda: loop.versions[-1] == 3, what="version 3")
        loop.finish()
        client = ModelClient(server.address)
        wait_until(lambda: states(client).get(2) == "END", what="version 2 unloaded")
        assert states(client) == {1: "END", 2: "END", 3: "AVAILABLE"}  # 5 is still ignored
        client.close()
    assert loop.failures == []
    seen = loop.versions
    assert seen[0] == 1 and seen[-1] == 3
    assert seen == sorted(seen)  # never back to an older version once a newer one served


def test_version_labels_follow_tf_serving_rules(tmp_path):
    base = tmp_path / MODEL_NAME
    for version in (1, 2):
        save_version(base, version)
    path = tmp_path / "models.config"
    write_model_config(path, build_model_config([
        model_entry(MODEL_NAME, base, versions=[1], labels={"stable": 1})]))
    # As TF Serving: labels are checked before anything loads, so startup needs the flag.
    with pytest.raises(ServingError) as refused:
        with running_server(path, **FAST):
            pass
    assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
    with running_server(path, allow_version_labels_for_unavailable_models=True, **FAST) as server:
        client = ModelClient(server.address)
        assert client.predict_tensors(random_images(1), label="stable").model_version == 1

        def reload(versions, labels):
            client.reload_config(build_model_config([
                model_entry(MODEL_NAME, base, versions=versions, labels=labels)]))

        with pytest.raises(ServingError) as moved:  # moving a label to an unloaded version
            reload([1, 2], {"stable": 2})
        assert moved.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "not currently available" in moved.value.details
        assert client.predict_tensors(random_images(1), label="stable").model_version == 1
        reload([1, 2], {"stable": 1})  # step 1: load the canary
        wait_until(lambda: states(client).get(2) == "AVAILABLE", what="version 2 loaded")
        reload([1, 2], {"stable": 1, "canary": 2})  # step 2: label it
        assert client.predict_tensors(random_images(1), label="canary").model_version == 2
        assert client.predict_tensors(random_images(1), label="stable").model_version == 1
        reload([2], {"stable": 2})  # promote: stable moves to a loaded version, 1 retires
        assert client.predict_tensors(random_images(1), label="stable").model_version == 2
        wait_until(lambda: states(client).get(1) == "END", what="version 1 unloaded")
        with pytest.raises(ServingError) as unknown:
            client.predict_tensors(random_images(1), label="canary")
        assert unknown.value.code == grpc.StatusCode.INVALID_ARGUMENT
        client.close()


def test_models_config_file_changes_are_picked_up(tmp_path):
    base = tmp_path / MODEL_NAME
    for version in (1, 2):
        save_version(base, version)
    path = tmp_path / "models.config"
    write_model_config(path, build_model_config([model_entry(MODEL_NAME, base, versions=[1])]))
    with running_server(path, **FAST) as server:
        loop = PredictLoop(server.address)
        loop.start()
        client = ModelClient(server.address)
        write_model_config(path, build_model_config([model_entry(MODEL_NAME, base,
                                                                 versions=[2])]))
        wait_until(lambda: states(client) == {1: "END", 2: "AVAILABLE"}, what="switch to 2")
        # a broken edit is refused and the previous config keeps serving
        path.write_text("model_config_list { config { name: 'x' } }")
        time.sleep(0.6)
        assert client.predict_tensors(random_images(1)).model_version == 2
        loop.finish()
        client.close()
    assert loop.failures == []  # availability preserved: 1 left only after 2 was AVAILABLE
    assert set(loop.versions) == {1, 2}


def test_broken_version_does_not_replace_a_working_one(tmp_path):
    base = tmp_path / MODEL_NAME
    save_version(base, 1)
    path = tmp_path / "models.config"
    write_model_config(path, build_model_config([model_entry(MODEL_NAME, base)]))
    with running_server(path, **FAST) as server:
        client = ModelClient(server.address)
        broken = base / "2"
        broken.mkdir()
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        wait_until(lambda: states(client).get(2) == "END", what="failed load recorded")
        status = {s.version: s for s in client.model_status()}
        assert status[2].error_code == grpc.StatusCode.UNKNOWN.value[0]
        assert status[2].error_message
        assert client.predict_tensors(random_images(1)).model_version == 1
        client.close()


def test_cli_server_predicts_and_drains_on_sigterm(tmp_path):
    """`mspipe serve` + `mspipe predict` as subprocesses; SIGTERM ends the server cleanly."""
    from support.serving_fixtures import brain_like_frames, write_mr_dicom
    base = tmp_path / MODEL_NAME
    save_version(base, 1)
    write_model_config(tmp_path / "models.config",
                       build_model_config([model_entry(MODEL_NAME, base)]))
    port = free_port()
    mspipe = [sys.executable, "-m", "mspipe.main"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    server = subprocess.Popen(mspipe + ["serve", "--model-config", str(tmp_path / "models.config"),
                                        "--port", str(port)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready = server.stdout.readline()
        assert "Serving ['ms_mri'] on 127.0.0.1" in ready, server.stderr.read()
        study = tmp_path / "study"
        write_mr_dicom(study / "a.dcm", brain_like_frames(1, seed=1), instance_number=1)
        write_mr_dicom(study / "b.dcm", brain_like_frames(1, seed=2), instance_number=2)
        (study / "notes.txt").write_text("not an image")
        result = subprocess.run(mspipe + ["predict", str(study), "--server", f"127.0.0.1:{port}",
                                          "--json"], env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        import json
        report = json.loads(result.stdout)
        assert report["model_version"] == 1 and len(report["slices"]) == 2
        assert report["rejections"][0]["reason"] == "not_dicom"
        assert report["studies"][0]["slice_count"] == 2
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
        assert "Server stopped" in server.stderr.read()
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
