"""SavedModel export with the signatures the rest of the system relies on.

The signatures and their tensor names are components/contract.py; what each one is for:
`serving_default` (uint8 images) is what the gRPC client sends, the preprocessed tensor and
nothing else. `serving_float` serves clients that build requests as TF Serving's docs do
(`tf.make_tensor_proto` of a float array): it rounds and clips to uint8 in the graph, so it
answers exactly as serving_default. `serving_examples` is what TFMA's Evaluator feeds: only
the image feature is parsed, so examples without a label (or any other feature) are accepted;
the image bytes go through the Trainer's own decoder, which also checks their length.
Every signature also returns the chosen operating threshold (`decision_threshold`, one copy
per image: see contract.THRESHOLD_OUTPUT). `serving_float` refuses NaN and infinite pixels
with an InvalidArgumentError (TF Serving answers INVALID_ARGUMENT): clipping would have turned
an all-NaN image into a confident probability.
`serving_explain` adds the Grad-CAM heat map (components/trainer/explain.py) to the uint8 path.
"""
from __future__ import annotations

import tensorflow as tf
import tf_keras as keras

from components import features
from components.contract import (DECISION_THRESHOLD, EXAMPLES_INPUT, HEATMAP, IMAGE_INPUT,
                                 LOGIT, PROBABILITY, SERVING_DEFAULT, SERVING_EXAMPLES,
                                 SERVING_EXPLAIN, SERVING_FLOAT, THRESHOLD_OUTPUT)
from components.trainer.data import decode_image
from components.trainer.explain import keras_grad_cam


def _outputs(logit: tf.Tensor, threshold: float) -> dict[str, tf.Tensor]:
    """[N, 1] logits -> the signature outputs, all float32 [N]."""
    logit = tf.reshape(tf.cast(logit, tf.float32), [-1])
    return {PROBABILITY: tf.sigmoid(logit), LOGIT: logit,
            THRESHOLD_OUTPUT: tf.fill(tf.shape(logit), tf.constant(threshold, tf.float32))}


def make_signatures(model: keras.Model, image_size: int,
                    threshold: float = DECISION_THRESHOLD
                    ) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """Concrete functions for every serving signature, closing over `model` and the chosen
    operating `threshold`."""

    @tf.function(input_signature=[
        tf.TensorSpec([None, image_size, image_size, 1], tf.uint8, name=IMAGE_INPUT)])
    def serve_images(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return _outputs(model(image, training=False), threshold)

    @tf.function(input_signature=[
        tf.TensorSpec([None, image_size, image_size, 1], tf.float32, name=IMAGE_INPUT)])
    def serve_float_images(image: tf.Tensor) -> dict[str, tf.Tensor]:
        image = tf.debugging.assert_all_finite(
            image, f"input '{IMAGE_INPUT}' holds NaN or infinite pixel values")
        as_uint8 = tf.cast(tf.clip_by_value(tf.round(image), 0.0, 255.0), tf.uint8)
        return _outputs(model(as_uint8, training=False), threshold)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        parsed = tf.io.parse_example(
            examples, {features.IMAGE: tf.io.FixedLenFeature([], tf.string)})
        image = decode_image(parsed[features.IMAGE], image_size)
        return _outputs(model(image, training=False), threshold)

    explain = keras_grad_cam(model, image_size)

    @tf.function(input_signature=[
        tf.TensorSpec([None, image_size, image_size, 1], tf.uint8, name=IMAGE_INPUT)])
    def serve_explanations(image: tf.Tensor) -> dict[str, tf.Tensor]:
        logit, heatmap = explain(image)
        return {**_outputs(logit, threshold), HEATMAP: heatmap}

    return {
        SERVING_DEFAULT: serve_images.get_concrete_function(),
        SERVING_EXPLAIN: serve_explanations.get_concrete_function(),
        SERVING_FLOAT: serve_float_images.get_concrete_function(),
        SERVING_EXAMPLES: serve_examples.get_concrete_function(),
    }


def export_serving_model(model: keras.Model, image_size: int, serving_model_dir: str,
                         threshold: float = DECISION_THRESHOLD) -> str:
    """Writes the SavedModel (Keras metadata included) and returns its directory."""
    model.save(serving_model_dir, save_format="tf",
               signatures=make_signatures(model, image_size, threshold))
    return serving_model_dir
