"""models.config I/O, version policies, the deployment files, and the client's thinness."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format

from serving.api.protos import BatchingParameters
from serving.client.settings import ClientSettings
from serving.api.model_config import (DeploymentLayout, ModelConfigError, aspired_versions,
                                  build_model_config, deployment_model_config, find_model,
                                  format_model_config, model_entry, parse_model_config,
                                  read_model_config, set_version_labels, set_version_policy,
                                  write_model_config)
from serving.server.settings import ServerSettings

DEPLOY = Path(__file__).resolve().parents[2] / "serving" / "deploy"
METRICS_PATH = "/monitoring/prometheus/metrics"  # TF Serving's documented path
LAYOUT = DeploymentLayout()


def test_round_trip_keeps_policy_and_labels(tmp_path):
    config = build_model_config([
        model_entry("ms_mri", tmp_path / "ms_mri", versions=[3, 1], labels={"stable": 1,
                                                                             "canary": 3}),
        model_entry("other", tmp_path / "other", latest=2),
    ])
    path = tmp_path / "models.config"
    write_model_config(path, config)
    assert read_model_config(path) == config
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".models.config")]
    entry = find_model(read_model_config(path), "ms_mri")
    assert list(entry.model_version_policy.specific.versions) == [1, 3]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 3}


def test_parses_tf_serving_documentation_style_config():
    text = """
    model_config_list {
      config { name: 'ms_mri' base_path: '/models/ms_mri' model_platform: 'tensorflow'
               model_version_policy { all {} } }
    }"""
    entry = find_model(parse_model_config(text), "ms_mri")
    assert aspired_versions(entry, [1, 5, 2]) == {1, 2, 5}


@pytest.mark.parametrize("policy, expected", [
    ({}, {7}),                       # TF Serving's default: latest 1
    ({"latest": 2}, {5, 7}),
    ({"versions": [2, 5]}, {5}),     # a specific version absent on disk is not aspired
    ({"all_versions": True}, {1, 5, 7}),
])
def test_aspired_versions_follow_policy(policy, expected):
    entry = model_entry("m", "/x", **policy)
    assert aspired_versions(entry, [1, 5, 7]) == expected


@pytest.mark.parametrize("text, message", [
    ("model_config_list { config { name: 'a' base_path: '/a' } }", "model_platform"),
    ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tensorflow' } "
     "config { name: 'a' base_path: '/b' model_platform: 'tensorflow' } }", "multiple times"),
    ("model_config_list { config { name: 'a' model_platform: 'tensorflow' } }", "base_path"),
    ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'pytorch' } }",
     "not supported"),
    ("model_config_list { config { name: 'a' base_path: '/a' model_platform: 'tensorflow' "
     "model_version_policy { specific {} } } }", "no versions"),
    ("model_config_list { config { nme: 'a' } }", "not a ModelServerConfig"),
])
def test_invalid_configs_are_refused_with_the_reason(text, message):
    with pytest.raises(ModelConfigError, match=message):
        parse_model_config(text, "models.config")


def test_policy_and_label_setters_replace_previous_values():
    entry = model_entry("m", "/x", versions=[1], labels={"stable": 1})
    set_version_policy(entry, versions=[1, 2])
    set_version_labels(entry, {"stable": 1, "canary": 2})
    assert list(entry.model_version_policy.specific.versions) == [1, 2]
    assert dict(entry.version_labels) == {"stable": 1, "canary": 2}
    with pytest.raises(ValueError, match="one version policy"):
        set_version_policy(entry, versions=[1], latest=1)


# ---------------------------------------------------------------- deployment files

def _flags(arguments: list[str]) -> dict[str, str]:
    return dict(argument.removeprefix("--").split("=", 1) for argument in arguments)


def _compose_service() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["tf-serving"]


def _k8s_documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all((DEPLOY / "k8s.yaml").read_text())}


def test_example_models_config_is_what_model_config_writes():
    assert read_model_config(DEPLOY / "models.config") == deployment_model_config(LAYOUT)


def test_compose_runs_tf_serving_with_the_shared_config_and_ports():
    service = _compose_service()
    assert service["image"].startswith("tensorflow/serving:")
    flags = _flags(service["command"])
    _check_server_flags(flags)
    mounts = {volume.rsplit(":", 2)[1] if volume.count(":") >= 2 else volume.split(":")[1]:
              volume for volume in service["volumes"]}
    assert LAYOUT.container_base_path() in mounts
    assert LAYOUT.container_config_dir in mounts  # a folder: atomic renames stay visible
    published = {port.rsplit(":", 1)[1] for port in service["ports"]}
    assert published == {str(LAYOUT.grpc_port), str(LAYOUT.rest_port)}
    assert all(port.startswith("127.0.0.1:") for port in service["ports"])
    assert f"/v1/models/{LAYOUT.model_name}" in service["healthcheck"]["test"][-1]


def test_k8s_manifest_matches_compose_and_config():
    docs = _k8s_documents()
    container = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    flags = _flags(container["args"])
    _check_server_flags(flags)
    assert flags == _flags(_compose_service()["command"])
    config_map = docs["ConfigMap"]["data"]
    assert parse_model_config(config_map[LAYOUT.config_file_name]) == \
        deployment_model_config(LAYOUT)
    assert _batching(config_map[LAYOUT.batching_file_name]) == \
        _batching((DEPLOY / "batching_parameters.txt").read_text())
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {LAYOUT.container_base_path(), LAYOUT.container_config_dir} <= mounts
    ports = {p["containerPort"] for p in container["ports"]}
    assert ports == {LAYOUT.grpc_port, LAYOUT.rest_port}
    for probe in ("startupProbe", "livenessProbe"):  # gRPC health, overall status ("")
        assert container[probe]["grpc"] == {"port": LAYOUT.grpc_port, "service": ""}
    assert config_map["monitoring_config.txt"] == (DEPLOY / "monitoring_config.txt").read_text()
    annotations = docs["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == METRICS_PATH
    assert annotations["prometheus.io/port"] == str(LAYOUT.rest_port)
    assert f"/v1/models/{LAYOUT.model_name}" in container["readinessProbe"]["exec"]["command"][-1]
    service_ports = {p["port"] for p in docs["Service"]["spec"]["ports"]}
    assert service_ports == {LAYOUT.grpc_port, LAYOUT.rest_port}


def _check_server_flags(flags: dict[str, str]) -> None:
    assert flags["port"] == str(LAYOUT.grpc_port)
    assert flags["rest_api_port"] == str(LAYOUT.rest_port)
    assert flags["model_config_file"] == LAYOUT.container_config_path
    assert flags["batching_parameters_file"] == LAYOUT.container_batching_path
    assert flags["enable_batching"] == "true"
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0
    # true on purpose (see docker-compose.yml): with false, labels in models.config stop
    # TF Serving from starting at all.
    assert flags["allow_version_labels_for_unavailable_models"] == "true"
    assert flags["monitoring_config_file"] == f"{LAYOUT.container_config_dir}/monitoring_config.txt"
    assert flags["enable_grpc_healthcheck_service"] == "true"


def test_monitoring_config_exports_prometheus_metrics():
    """MonitoringConfig text proto (tensorflow_serving/config/monitoring_config.proto)."""
    text = (DEPLOY / "monitoring_config.txt").read_text()
    match = re.fullmatch(r'\s*prometheus_config\s*\{\s*enable:\s*true\s*'
                         r'path:\s*"([^"]+)"\s*\}\s*', text)
    assert match and match.group(1) == METRICS_PATH


def _batching(text: str) -> BatchingParameters:
    """The server's own parser (TF Serving's proto): an unknown field is a parse error."""
    return text_format.Parse(text, BatchingParameters())


def test_batching_fits_client_batches_and_message_limits():
    parameters = _batching((DEPLOY / "batching_parameters.txt").read_text())
    assert ClientSettings().max_batch <= parameters.max_batch_size.value
    image_bytes = 512 * 512
    assert parameters.max_batch_size.value * image_bytes < ServerSettings("x").max_message_bytes
    # the server takes what TF Serving takes (INT32_MAX); the client's own limit fits in it
    assert ClientSettings().max_message_bytes <= ServerSettings("x").max_message_bytes


def test_local_server_defaults_match_the_deployment():
    settings = ServerSettings("models.config")
    assert settings.port == LAYOUT.grpc_port
    assert settings.host == "127.0.0.1"
    assert settings.allow_version_labels_for_unavailable_models is False  # TF Serving default


def test_client_library_does_not_start_tensorflow():
    code = ("import sys, serving.client.model_client, serving.client.predict, mspipe.commands.predict, serving.api.model_config;"
            "heavy = [m for m in sys.modules if m.startswith('tensorflow.python')"
            " or m == 'tensorflow'];"
            "print(heavy); sys.exit(1 if heavy else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


CANARY_CONFIG_TEXT = """\
model_config_list {
  config {
    name: "ms_mri"
    base_path: "/models/ms_mri"
    model_platform: "tensorflow"
    model_version_policy {
      specific {
        versions: 1
        versions: 2
      }
    }
    version_labels {
      key: "canary"
      value: 2
    }
    version_labels {
      key: "stable"
      value: 1
    }
  }
}
"""


def test_config_text_is_stable(tmp_path):
    """The same versions and labels give the same bytes, whatever order they came in: a
    rewrite by the rollout tool changes the file (and the ConfigMap) only when the config does,
    and the text is the plain TF Serving text proto a person reviews."""
    forward = deployment_model_config(LAYOUT, versions=[1, 2], labels={"stable": 1, "canary": 2})
    backward = deployment_model_config(LAYOUT, versions=[2, 1, 2],
                                       labels={"canary": 2, "stable": 1})
    assert format_model_config(forward) == format_model_config(backward) == CANARY_CONFIG_TEXT
    write_model_config(tmp_path / "forward.config", forward)
    write_model_config(tmp_path / "backward.config", backward)
    assert (tmp_path / "forward.config").read_text() == CANARY_CONFIG_TEXT
    assert (tmp_path / "backward.config").read_bytes() == (tmp_path / "forward.config").read_bytes()
