"""Prometheus metrics on the REST port, as tensorflow_model_server exports them.

A local server with --rest_api_port and --monitoring_config_file is driven over gRPC and REST;
the page is fetched with urllib and read with prometheus_client's text parser, so the checks are
on metric families, types, labels and values (not on strings).
"""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from components import contract
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.api.protos import predict_pb2, prediction_service_pb2_grpc
from serving.api.tensor_codec import to_tensor_proto
from serving.server.metrics import DEFAULT_PATH, MonitoringConfigError
from support.serving_fixtures import (MODEL_NAME, free_port, random_images, running_server,
                                      save_version)

TIMEOUT = 30
LATENCY_BUCKETS = 33 + 1  # Buckets::Exponential(10, 1.8, 33), then +Inf
EXPECTED = {  # TF Serving 2.16 name -> (type, labels)
    ":tensorflow:serving:request_count": ("counter", {"model_name", "status"}),
    ":tensorflow:serving:request_latency": ("histogram", {"model_name", "API", "entrypoint"}),
    ":tensorflow:serving:runtime_latency": ("histogram", {"model_name", "API", "runtime"}),
    ":tensorflow:serving:request_example_counts": ("histogram", {"model"}),
    ":tensorflow:serving:request_example_count_total": ("counter", {"model"}),
    ":tensorflow:cc:saved_model:load_attempt_count": ("counter", {"model_path", "status"}),
    ":tensorflow:cc:saved_model:load_latency": ("counter", {"model_path"}),
}


def write_monitoring_config(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    version_dir = save_version(root / MODEL_NAME, 1)
    write_model_config(root / "models.config",
                       build_model_config([model_entry(MODEL_NAME, root / MODEL_NAME)]))
    monitoring = write_monitoring_config(root / "monitoring.config", 'prometheus_config {\n'
                                         f'  enable: true\n  path: "{DEFAULT_PATH}"\n}}\n')
    with running_server(root / "models.config", rest_api_port=free_port(),
                        monitoring_config_file=monitoring) as server:
        channel = grpc.insecure_channel(server.address)
        yield server, prediction_service_pb2_grpc.PredictionServiceStub(channel), version_dir
        channel.close()


def scrape(server, path: str = DEFAULT_PATH) -> tuple[dict, str]:
    """The page parsed into {family name: family}, and its Content-Type."""
    with urllib.request.urlopen(f"http://{server.rest_address}{path}", timeout=TIMEOUT) as reply:
        text, content_type = reply.read().decode(), reply.headers["Content-Type"]
    return {family.name: family for family in text_string_to_metric_families(text)}, content_type


def family(families: dict, name: str):
    """A family by its TF Serving name (the parser drops a counter name's `_total`)."""
    return families.get(name) or families[name.removesuffix("_total")]


def value(families: dict, name: str, suffix: str, **labels) -> float:
    """The value of sample `<family><suffix>` with these labels; 0 while it does not exist."""
    found = family(families, name)
    for sample in found.samples:
        if sample.name == found.name + suffix and all(
                sample.labels.get(key) == want for key, want in labels.items()):
            return sample.value
    return 0.0


def predict(stub, *, version: int | None = None, alias: str = contract.IMAGE_INPUT):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    if version is not None:
        request.model_spec.version.value = version
    request.inputs[alias].CopyFrom(to_tensor_proto(random_images(2)))
    return stub.Predict(request, timeout=TIMEOUT)


def test_page_has_tf_serving_metric_families(served):
    server, _, _ = served
    families, content_type = scrape(server)
    assert content_type == "text/plain"  # http_server.cc ProcessPrometheusRequest
    for name, (kind, labels) in EXPECTED.items():
        assert family(families, name).type == kind, name
        for sample in family(families, name).samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample)


def test_grpc_predicts_counted_by_status_and_timed_when_ok(served):
    server, stub, _ = served
    before, _ = scrape(server)
    for _ in range(3):
        predict(stub)
    with pytest.raises(grpc.RpcError) as not_found:
        predict(stub, version=99)
    assert not_found.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as invalid:
        predict(stub, alias="no_such_input")
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    after, _ = scrape(server)

    count = ":tensorflow:serving:request_count"
    for status, calls in (("OK", 3), ("NOT_FOUND", 1), ("INVALID_ARGUMENT", 1)):
        delta = (value(after, count, "_total", model_name=MODEL_NAME, status=status)
                 - value(before, count, "_total", model_name=MODEL_NAME, status=status))
        assert delta == calls, status
    latency = ":tensorflow:serving:request_latency"
    grpc_labels = {"model_name": MODEL_NAME, "API": "Predict", "entrypoint": "GRPC"}
    # TF Serving times successful calls only
    assert (value(after, latency, "_count", **grpc_labels)
            - value(before, latency, "_count", **grpc_labels)) == 3
    buckets = [s for s in after[latency].samples if s.name == latency + "_bucket"
               and all(s.labels[k] == v for k, v in grpc_labels.items())]
    assert len(buckets) == LATENCY_BUCKETS
    assert [s.labels["le"] for s in buckets[:3]] == ["10", "18", "32.4"]
    assert buckets[-1].labels["le"] == "+Inf"
    assert buckets[-1].value == value(after, latency, "_count", **grpc_labels)
    runtime = ":tensorflow:serving:runtime_latency"
    runtime_labels = {"model_name": MODEL_NAME, "API": "Predict", "runtime": "TF1"}
    assert (value(after, runtime, "_count", **runtime_labels)
            - value(before, runtime, "_count", **runtime_labels)) == 3


def test_rest_predict_is_timed_as_rest_and_not_counted(served):
    server, _, _ = served
    before, _ = scrape(server)
    body = json.dumps({"instances": random_images(2).tolist()}).encode()
    request = urllib.request.Request(
        f"http://{server.rest_address}/v1/models/{MODEL_NAME}:predict", data=body,
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as reply:
        assert len(json.loads(reply.read())["predictions"]) == 2
    after, _ = scrape(server)

    latency = ":tensorflow:serving:request_latency"
    rest_labels = {"model_name": MODEL_NAME, "API": "predict", "entrypoint": "REST"}
    assert (value(after, latency, "_count", **rest_labels)
            - value(before, latency, "_count", **rest_labels)) == 1
    grpc_labels = {"model_name": MODEL_NAME, "API": "Predict", "entrypoint": "GRPC"}
    assert value(after, latency, "_count", **grpc_labels) == value(
        before, latency, "_count", **grpc_labels)  # in-process servicer call is not gRPC
    runtime = ":tensorflow:serving:runtime_latency"
    runtime_labels = {"model_name": MODEL_NAME, "API": "Predict", "runtime": "TF1"}
    assert (value(after, runtime, "_count", **runtime_labels)
            - value(before, runtime, "_count", **runtime_labels)) == 1
    count = ":tensorflow:serving:request_count"  # TF Serving counts gRPC calls only
    assert value(after, count, "_total", model_name=MODEL_NAME, status="OK") == value(
        before, count, "_total", model_name=MODEL_NAME, status="OK")


def test_version_load_is_counted(served):
    server, _, version_dir = served
    families, _ = scrape(server)
    assert value(families, ":tensorflow:cc:saved_model:load_attempt_count", "_total",
                 model_path=str(version_dir), status="success") == 1
    assert value(families, ":tensorflow:cc:saved_model:load_attempt_count", "_total",
                 model_path=str(version_dir), status="fail") == 0
    assert value(families, ":tensorflow:cc:saved_model:load_latency", "_total",
                 model_path=str(version_dir)) > 0


def _status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code


def test_no_metrics_without_monitoring_config_and_custom_path(served, tmp_path):
    _, _, version_dir = served
    config = tmp_path / "models.config"
    write_model_config(config, build_model_config([model_entry(MODEL_NAME,
                                                               version_dir.parent)]))
    with running_server(config, rest_api_port=free_port()) as plain:
        assert _status_of(f"http://{plain.rest_address}{DEFAULT_PATH}") == 404
    disabled = write_monitoring_config(tmp_path / "off.config",
                                       "prometheus_config { enable: false }")
    with running_server(config, rest_api_port=free_port(),
                        monitoring_config_file=disabled) as off:
        assert _status_of(f"http://{off.rest_address}{DEFAULT_PATH}") == 404
    custom = write_monitoring_config(tmp_path / "custom.config",
                                     'prometheus_config { enable: true path: "/metrics" }')
    with running_server(config, rest_api_port=free_port(),
                        monitoring_config_file=custom) as server:
        families, _ = scrape(server, "/metrics")
        assert ":tensorflow:serving:request_count" in families
        # its own registry: this server loaded the version once, whatever others did
        assert value(families, ":tensorflow:cc:saved_model:load_attempt_count", "_total",
                     model_path=str(version_dir), status="success") == 1
        assert _status_of(f"http://{server.rest_address}{DEFAULT_PATH}") == 404


def test_invalid_monitoring_config_refuses_to_start(served, tmp_path):
    _, _, version_dir = served
    config = tmp_path / "models.config"
    write_model_config(config, build_model_config([model_entry(MODEL_NAME,
                                                               version_dir.parent)]))
    broken = write_monitoring_config(tmp_path / "broken.config",
                                     "prometheus_config { enabled: true }")
    with pytest.raises(MonitoringConfigError, match=f"Invalid protobuf file: '{broken}'"):
        with running_server(config, rest_api_port=free_port(), monitoring_config_file=broken):
            pass
