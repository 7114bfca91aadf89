"""TF Serving's REST API (--rest_api_port), driven with an ordinary HTTP client (requests).

Written on the parity target (tests/support/parity.py): by default a local server with REST on a
free port; with `--tf-serving-grpc HOST:PORT --tf-serving-rest HOST:PORT` the same tests run
against a real tensorflow/serving deployment. Answers are compared with the gRPC answer for the
same images; error replies are checked for TF Serving's HTTP code and `{"error": ...}` body
(exact texts only against the local server, whose texts are copied from TF Serving's source).
"""
from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import requests

from components import contract, features
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.api.protos import example_pb2, predict_pb2, prediction_service_pb2_grpc
from serving.api.tensor_codec import from_tensor_proto, to_tensor_proto
from support.parity import STABLE_LABEL, STABLE_VERSION, parity_target  # noqa: F401
from support.serving_fixtures import (IMAGE_SIZE, free_port, random_images, running_server,
                                      save_version)

TIMEOUT = 60


@pytest.fixture(scope="module")
def parity_server_settings() -> dict:
    """The local parity server with its REST API on (TF Serving's 0 means off)."""
    return {"rest_api_port": free_port()}


@pytest.fixture(scope="module")
def rest(parity_target) -> str:
    return parity_target.require_rest()


def model_url(rest: str, target, suffix: str = "") -> str:
    return f"{rest}/v1/models/{target.model_name}{suffix}"


def grpc_predict(target, images: np.ndarray, signature: str = contract.SERVING_DEFAULT,
                 alias: str = contract.IMAGE_INPUT) -> dict[str, np.ndarray]:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = target.model_name
    request.model_spec.signature_name = signature
    request.inputs[alias].CopyFrom(to_tensor_proto(images))
    with target.channel() as channel:
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=TIMEOUT)
    return {name: from_tensor_proto(proto) for name, proto in response.outputs.items()}


def post(url: str, body) -> requests.Response:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return requests.post(url, data=data, headers={"Content-Type": "application/json"},
                         timeout=TIMEOUT)


def assert_error(response: requests.Response, status: int, target, text: str | None = None):
    """TF Serving's error reply: the HTTP code, a JSON object with one `error` string."""
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"]
    if text is not None and target.is_local:
        assert body["error"] == text


def example_bytes(image: np.ndarray) -> bytes:
    example = example_pb2.Example()
    example.features.feature[features.IMAGE].bytes_list.value.append(image.tobytes())
    return example.SerializeToString()


# ------------------------------------------------------------------------------ model status
@pytest.mark.parametrize("suffix", ["", f"/versions/{STABLE_VERSION}", f"/labels/{STABLE_LABEL}"])
def test_model_status_routes(parity_target, rest, suffix):
    response = requests.get(model_url(rest, parity_target, suffix), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    versions = response.json()["model_version_status"]
    stable = [v for v in versions if v["version"] == str(STABLE_VERSION)]
    assert stable and stable[0]["state"] == "AVAILABLE"
    assert stable[0]["status"] == {"error_code": "OK", "error_message": ""}
    if suffix.startswith("/versions"):
        assert len(versions) == 1


@pytest.mark.parametrize("suffix", ["/metadata", f"/versions/{STABLE_VERSION}/metadata",
                                    f"/labels/{STABLE_LABEL}/metadata"])
def test_metadata_json_has_tf_servings_shape(parity_target, rest, suffix):
    response = requests.get(model_url(rest, parity_target, suffix), timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_spec"]["name"] == parity_target.model_name
    assert body["model_spec"]["version"] == str(STABLE_VERSION)
    signatures = body["metadata"]["signature_def"]["signature_def"]
    image = signatures[contract.SERVING_DEFAULT]["inputs"][contract.IMAGE_INPUT]
    assert image["dtype"] == "DT_UINT8"
    assert [d["size"] for d in image["tensor_shape"]["dim"]] == \
        ["-1", str(IMAGE_SIZE), str(IMAGE_SIZE), "1"]
    outputs = signatures[contract.SERVING_DEFAULT]["outputs"]
    assert {contract.PROBABILITY, contract.LOGIT} <= set(outputs)
    assert outputs[contract.PROBABILITY]["dtype"] == "DT_FLOAT"


# ------------------------------------------------------------------------------ predict
@pytest.mark.parametrize("suffix", ["", f"/versions/{STABLE_VERSION}", f"/labels/{STABLE_LABEL}"])
def test_row_predict_equals_grpc(parity_target, rest, suffix):
    images = random_images(3, seed=5)
    response = post(model_url(rest, parity_target, f"{suffix}:predict"),
                    {"instances": images.tolist()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = grpc_predict(parity_target, images)
    assert len(predictions) == 3 and all(isinstance(row, dict) for row in predictions)
    for name, values in expected.items():
        got = np.asarray([row[name] for row in predictions], dtype=np.float32)
        np.testing.assert_array_equal(got, values)  # float32 written so it round-trips


def test_columnar_predict_equals_grpc(parity_target, rest):
    images = random_images(2, seed=6)
    response = post(model_url(rest, parity_target, ":predict"),
                    {"signature_name": contract.SERVING_DEFAULT, "inputs": images.tolist()})
    assert response.status_code == 200, response.text
    outputs = response.json()["outputs"]
    for name, values in grpc_predict(parity_target, images).items():
        np.testing.assert_array_equal(np.asarray(outputs[name], dtype=np.float32), values)


def test_named_row_instances_equal_plain_ones(parity_target, rest):
    images = random_images(2, seed=7)
    plain = post(model_url(rest, parity_target, ":predict"), {"instances": images.tolist()})
    named = post(model_url(rest, parity_target, ":predict"),
                 {"instances": [{contract.IMAGE_INPUT: image.tolist()} for image in images]})
    assert named.status_code == 200, named.text
    assert named.json() == plain.json()


def test_b64_examples_predict_equals_image_predict(parity_target, rest):
    """serving_examples takes serialized tf.Examples: bytes go as {"b64": ...}."""
    images = random_images(2, seed=8)
    instances = [{"b64": base64.b64encode(example_bytes(image)).decode()} for image in images]
    response = post(model_url(rest, parity_target, ":predict"),
                    {"signature_name": contract.SERVING_EXAMPLES, "instances": instances})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    for name, values in grpc_predict(parity_target, images).items():
        np.testing.assert_array_equal(
            np.asarray([row[name] for row in predictions], dtype=np.float32), values)


@pytest.mark.parametrize("verb", ["classify", "regress"])
def test_classify_and_regress_refuse_a_predict_signature(parity_target, rest, verb):
    """The contract model's signatures are Predict-shaped: TF Serving answers 400, not 404/500;
    the JSON examples (b64 bytes feature) parse and reach the signature check."""
    image = random_images(1, seed=9)[0]
    body = {"signature_name": contract.SERVING_EXAMPLES,
            "examples": [{features.IMAGE: {"b64": base64.b64encode(image.tobytes()).decode()}}]}
    assert_error(post(model_url(rest, parity_target, f":{verb}"), body), 400, parity_target)


# ------------------------------------------------------------------------------ errors
def test_unknown_model_is_404(parity_target, rest):
    url = f"{rest}/v1/models/no_such_model"
    assert_error(requests.get(url, timeout=TIMEOUT), 404, parity_target,
                 "Could not find any versions of model no_such_model")
    assert_error(post(f"{url}:predict", {"instances": [1]}), 404, parity_target,
                 "Servable not found for request: Latest(no_such_model)")


def test_unknown_version_is_404_and_malformed_version_400(parity_target, rest):
    assert_error(requests.get(model_url(rest, parity_target, "/versions/999"), timeout=TIMEOUT),
                 404, parity_target, f"Could not find version 999 of model "
                 f"{parity_target.model_name}")
    malformed = model_url(rest, parity_target, "/versions/abc")
    assert_error(requests.get(malformed, timeout=TIMEOUT), 400, parity_target,
                 f"Malformed request: GET /v1/models/{parity_target.model_name}/versions/abc")
    assert_error(post(model_url(rest, parity_target, "/labels/nope:predict"),
                      {"instances": random_images(1).tolist()}), 400, parity_target,
                 "Unrecognized servable version label: nope")


def test_bad_json_bodies_are_400(parity_target, rest):
    url = model_url(rest, parity_target, ":predict")
    assert_error(post(url, b""), 400, parity_target, "JSON Parse error: The document is empty")
    bad = post(url, b'{"instances": [1, 2')
    assert_error(bad, 400, parity_target)
    assert bad.json()["error"].startswith("JSON Parse error: ")
    assert_error(post(url, {"nothing": 1}), 400, parity_target,
                 "Missing 'inputs' or 'instances' key")
    assert_error(post(url, {"instances": []}), 400, parity_target)
    floats = random_images(1).astype(np.float32) / 2
    assert_error(post(url, {"instances": floats.tolist()}), 400, parity_target)
    assert_error(post(url, {"instances": [[[[1]]]]}), 400, parity_target)  # wrong shape
    assert_error(post(url, {"signature_name": "nope", "instances": [1]}), 400, parity_target,
                 'Serving signature name: "nope" not found in signature def')


def test_malformed_routes(parity_target, rest):
    assert_error(requests.get(f"{rest}/v1/models", timeout=TIMEOUT), 400, parity_target,
                 "Missing model name in request.")
    url = model_url(rest, parity_target, ":predict")
    assert_error(requests.get(url, timeout=TIMEOUT), 400, parity_target,
                 f"Malformed request: GET /v1/models/{parity_target.model_name}:predict")
    assert_error(requests.put(model_url(rest, parity_target), timeout=TIMEOUT), 400,
                 parity_target)
    assert requests.get(f"{rest}/v2/models", timeout=TIMEOUT).status_code == 404


def test_server_stays_up_after_bad_requests(parity_target, rest):
    url = model_url(rest, parity_target, ":predict")
    for body in (b"\xff\xfe", b"[" * 100_000, b'{"instances": [[[[[[1]]]]]]}', b"null"):
        assert post(url, body).status_code == 400
    images = random_images(1, seed=11)
    response = post(url, {"instances": images.tolist()})
    assert response.status_code == 200
    probability = response.json()["predictions"][0][contract.PROBABILITY]
    assert np.float32(probability) == grpc_predict(parity_target, images)[contract.PROBABILITY][0]


# ------------------------------------------------------------------------------ full size
def test_full_size_image_round_trips(tmp_path):
    """A 512x512x1 uint8 instance (a 1.7 MB nested list) gives the gRPC answer."""
    size = 512
    base_path = tmp_path / "big"
    save_version(base_path, 1, image_size=size)
    write_model_config(tmp_path / "models.config",
                       build_model_config([model_entry("big", base_path)]))
    images = random_images(2, image_size=size, seed=12)
    with running_server(tmp_path / "models.config", rest_api_port=free_port()) as server:
        response = post(f"http://{server.rest_address}/v1/models/big:predict",
                        {"instances": images.tolist()})
        assert response.status_code == 200, response.text
        from support.parity import ParityTarget
        target = ParityTarget(grpc_address=server.address, rest_address=server.rest_address,
                              model_name="big", server=server)
        expected = grpc_predict(target, images)
    for name, values in expected.items():
        got = [row[name] for row in response.json()["predictions"]]
        np.testing.assert_array_equal(np.asarray(got, dtype=np.float32), values)


def test_explain_signature_is_listed_and_answers_over_rest_as_over_grpc(parity_target, rest):
    """serving_explain (Grad-CAM) is a plain signature: GetModelMetadata lists it, and REST
    with signature_name gives gRPC's probability and heat map."""
    response = requests.get(model_url(rest, parity_target, "/metadata"), timeout=TIMEOUT)
    signatures = response.json()["metadata"]["signature_def"]["signature_def"]
    outputs = signatures[contract.SERVING_EXPLAIN]["outputs"]
    assert [d["size"] for d in outputs[contract.HEATMAP]["tensor_shape"]["dim"]] == \
        ["-1", str(IMAGE_SIZE), str(IMAGE_SIZE), "1"]
    images = random_images(2, seed=9)
    response = post(model_url(rest, parity_target, ":predict"),
                    {"signature_name": contract.SERVING_EXPLAIN, "instances": images.tolist()})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    expected = grpc_predict(parity_target, images, signature=contract.SERVING_EXPLAIN)
    assert expected[contract.HEATMAP].shape == (2, IMAGE_SIZE, IMAGE_SIZE, 1)
    for name, values in expected.items():
        got = np.asarray([row[name] for row in predictions], dtype=np.float32)
        np.testing.assert_array_equal(got, values)
