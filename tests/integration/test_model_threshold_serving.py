"""The exported model's own operating threshold and its NaN refusal, through the local server.

A real (untrained, tiny) Keras model exported by the Trainer's own export code: what matters
here is the contract, not the weights. In-process checks of the same signatures are in
test_trainer.py (on a trained model).
"""
from __future__ import annotations

import grpc
import numpy as np
import pytest

from components import contract
from components.trainer.config import ModelConfig
from components.trainer.export import export_serving_model
from components.trainer.model import build_model
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.api.protos import predict_pb2, prediction_service_pb2_grpc
from serving.api.tensor_codec import from_tensor_proto, to_tensor_proto
from serving.client.model_client import ModelClient
from support.serving_fixtures import MODEL_NAME, random_images, running_server

IMAGE_SIZE = 16
THRESHOLD = 0.42


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("threshold_model")
    model = build_model(ModelConfig(image_size=IMAGE_SIZE, widths=(4,), dense_units=4))
    export_serving_model(model, IMAGE_SIZE, str(root / MODEL_NAME / "1"), THRESHOLD)
    write_model_config(root / "models.config",
                       build_model_config([model_entry(MODEL_NAME, root / MODEL_NAME)]))
    with running_server(root / "models.config") as running:
        yield running


def test_metadata_shows_the_threshold_and_every_reply_carries_it(server):
    with ModelClient(server.address) as client:
        metadata = client.metadata()
        assert metadata.has_threshold
        assert contract.THRESHOLD_OUTPUT in metadata.output_names
        result = client.predict_tensors(random_images(3, IMAGE_SIZE))
    assert result.model_threshold == pytest.approx(THRESHOLD)
    assert (result.decision_threshold, result.threshold_source) == (pytest.approx(THRESHOLD),
                                                                    "model")


def _float_predict(server, images: np.ndarray) -> predict_pb2.PredictResponse:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL_NAME
    request.model_spec.signature_name = contract.SERVING_FLOAT
    request.inputs[contract.IMAGE_INPUT].CopyFrom(to_tensor_proto(images))
    with grpc.insecure_channel(server.address) as channel:
        return prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=60)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_signature_answers_invalid_argument_for_non_finite_pixels(server, bad):
    """An all-NaN image used to be clipped to black and scored p = 0.95; now it is refused,
    and the server stays up."""
    images = np.full((2, IMAGE_SIZE, IMAGE_SIZE, 1), 100.0, np.float32)
    images[1, 3, 4, 0] = bad  # one bad pixel in one image is enough
    with pytest.raises(grpc.RpcError) as refused:
        _float_predict(server, images)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "NaN or infinite" in refused.value.details()
    finite = _float_predict(server, images[:1])
    probability = from_tensor_proto(finite.outputs[contract.PROBABILITY])
    assert probability.shape == (1,) and np.isfinite(probability).all()
