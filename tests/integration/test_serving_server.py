"""The local server speaks TF Serving's API: answers, metadata, status codes, health."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tensorflow as tf
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.api.protos import (classification_pb2, example_pb2, get_model_metadata_pb2,
                            get_model_status_pb2, predict_pb2, prediction_service_pb2_grpc,
                            model_service_pb2_grpc, regression_pb2, types_pb2)
from serving.api.tensor_codec import from_tensor_proto, to_tensor_proto
from support.serving_fixtures import (IMAGE_SIZE, MODEL_NAME, random_images, reference_predict,
                              running_server, save_version)

EXAMPLES_MODEL = "example_apis"


class ExampleApisModel(tf.Module):
    """A model whose signatures have Classify / Regress shapes (inputs -> classes/scores)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def classify(self, inputs):
        parsed = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})
        score = tf.sigmoid(parsed["x"])
        scores = tf.stack([1 - score, score], axis=1)
        classes = tf.tile(tf.constant([["control", "ms"]]), [tf.shape(inputs)[0], 1])
        return {"classes": classes, "scores": scores}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
    def regress(self, inputs):
        parsed = tf.io.parse_example(inputs, {"x": tf.io.FixedLenFeature([], tf.float32)})
        return {"outputs": 2 * parsed["x"]}


@pytest.fixture(scope="module")
def server_with_two_versions(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    versions = {v: save_version(root / MODEL_NAME, v) for v in (1, 2)}
    module = ExampleApisModel()
    tf.saved_model.save(module, str(root / EXAMPLES_MODEL / "1"),
                        signatures={"serving_default": module.classify,
                                    "regress": module.regress})
    config = build_model_config([
        model_entry(MODEL_NAME, root / MODEL_NAME, versions=[1, 2]),
        model_entry(EXAMPLES_MODEL, root / EXAMPLES_MODEL)])
    write_model_config(root / "models.config", config)
    with running_server(root / "models.config", poll_seconds=0.5,
                        enable_grpc_healthcheck_service=True) as server:
        channel = grpc.insecure_channel(server.address, options=[
            ("grpc.max_send_message_length", 128 << 20)])
        yield server, channel, versions
        channel.close()


def predict_stub(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


def image_request(images, *, version=None, label=None, name=MODEL_NAME, signature=""):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["image"].CopyFrom(to_tensor_proto(images))
    return request


def assert_code(call, code: grpc.StatusCode, match: str = ""):
    with pytest.raises(grpc.RpcError) as caught:
        call()
    assert caught.value.code() == code, caught.value.details()
    assert match in caught.value.details()


def test_latest_version_answers_and_equals_in_process_call(server_with_two_versions):
    _, channel, versions = server_with_two_versions
    images = random_images(4)
    response = predict_stub(channel).Predict(image_request(images), timeout=10)
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    reference = reference_predict(versions[2], images)
    for name in ("probability", "logit"):
        assert len(response.outputs[name].float_val) == 4  # typed reply, like TF Serving
        np.testing.assert_array_equal(from_tensor_proto(response.outputs[name]),
                                      reference[name])


def test_specific_version_is_served_and_differs(server_with_two_versions):
    _, channel, versions = server_with_two_versions
    images = random_images(3)
    response = predict_stub(channel).Predict(image_request(images, version=1), timeout=10)
    assert response.model_spec.version.value == 1
    got = from_tensor_proto(response.outputs["probability"])
    np.testing.assert_array_equal(got, reference_predict(versions[1], images)["probability"])
    assert not np.allclose(got, reference_predict(versions[2], images)["probability"])


def test_tf_make_tensor_proto_requests_and_make_ndarray_replies(server_with_two_versions):
    _, channel, versions = server_with_two_versions
    images = random_images(2)
    request = image_request(images)
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(images))  # tensor_content
    response = predict_stub(channel).Predict(request, timeout=10)
    expected = reference_predict(versions[2], images)["probability"]
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["probability"]), expected)
    typed = image_request(images)  # typed int_val, as a hand-written client may send
    typed.inputs["image"].Clear()
    typed.inputs["image"].dtype = types_pb2.DT_UINT8
    typed.inputs["image"].tensor_shape.CopyFrom(tf.make_tensor_proto(images).tensor_shape)
    typed.inputs["image"].int_val.extend(images.reshape(-1).tolist())
    response = predict_stub(channel).Predict(typed, timeout=10)
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["probability"]), expected)
    floats = image_request(images)
    floats.inputs["image"].CopyFrom(tf.make_tensor_proto(images.astype(np.float32)))
    assert_code(lambda: predict_stub(channel).Predict(floats, timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT, "to be uint8 but float is provided")


def test_examples_signature_matches_image_signature(server_with_two_versions):
    _, channel, _ = server_with_two_versions
    images = random_images(2)
    serialized = []
    for image in images:
        example = example_pb2.Example()
        example.features.feature["image"].bytes_list.value.append(image.tobytes())
        serialized.append(example.SerializeToString())
    request = predict_pb2.PredictRequest()
    request.model_spec.name, request.model_spec.signature_name = MODEL_NAME, "serving_examples"
    request.inputs["examples"].CopyFrom(to_tensor_proto(np.array(serialized, dtype=object)))
    by_examples = predict_stub(channel).Predict(request, timeout=10)
    by_images = predict_stub(channel).Predict(image_request(images), timeout=10)
    np.testing.assert_array_equal(from_tensor_proto(by_examples.outputs["probability"]),
                                  from_tensor_proto(by_images.outputs["probability"]))


def test_metadata_returns_signature_def_map(server_with_two_versions):
    _, channel, _ = server_with_two_versions
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = MODEL_NAME
    response = predict_stub(channel).GetModelMetadata(request, timeout=10)
    assert response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signatures)
    image = signatures.signature_def["serving_default"].inputs["image"]
    assert image.dtype == types_pb2.DT_UINT8
    assert [d.size for d in image.tensor_shape.dim] == [-1, IMAGE_SIZE, IMAGE_SIZE, 1]
    assert set(signatures.signature_def["serving_default"].outputs) == {"probability", "logit"}
    assert "serving_examples" in signatures.signature_def
    request.ClearField("metadata_field")
    assert_code(lambda: predict_stub(channel).GetModelMetadata(request, timeout=10),
                grpc.StatusCode.INVALID_ARGUMENT, "at least one metadata_field")


def _bad_requests():
    images = random_images(2)
    short = image_request(images)
    short.inputs["image"].tensor_content = short.inputs["image"].tensor_content[:-7]
    too_many_values = image_request(images[:1])
    too_many_values.inputs["image"].ClearField("tensor_content")
    too_many_values.inputs["image"].int_val.extend([1] * (IMAGE_SIZE * IMAGE_SIZE + 1))
    missing = image_request(images)
    missing.inputs.pop("image")
    extra = image_request(images)
    extra.inputs["mask"].CopyFrom(to_tensor_proto(images))
    bad_filter = image_request(images)
    bad_filter.output_filter.append("scores")
    huge_shape = image_request(images[:1])
    huge_shape.inputs["image"].ClearField("tensor_content")
    huge_shape.inputs["image"].tensor_shape.dim[0].size = 1 << 40
    huge_shape.inputs["image"].int_val.append(1)
    I, N, F = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
               grpc.StatusCode.FAILED_PRECONDITION)
    return [
        ("float dtype", image_request(images.astype(np.float32)), I, "but float is provided"),
        ("wrong shape", image_request(random_images(1, image_size=16)), I, "does not match"),
        ("wrong rank", image_request(images[:, :, :, 0]), I, "does not match"),
        ("missing input", missing, I, "Missing but required: {image}"),
        ("extra input", extra, I, "Sent extra: {mask}"),
        ("short tensor_content", short, I, "tensor_content has"),
        ("too many int_val", too_many_values, I, "values in int_val"),
        ("huge shape", huge_shape, I, "byte limit"),
        ("unknown model", image_request(images, name="nope"), N, "Latest(nope)"),
        ("unknown version", image_request(images, version=9), N, "Specific(ms_mri, 9)"),
        # TF Serving answers an unknown label with INVALID_ARGUMENT (server_core.cc)
        ("unknown label", image_request(images, label="nope"), I, "version label: nope"),
        ("no model name", image_request(images, name=""), I, "no name"),
        ("unknown signature", image_request(images, signature="nope"), F, '"nope" not found'),
        ("bad output filter", bad_filter, I, "output tensor alias not found"),
    ]


@pytest.mark.parametrize("case", _bad_requests(), ids=lambda case: case[0])
def test_malformed_requests_get_tf_serving_status_codes(server_with_two_versions, case):
    _, channel, _ = server_with_two_versions
    _, request, code, match = case
    assert_code(lambda: predict_stub(channel).Predict(request, timeout=10), code, match)
    ok = predict_stub(channel).Predict(image_request(random_images(1)), timeout=10)
    assert ok.model_spec.version.value == 2  # and the server keeps serving


def test_oversized_message_is_refused_and_server_survives(server_with_two_versions):
    """--max-message-mib (our extension; the default is TF Serving's INT32_MAX) caps requests."""
    shared, _, _ = server_with_two_versions
    with running_server(shared.settings.model_config, max_message_bytes=8 << 20) as server, \
            grpc.insecure_channel(server.address, options=[
                ("grpc.max_send_message_length", 128 << 20)]) as channel:
        count = server.settings.max_message_bytes // (IMAGE_SIZE * IMAGE_SIZE) + 8
        images = np.zeros((count, IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8)
        assert_code(lambda: predict_stub(channel).Predict(image_request(images), timeout=30),
                    grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert predict_stub(channel).Predict(image_request(random_images(1)), timeout=10)


def test_concurrent_clients_all_succeed(server_with_two_versions):
    _, channel, versions = server_with_two_versions
    images = random_images(8, seed=3)
    loaded = tf.saved_model.load(str(versions[2])).signatures["serving_default"]
    expected = np.array([loaded(image=tf.constant(images[i:i + 1]))["probability"].numpy()[0]
                         for i in range(8)])  # batch 1, as sent: same arithmetic

    def call(index):
        reply = predict_stub(channel).Predict(image_request(images[index:index + 1]), timeout=10)
        return from_tensor_proto(reply.outputs["probability"])[0]

    with ThreadPoolExecutor(8) as pool:
        got = list(pool.map(call, list(range(8)) * 4))
    np.testing.assert_array_equal(np.array(got), np.tile(expected, 4))


def test_model_status_and_health(server_with_two_versions):
    server, channel, _ = server_with_two_versions
    status = model_service_pb2_grpc.ModelServiceStub(channel)
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = MODEL_NAME
    response = status.GetModelStatus(request, timeout=10)
    available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
    assert [(s.version, s.state) for s in response.model_version_status] == \
        [(2, available), (1, available)]  # newest first, as TF Serving
    request.model_spec.version.value = 9
    assert_code(lambda: status.GetModelStatus(request, timeout=10), grpc.StatusCode.NOT_FOUND,
                "Could not find version 9")
    request.model_spec.name = "nope"
    request.model_spec.ClearField("version")
    assert_code(lambda: status.GetModelStatus(request, timeout=10), grpc.StatusCode.NOT_FOUND)
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "tensorflow.serving.PredictionService", "tensorflow.serving.ModelService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING, service


def _examples(values):
    request_input = classification_pb2.ClassificationRequest().input
    for value in values:
        example = request_input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(value)
    return request_input


def test_classify_and_regress_where_signatures_support_them(server_with_two_versions):
    _, channel, _ = server_with_two_versions
    stub = predict_stub(channel)
    request = classification_pb2.ClassificationRequest(input=_examples([0.0, 2.0]))
    request.model_spec.name = EXAMPLES_MODEL
    response = stub.Classify(request, timeout=10)
    first, second = response.result.classifications
    assert [c.label for c in first.classes] == ["control", "ms"]
    assert second.classes[1].score == pytest.approx(1 / (1 + np.exp(-2.0)), rel=1e-6)
    assert response.model_spec.version.value == 1
    regress = regression_pb2.RegressionRequest(input=_examples([1.5, -1.0]))
    regress.model_spec.name, regress.model_spec.signature_name = EXAMPLES_MODEL, "regress"
    assert [r.value for r in stub.Regress(regress, timeout=10).result.regressions] == [3.0, -2.0]
    # the MS model's signatures are Predict-shaped: Classify/Regress refuse them, as TF Serving
    request.model_spec.name = MODEL_NAME
    assert_code(lambda: stub.Classify(request, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
    regress.model_spec.name, regress.model_spec.signature_name = MODEL_NAME, "serving_examples"
    assert_code(lambda: stub.Regress(regress, timeout=10), grpc.StatusCode.INVALID_ARGUMENT)
