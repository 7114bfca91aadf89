"""The `serving_explain` signature: Grad-CAM in the exported graph, geometry, and serving.

A model with hand-set weights makes the answer known: identity-like convolutions carry one
bright pixel to exactly one cell of the last convolution, so the heat map's peak must land on
that pixel (a plain resize would miss it by up to stride/2 + offset pixels). The same signature
is then called through the local server over gRPC with the thin client.
"""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from components import contract
from components.trainer.config import ModelConfig
from components.trainer.explain import (last_conv_index, receptive_geometry,
                                        upsampling_matrix)
from components.trainer.export import export_serving_model
from components.trainer.model import build_model
from serving.api.model_config import build_model_config, model_entry, write_model_config
from serving.client.model_client import ModelClient
from support.serving_fixtures import (MODEL_NAME, random_images, running_server,
                                      save_version)

SIZE = 96  # conv3 is 7x7 here: cells centred on pixels 17, 26, ..., 71


def pointing_model(size: int = SIZE):
    """widths (2, 2, 2), GAP head: every conv passes its input's centre tap through, so a
    lone bright pixel on a cell centre reaches one conv3 cell and nothing else."""
    model = build_model(ModelConfig(image_size=size, widths=(2, 2, 2), dense_units=2,
                                    head="gap", dropout=0.0))
    for layer in model.layers:
        if layer.name.startswith("conv"):
            kernel, bias = layer.get_weights()
            kernel[:] = 0.0
            kernel[1, 1] = np.eye(kernel.shape[2], kernel.shape[3])
            layer.set_weights([kernel, np.zeros_like(bias)])
    model.get_layer("dense").set_weights([np.eye(2, dtype=np.float32), np.zeros(2, np.float32)])
    model.get_layer("logit").set_weights([np.ones((2, 1), np.float32), np.zeros(1, np.float32)])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("explain") / "model")
    export_serving_model(pointing_model(), SIZE, folder)
    return tf.saved_model.load(folder)


def test_geometry_of_the_default_model():
    """The seed's architecture at 512^2: conv3 is 54x54, cell u centred on pixel 17 + 9u
    (3x3 'valid' convolutions, 3x3 pools); the pointing test below checks it on pixels."""
    model = build_model(ModelConfig(image_size=512))
    split = last_conv_index(model)
    assert model.layers[split].name == "conv3"
    assert model.layers[split].output.shape[1:3] == (54, 54)
    assert receptive_geometry(model.layers[:split + 1]) == (17.0, 9.0)


def test_upsampling_matrix_interpolates_between_cell_centres():
    matrix = upsampling_matrix(SIZE, 7, (17.0, 9.0))
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    assert matrix[17, 0] == 1.0 and matrix[71, 6] == 1.0 and matrix[44, 3] == 1.0
    assert matrix[0, 0] == 1.0 and matrix[SIZE - 1, 6] == 1.0  # clamped beyond the edges
    np.testing.assert_allclose(matrix[20, :2], [6 / 9, 3 / 9], atol=1e-6)


def test_explain_signature_points_at_the_evidence(exported):
    assert contract.SERVING_EXPLAIN in exported.signatures
    images = np.zeros((4, SIZE, SIZE, 1), np.uint8)
    images[0, 44, 62] = 255
    images[1, 26, 53] = 200
    images[3, 26, 71] = 200  # conv3 column 6: the last 3x3 pool drops it, the logit never sees it
    explained = exported.signatures[contract.SERVING_EXPLAIN](image=tf.constant(images))
    plain = exported.signatures[contract.SERVING_DEFAULT](image=tf.constant(images))
    np.testing.assert_allclose(explained[contract.PROBABILITY].numpy(),
                               plain[contract.PROBABILITY].numpy(), rtol=1e-6)
    heat = explained[contract.HEATMAP].numpy()
    assert heat.shape == (4, SIZE, SIZE, 1) and heat.dtype == np.float32
    assert np.all(np.isfinite(heat)) and heat.min() >= 0.0 and heat.max() <= 1.0
    for index, peak in ((0, (44, 62)), (1, (26, 53))):
        assert np.unravel_index(np.argmax(heat[index, :, :, 0]), (SIZE, SIZE)) == peak
        assert heat[index].max() == 1.0
    assert np.all(heat[2] == 0.0)  # no evidence anywhere: zeros, not NaN
    # plain Grad-CAM would light the unseen pixel's cell (its channel weights come from the
    # other cells); the pixel gradient of the guided map knows the logit does not depend on it
    assert np.all(heat[3] == 0.0)


def test_explain_is_served_over_grpc_by_the_thin_client(tmp_path):
    version_dir = save_version(tmp_path / MODEL_NAME, 1)
    write_model_config(tmp_path / "models.config",
                       build_model_config([model_entry(MODEL_NAME, tmp_path / MODEL_NAME)]))
    images = random_images(5, seed=3)
    reference = tf.saved_model.load(str(version_dir)).signatures[contract.SERVING_EXPLAIN](
        image=tf.constant(images))
    with running_server(tmp_path / "models.config") as server, \
            ModelClient(server.address, max_batch=2) as client:
        assert contract.SERVING_EXPLAIN in client.metadata().signature_names
        result = client.explain_tensors(images)
        plain = client.predict_tensors(images)
    assert result.prediction.signature_name == contract.SERVING_EXPLAIN
    assert result.prediction.model_version == 1
    assert result.heatmaps.shape == images.shape[:3]
    np.testing.assert_array_equal(result.heatmaps, reference[contract.HEATMAP].numpy()[..., 0])
    np.testing.assert_array_equal(result.prediction.probabilities, plain.probabilities)
    assert result.heatmaps.max() == 1.0
