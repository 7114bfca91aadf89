"""`mspipe serve` started with TF Serving's command lines: the argument list of
serving/deploy/docker-compose.yml and k8s.yaml, unchanged except for paths and ports, serves a
real contract SavedModel; and a labelled models.config (what `make demo` leaves) restarts with
the command the demo prints, while without the flag the error names it (issue 10, points 0, 9).
"""
from __future__ import annotations

import json
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import numpy as np
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from mspipe import demo
from serving.api.model_config import (DeploymentLayout, build_model_config, model_entry,
                                      parse_model_config, write_model_config)
from serving.client.model_client import ModelClient
from support.serving_fixtures import (MODEL_NAME, free_port, random_images, reference_predict,
                                      save_version)

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "serving" / "deploy"
LAYOUT = DeploymentLayout()
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def deploy_arguments(source: str) -> tuple[list[str], dict[str, str]]:
    """The tensorflow_model_server argument list of a deploy file, and its config files."""
    if source == "compose":
        service = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"][
            "tf-serving"]
        assert service["entrypoint"] == ["tensorflow_model_server"]
        files = {path.name: path.read_text() for path in DEPLOY.glob("*")
                 if path.suffix in (".config", ".txt")}
        return service["command"], files
    docs = {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text())}
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["tensorflow_model_server"]
    return container["args"], docs["ConfigMap"]["data"]


def localize(arguments: list[str], files: dict[str, str], root: Path) -> tuple[list[str], dict]:
    """Container paths -> temp paths (config files copied, models.config's base_path moved to
    a local SavedModel folder); the two ports -> free ones. Nothing else changes."""
    config_dir, model_root = root / "config", root / "models"
    config_dir.mkdir()
    for name, text in files.items():
        (config_dir / name).write_text(text.replace(LAYOUT.container_model_root + "/",
                                                    f"{model_root}/"))
    ports = {"port": free_port(), "rest_api_port": free_port()}
    local = []
    for argument in arguments:
        name, value = argument.removeprefix("--").split("=", 1)
        value = str(ports[name]) if name in ports else value.replace(
            LAYOUT.container_config_dir + "/", f"{config_dir}/")
        local.append(f"--{name}={value}")
    return local, ports


@contextmanager
def serve(arguments: list[str], ready_timeout_s: float = 180.0) -> Iterator[subprocess.Popen]:
    """`python -m mspipe serve ARGUMENTS`, until its 'Serving ...' line; stopped on exit."""
    process = subprocess.Popen([sys.executable, "-m", "mspipe", "serve", *arguments], env=ENV,
                               text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout],
                     daemon=True).start()
    try:
        try:
            ready = lines.get(timeout=ready_timeout_s)
        except queue.Empty:
            ready = ""
        assert ready.startswith("Serving "), process.stderr.read() if process.poll() else ready
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.parametrize("source", ["compose", "k8s"])
def test_deploy_argument_list_starts_the_local_server(source, tmp_path):
    arguments, files = deploy_arguments(source)
    local, ports = localize(arguments, files, tmp_path)
    config = parse_model_config((tmp_path / "config" / LAYOUT.config_file_name).read_text())
    base_path = Path(config.model_config_list.config[0].base_path)
    version_dir = save_version(base_path, 1)
    images = random_images(3, seed=4)
    with serve(local):
        target = f"127.0.0.1:{ports['port']}"
        with ModelClient(target, MODEL_NAME) as client:  # the labels of the deploy config
            answer = client.predict_tensors(images, label="stable")
        np.testing.assert_allclose(answer.probabilities,
                                   reference_predict(version_dir, images)["probability"],
                                   rtol=1e-5, atol=1e-6)
        assert answer.model_version == 1
        with grpc.insecure_channel(target) as channel:  # --enable_grpc_healthcheck_service=true
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        rest = f"http://127.0.0.1:{ports['rest_api_port']}"
        with urllib.request.urlopen(f"{rest}/v1/models/{MODEL_NAME}", timeout=10) as response:
            status = json.load(response)
        assert [s["state"] for s in status["model_version_status"]] == ["AVAILABLE"]
        with urllib.request.urlopen(f"{rest}/monitoring/prometheus/metrics",
                                    timeout=10) as response:
            families = list(text_string_to_metric_families(response.read().decode()))
        assert families  # --monitoring_config_file of the deploy files exports metrics


def labelled_demo_config(root: Path) -> Path:
    """What `make demo` leaves: versions 1 and 2 served, labelled stable and canary."""
    base = root / MODEL_NAME
    for version in (1, 2):
        save_version(base, version)
    config = root / "serving" / "models.config"
    write_model_config(config, build_model_config([model_entry(
        MODEL_NAME, base, versions=[1, 2], labels={"stable": 1, "canary": 2})]))
    return config


def test_labelled_config_refused_without_the_flag_and_the_error_names_it(tmp_path):
    config = labelled_demo_config(tmp_path)
    result = subprocess.run([sys.executable, "-m", "mspipe", "serve", "--model_config_file",
                             str(config), f"--port={free_port()}"], env=ENV,
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 1
    message = result.stderr.strip().splitlines()[-1]
    assert re.search(r"FAILED_PRECONDITION: Request to assign label to version \d of model "
                     rf"{MODEL_NAME}, which is not currently available for inference", message)
    assert "--allow_version_labels_for_unavailable_models=true" in message


def test_demo_printed_command_restarts_on_its_labelled_config(tmp_path):
    config = labelled_demo_config(tmp_path)
    port = free_port()
    words = shlex.split(demo.serve_command_line(config, port))
    assert words[:2] == ["mspipe", "serve"]
    with serve(words[2:]):
        with ModelClient(f"127.0.0.1:{port}", MODEL_NAME) as client:
            for label, version in (("stable", 1), ("canary", 2)):
                assert client.predict_tensors(random_images(1), label=label).model_version == \
                    version


def test_single_model_mode_builds_the_config_in_memory(tmp_path):
    """--model_name/--model_base_path without --model_config_file, as TF Serving."""
    from serving.server.grpc_server import ModelServer
    from serving.server.settings import ServerSettings

    save_version(tmp_path / "m", 1)
    version_dir = save_version(tmp_path / "m", 2)  # TF Serving's default policy: latest 1
    server = ModelServer(ServerSettings(model_name="m", model_base_path=str(tmp_path / "m"),
                                        port=free_port())).start()
    try:
        images = random_images(2, seed=5)
        with ModelClient(server.address, "m") as client:
            answer = client.predict_tensors(images)
            assert [s.version for s in client.model_status()] == [2]
        assert answer.model_version == 2
        np.testing.assert_allclose(answer.probabilities,
                                   reference_predict(version_dir, images)["probability"],
                                   rtol=1e-5, atol=1e-6)
    finally:
        server.stop(grace_s=1.0)
