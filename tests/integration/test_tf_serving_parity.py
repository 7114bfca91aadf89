"""Tests that hold for the local server and for the real tensorflow/serving image alike.

By default they run against a local server (tests/support/parity.py); with
`--tf-serving-grpc HOST:PORT [--tf-serving-rest HOST:PORT] [--tf-serving-model NAME]` the
`parity_target` tests run against that deployment instead, so a difference between the two
shows up as a failure here. Tests at the end need a server of their own (another model, other
flags) and always run locally.
"""
from __future__ import annotations

import grpc
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tensorflow_serving.apis import inference_pb2

from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.api.protos import (CLASSIFY_METHOD, PREDICT_METHOD, REGRESS_METHOD,
                                get_model_status_pb2, model_service_pb2_grpc,
                                prediction_service_pb2_grpc)
from support.parity import STABLE_LABEL, parity_server_settings, parity_target  # noqa: F401
from support.serving_fixtures import MODEL_NAME, running_server, save_version

SERVING = health_pb2.HealthCheckResponse.SERVING
HEALTH_SERVICES = ("", "tensorflow.serving.ModelService", "tensorflow.serving.PredictionService")


def status_request(model_name: str, **spec) -> get_model_status_pb2.GetModelStatusRequest:
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "version_label" in spec:
        request.model_spec.version_label = spec["version_label"]
    return request


def versions_of(channel, model_name: str, **spec) -> list[tuple[int, int]]:
    stub = model_service_pb2_grpc.ModelServiceStub(channel)
    reply = stub.GetModelStatus(status_request(model_name, **spec), timeout=30)
    return [(v.version, v.state) for v in reply.model_version_status]


def expect_error(call, code: grpc.StatusCode, text: str = "") -> str:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    assert text in caught.value.details()
    return caught.value.details()


def multi_request(model_name: str, input_values=(1.0,), tasks=(("", CLASSIFY_METHOD),)):
    request = inference_pb2.MultiInferenceRequest()
    for signature_name, method in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = model_name
        task.model_spec.signature_name = signature_name
    for value in input_values:
        example = request.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(value)
    return request


def multi_inference(channel, request):
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    return stub.MultiInference(request, timeout=30)


# ------------------------------------------------------------------ against either server
def test_model_status_lists_an_available_version(parity_target):
    with parity_target.channel() as channel:
        versions = versions_of(channel, parity_target.model_name)
    assert any(state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
               for _, state in versions)
    assert [v for v, _ in versions] == sorted((v for v, _ in versions), reverse=True)


@pytest.mark.parametrize("label", [STABLE_LABEL, "no-such-label"])
def test_model_status_ignores_the_version_label(parity_target, label):
    """get_model_status_impl.cc reads only model_spec.version: a label lists all versions."""
    with parity_target.channel() as channel:
        assert versions_of(channel, parity_target.model_name, version_label=label) == \
            versions_of(channel, parity_target.model_name)


def test_model_status_errors(parity_target):
    with parity_target.channel() as channel:
        expect_error(lambda: versions_of(channel, parity_target.model_name, version=987654),
                     grpc.StatusCode.NOT_FOUND,
                     f"Could not find version 987654 of model {parity_target.model_name}")
        expect_error(lambda: versions_of(channel, "no_such_model"), grpc.StatusCode.NOT_FOUND,
                     "Could not find any versions of model no_such_model")


def test_multi_inference_codes_on_a_predict_only_model(parity_target):
    """The MS model's signatures are Predict-shaped: TF Serving refuses Classify/Regress tasks
    on them with INVALID_ARGUMENT, other methods with UNIMPLEMENTED, unknown models NOT_FOUND."""
    name = parity_target.model_name
    with parity_target.channel() as channel:
        call = lambda request: lambda: multi_inference(channel, request)  # noqa: E731
        expect_error(call(multi_request(name)), grpc.StatusCode.INVALID_ARGUMENT,
                     "No classification inputs found in SignatureDef: ")
        expect_error(call(multi_request(name, tasks=[("", REGRESS_METHOD)])),
                     grpc.StatusCode.INVALID_ARGUMENT, "Expected one output Tensor.")
        expect_error(call(multi_request(name, tasks=[("", PREDICT_METHOD)])),
                     grpc.StatusCode.UNIMPLEMENTED,
                     f"Unsupported signature method_name: {PREDICT_METHOD}")
        expect_error(call(multi_request(name, tasks=[("no_such_signature", CLASSIFY_METHOD)])),
                     grpc.StatusCode.INVALID_ARGUMENT,
                     "Requested signature not found in model graph: no_such_signature")
        expect_error(call(multi_request("no_such_model")), grpc.StatusCode.NOT_FOUND,
                     "Servable not found for request: Latest(no_such_model)")


def test_grpc_health_service(parity_target):
    """--enable_grpc_healthcheck_service: the server and its two API services are SERVING; any
    other name (a model's included) is NOT_FOUND, as in gRPC's default health service."""
    with parity_target.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel)
        check = lambda name: health.Check(  # noqa: E731
            health_pb2.HealthCheckRequest(service=name), timeout=10)
        try:
            check("")
        except grpc.RpcError as error:
            if parity_target.is_local or error.code() != grpc.StatusCode.UNIMPLEMENTED:
                raise
            pytest.skip("the target runs without --enable_grpc_healthcheck_service")
        for service in HEALTH_SERVICES:
            assert check(service).status == SERVING, service
        expect_error(lambda: check(parity_target.model_name), grpc.StatusCode.NOT_FOUND)


# ------------------------------------------------------------------ local servers of their own
def test_model_status_lists_versions_newest_first(tmp_path):
    for version in (1, 2, 3):
        save_version(tmp_path / MODEL_NAME, version)
    write_model_config(tmp_path / "models.config", build_model_config(
        [model_entry(MODEL_NAME, tmp_path / MODEL_NAME, versions=[1, 2, 3])]))
    with running_server(tmp_path / "models.config") as server, \
            grpc.insecure_channel(server.address) as channel:
        assert [v for v, _ in versions_of(channel, MODEL_NAME)] == [3, 2, 1]


def test_no_health_service_without_the_flag(tmp_path):
    """TF Serving registers grpc.health.v1 only with --enable_grpc_healthcheck_service."""
    save_version(tmp_path / MODEL_NAME, 1)
    write_model_config(tmp_path / "models.config", build_model_config(
        [model_entry(MODEL_NAME, tmp_path / MODEL_NAME)]))
    with running_server(tmp_path / "models.config") as server, \
            grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        expect_error(lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=10),
                     grpc.StatusCode.UNIMPLEMENTED)
        assert versions_of(channel, MODEL_NAME)  # the server itself is up


class ExamplesModel(tf.Module):
    """Classify- and Regress-shaped signatures on tf.Examples with one float feature `x`."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        score = tf.sigmoid(self._x(inputs))
        classes = tf.tile(tf.constant([["no", "yes"]]), [tf.shape(score)[0], 1])
        return {"scores": tf.stack([1 - score, score], axis=1), "classes": classes}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        return {"outputs": 2.0 * self._x(inputs)}

    @staticmethod
    def _x(inputs):
        return tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})["x"]


@pytest.fixture(scope="module")
def examples_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("examples")
    model = ExamplesModel()
    tf.saved_model.save(model, str(root / "examples" / "1"),
                        signatures={"serving_default": model.classify, "regress": model.regress})
    write_model_config(root / "models.config", build_model_config(
        [model_entry("examples", root / "examples")]))
    with running_server(root / "models.config") as server, \
            grpc.insecure_channel(server.address) as channel:
        yield channel


def test_multi_inference_classifies_and_regresses(examples_server):
    reply = multi_inference(examples_server, multi_request("examples", (0.0, 2.0)))
    (result,) = reply.results
    assert (result.model_spec.name, result.model_spec.signature_name,
            result.model_spec.version.value) == ("examples", "serving_default", 1)
    rows = [[(c.label, round(c.score, 4)) for c in row.classes]
            for row in result.classification_result.classifications]
    assert rows == [[("no", 0.5), ("yes", 0.5)], [("no", 0.1192), ("yes", 0.8808)]]
    reply = multi_inference(examples_server, multi_request(
        "examples", (1.5, -1.0), tasks=[("regress", REGRESS_METHOD)]))
    assert [r.value for r in reply.results[0].regression_result.regressions] == [3.0, -2.0]


def test_multi_inference_refusals_keep_tf_servings_texts(examples_server):
    call = lambda request: lambda: multi_inference(examples_server, request)  # noqa: E731
    # TF2 signatures each have their own input placeholder: TF Serving runs tasks in one
    # Session::Run over one input tensor, so it refuses to mix them.
    both = [("", CLASSIFY_METHOD), ("regress", REGRESS_METHOD)]
    expect_error(call(multi_request("examples", tasks=both)), grpc.StatusCode.INVALID_ARGUMENT,
                 "Input tensor must be the same for all Signatures.")
    expect_error(call(multi_request("examples", tasks=[("", CLASSIFY_METHOD)] * 2)),
                 grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: "
                 "serving_default")
    expect_error(call(multi_request("examples", input_values=())),
                 grpc.StatusCode.INVALID_ARGUMENT, "Input is empty.")
    mixed = multi_request("examples")
    mixed.tasks.add(method_name=REGRESS_METHOD).model_spec.name = "other"
    expect_error(call(mixed), grpc.StatusCode.INVALID_ARGUMENT,
                 "All ModelSpecs in a MultiInferenceRequest must access the same model name.")
