"""The production 512x512 path end to end: DICOM folders -> pipeline -> pushed model -> gRPC.

Few studies and two epochs keep it to a few minutes on 2 cores; the science (AUC) is checked at
small image sizes in test_pipeline.py, this test proves the full-size plumbing and the
train/serve byte identity.
"""
from __future__ import annotations

import dataclasses
import glob
import os
import time

import numpy as np
import pytest
import tensorflow as tf

from components import features
from components.contract import DEFAULT_MODEL_NAME
from components.dicom.records import decode_example, read_tfrecords
from components.dicom_example_gen.file_to_examples import slice_index
from components.dicom.preprocessing import PreprocessedSlice
from serving.client.model_client import ModelClient
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.client.predict import predict_paths
from components.dicom.slices import expand_paths, files_to_slices
from serving.api.tensor_codec import from_tensor_proto

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def full_size_run(tmp_path_factory, pipeline_salt):
    from support.pipeline_fixtures import SMALL_MODEL, run_pipeline, synthetic_config

    model = dataclasses.replace(SMALL_MODEL, image_size=512, widths=(32, 64, 128),
                                dense_units=128, batch_size=8, epochs=2)
    config, manifest = synthetic_config(  # two epochs prove the plumbing, not the science
        tmp_path_factory.mktemp("full_size"), studies=6, seed=4, slices=3, model=model,
        min_study_auc=0.0)
    run = run_pipeline(config, manifest)
    assert run.summary.pushed_version == 1
    return run


@pytest.fixture(scope="module")
def pushed_model_client(full_size_run, tmp_path_factory):
    from support.serving_fixtures import running_server

    config = full_size_run.config
    config_path = tmp_path_factory.mktemp("serving") / "models.config"
    write_model_config(config_path, build_model_config(
        [model_entry(config.model_name, config.model_base_path)]))
    with running_server(config_path, poll_seconds=0.3) as server:
        client = ModelClient(server.address, config.model_name)
        yield client
        client.close()


def stored_examples(run) -> dict[tuple[bytes, bytes, int], bytes]:
    """(study_id, series_id, slice_index) -> stored image bytes, over every split."""
    files = glob.glob(os.path.join(run.summary.examples_uri, "Split-*", "*.gz"))
    stored = {}
    for example in (decode_example(record) for path in files for record in read_tfrecords(path)):
        key = (example[features.STUDY_ID][0], example[features.SERIES_ID][0],
               example[features.SLICE_INDEX][0])
        stored[key] = example[features.IMAGE][0]
    return stored


def client_slices(run) -> list[tuple[PreprocessedSlice, int]]:
    """What the client preprocesses for every labelled study folder of the export, each slice
    with its index as DicomExampleGen numbers it (InstanceNumber, or frame number)."""
    study_dirs = [path for path in glob.glob(os.path.join(run.config.data_dir, "*", "*"))
                  if os.path.basename(path) in run.manifest.studies]
    files = files_to_slices(expand_paths(study_dirs), image_size=512)
    # file.frames counts rejected frames too (a localizer keeps its axial frame only).
    return [(slice_, slice_index(slice_, file.frames)) for file in files for slice_ in file.slices]


def test_client_sends_exactly_the_tensors_the_pipeline_stored(full_size_run, pushed_model_client):
    stored = stored_examples(full_size_run)
    salt = features.resolve_salt(full_size_run.config.salt)
    slices = client_slices(full_size_run)
    assert len(slices) == len(stored) > 0
    images = np.stack([s.image for s, _ in slices])
    request = pushed_model_client.build_request(images)
    sent = from_tensor_proto(request.inputs["image"])
    assert sent.dtype == np.uint8 and sent.shape == (len(slices), 512, 512, 1)
    for index, (slice_, number) in enumerate(slices):
        key = (features.hash_uid(slice_.study_uid, salt).encode(),
               features.hash_uid(slice_.series_uid, salt).encode(), number)
        assert stored[key] == sent[index].tobytes(), f"slice {index} differs"


def test_grpc_prediction_equals_in_process_savedmodel(full_size_run, pushed_model_client):
    slices = client_slices(full_size_run)[:6]
    images = np.stack([s.image for s, _ in slices])
    result = pushed_model_client.predict_tensors(images)
    model = tf.saved_model.load(full_size_run.summary.pushed_path)
    expected = model.signatures["serving_default"](image=tf.constant(images))["probability"]
    np.testing.assert_allclose(result.probabilities, expected.numpy(), rtol=1e-5, atol=1e-6)
    assert result.model_version == 1
    assert np.all((result.probabilities >= 0) & (result.probabilities <= 1))


def test_served_heat_maps_equal_the_in_process_explanation(full_size_run, pushed_model_client):
    """serving_explain at 512x512 over gRPC gives the SavedModel's own heat maps (the pointing
    game on a model that learned is in test_pipeline.py: two epochs prove plumbing only)."""
    from support.lesions import positive_lesion_slices

    images, masks, _ = positive_lesion_slices(full_size_run)
    assert masks.shape == images.shape[:3] and masks.any(axis=(1, 2)).all()
    images = images[:4]
    explained = pushed_model_client.explain_tensors(images)
    assert explained.prediction.signature_name == "serving_explain"
    model = tf.saved_model.load(full_size_run.summary.pushed_path)
    expected = model.signatures["serving_explain"](image=tf.constant(images))
    np.testing.assert_allclose(explained.heatmaps, expected["heatmap"].numpy()[..., 0],
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(explained.prediction.probabilities,
                               expected["probability"].numpy(), rtol=1e-5, atol=1e-6)


def test_folder_is_one_study_with_mean_probability(full_size_run, pushed_model_client):
    study_uid = next(uid for uid, record in full_size_run.manifest.studies.items()
                     if record.axial_slices)
    folder = glob.glob(os.path.join(full_size_run.config.data_dir, "*", study_uid))[0]
    prediction = predict_paths(pushed_model_client, [folder])
    assert len(prediction.studies) == 1
    slice_probabilities = [s.probability for s in prediction.slices]
    assert prediction.studies[0].probability == pytest.approx(np.mean(slice_probabilities))


def _request(images, **spec) -> "predict_pb2.PredictRequest":
    from serving.api.protos import predict_pb2
    from serving.api.tensor_codec import to_tensor_proto

    request = predict_pb2.PredictRequest()
    request.model_spec.name = spec.get("name", DEFAULT_MODEL_NAME)
    if "version" in spec:
        request.model_spec.version.value = spec["version"]
    if "label" in spec:
        request.model_spec.version_label = spec["label"]
    if images is not None:
        request.inputs["image"].CopyFrom(to_tensor_proto(images))
    return request


def test_malformed_requests_on_the_pipeline_model_keep_the_server_up(pushed_model_client):
    import grpc

    from serving.api.protos import prediction_service_pb2_grpc

    good = np.zeros((1, 512, 512, 1), np.uint8)
    short = _request(good)
    short.inputs["image"].tensor_content = short.inputs["image"].tensor_content[:-7]
    invalid, not_found = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
    cases = [(_request(good.astype(np.float32)), invalid), (_request(good[:, :64, :64]), invalid),
             (_request(None), invalid), (short, invalid), (_request(good, name="nope"), not_found),
             (_request(good, version=99), not_found), (_request(good, label="nope"), invalid)]
    with grpc.insecure_channel(pushed_model_client.target) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for request, code in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.Predict(request, timeout=30)
            assert caught.value.code() == code, caught.value.details()
            assert stub.Predict(_request(good), timeout=30).model_spec.version.value >= 1


def test_new_pipeline_version_appears_while_a_client_loops(full_size_run, pushed_model_client):
    import threading

    from support.serving_fixtures import copy_version

    images = np.stack([s.image for s, _ in client_slices(full_size_run)[:2]])
    answers, failures, stop = [], [], threading.Event()

    def loop():
        with ModelClient(pushed_model_client.target, DEFAULT_MODEL_NAME, retries=0) as client:
            while not stop.is_set():
                try:
                    answers.append(client.predict_tensors(images).model_version)
                except Exception as error:  # noqa: BLE001 -- every failure is the finding
                    failures.append(repr(error))

    worker = threading.Thread(target=loop)
    worker.start()
    try:
        copy_version(full_size_run.summary.pushed_path, full_size_run.config.model_base_path, 2)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not answers or answers[-1] != 2):
            time.sleep(0.2)
    finally:
        stop.set()
        worker.join()
    assert failures == []
    assert answers[0] == 1 and answers[-1] == 2


def test_requests_built_as_tf_serving_documents_are_accepted(full_size_run, pushed_model_client):
    """tf.make_tensor_proto of uint8 (serving_default) or float (serving_float) arrays, typed
    float_val too; replies decode with tf.make_ndarray and agree with the client library."""
    import grpc

    from serving.api.protos import predict_pb2, prediction_service_pb2_grpc

    images = np.stack([s.image for s, _ in client_slices(full_size_run)[:2]])
    expected = pushed_model_client.predict_tensors(images).probabilities
    requests = []
    for signature, array in (("serving_default", images), ("serving_float", images.astype(np.float32))):
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = DEFAULT_MODEL_NAME, signature
        request.inputs["image"].CopyFrom(tf.make_tensor_proto(array))
        requests.append(request)
    typed = predict_pb2.PredictRequest()
    typed.CopyFrom(requests[1])
    typed.inputs["image"].ClearField("tensor_content")
    typed.inputs["image"].float_val.extend(images.reshape(-1).astype(np.float32).tolist())
    requests.append(typed)
    with grpc.insecure_channel(pushed_model_client.target, options=[
            ("grpc.max_send_message_length", 64 << 20)]) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        for request in requests:
            reply = stub.Predict(request, timeout=60)
            np.testing.assert_allclose(tf.make_ndarray(reply.outputs["probability"]), expected,
                                       rtol=1e-5, atol=1e-6)
