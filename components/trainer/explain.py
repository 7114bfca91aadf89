"""Grad-CAM in the serving graph: where the classifier looked, for the `serving_explain` signature.

Grad-CAM (Selvaraju et al., 2017): weight each channel of the last convolution's activations by
the mean gradient of the logit with respect to it, sum over channels, keep the positive part.
Everything runs inside the exported tf.function (a GradientTape in the graph), so TF Serving
answers it like any other signature; nothing but the SavedModel is needed.

Resampling to the input's pixels follows the network's geometry, not a plain resize: with
'valid' 3x3 convolutions and 3x3 pools the last activation cell u is centred on input pixel
`offset + u * stride` (for the default 512^2 model: 17 + 9u, so cell 53 sits at pixel 494, where
a plain 54 -> 512 resize would put it at 507; the 13-pixel gap is the size of a small lesion).
`receptive_geometry` reads offset and stride from the layers, `upsampling_matrix` turns them
into a [S, h] bilinear interpolation matrix (edges clamped), applied to rows and columns.
The upsampled map is then multiplied by the positive part of the logit's gradient with respect
to the pixels, blurred over ~3 mm (Guided Grad-CAM, same paper: the class-discriminative
region, sharpened to the pixels in it that raise the score; see `GUIDE_SIGMA_MM`).
Each map is then divided by its own peak, so it lies in [0, 1]; a map with no positive evidence
is all zeros, not NaN.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf
import tf_keras as keras

# Guided Grad-CAM: the coarse map (one cell per ~17 mm at 128^2, per ~4 mm at 512^2) marks the
# region; the positive pixel gradient, blurred over ~3 mm (the smallest lesion), marks the
# pixels in it that raise the logit. Measured on the synthetic MNI data (tests/e2e, 128x128,
# 143 lesion slices of eval studies): the plain map's peak hit a lesion in 18 % of slices (it
# always sits on a cell centre, 9 px apart, while lesions are 6-8 px), the guided map's in 94 %.
GUIDE_SIGMA_MM = 2.8
FIELD_OF_VIEW_MM = 240.0

Geometry = tuple[float, float]  # (offset, stride): activation cell u is centred on input pixel
# offset + u * stride


def receptive_geometry(layers: list[keras.layers.Layer]) -> Geometry:
    """(offset, stride) of the last layer's cells in input pixels, for a chain of 2-D
    convolutions and max/average pools (and pixel-wise layers, which change nothing)."""
    offset, stride = 0.0, 1.0
    for layer in layers:
        if isinstance(layer, (keras.layers.InputLayer, keras.layers.Rescaling)):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            window = (layer.kernel_size[0] - 1) * layer.dilation_rate[0] + 1
            step = layer.strides[0]
        elif isinstance(layer, (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)):
            window, step = layer.pool_size[0], layer.strides[0]
        else:
            raise ValueError(f"Grad-CAM geometry: layer {layer.name!r} "
                             f"({type(layer).__name__}) is not a 2-D convolution or pool")
        if layer.padding == "valid":
            offset += (window - 1) / 2 * stride
        elif step != 1 or window % 2 == 0:
            raise ValueError(f"Grad-CAM geometry: layer {layer.name!r} has 'same' padding with "
                             f"stride {step} or an even window {window}; its centres are uneven")
        stride *= step
    return offset, stride


def upsampling_matrix(size: int, cells: int, geometry: Geometry) -> np.ndarray:
    """float32 [size, cells]: row x holds the bilinear weights of the cells around input pixel
    x's position in cell coordinates; positions beyond the first/last cell take its value."""
    offset, stride = geometry
    position = np.clip((np.arange(size) - offset) / stride, 0.0, cells - 1.0)
    below = np.floor(position).astype(int)
    above = np.minimum(below + 1, cells - 1)
    fraction = position - below
    matrix = np.zeros((size, cells), dtype=np.float32)
    matrix[np.arange(size), below] += (1.0 - fraction).astype(np.float32)
    matrix[np.arange(size), above] += fraction.astype(np.float32)
    return matrix


def grad_cam(features: Callable[[tf.Tensor], tf.Tensor], head: Callable[[tf.Tensor], tf.Tensor],
             image: tf.Tensor, rows: np.ndarray, cols: np.ndarray,
             guide_sigma: float = 0.0) -> tuple[tf.Tensor, tf.Tensor]:
    """(logit float32 [N], heat map float32 [N, S, S, 1] in [0, 1]).

    `features`: float pixels [N, S, S, 1] (0..255) -> last conv activations [N, h, w, C];
    `head`: activations -> logit [N] or [N, 1]; `rows` [S, h] and `cols` [S, w] from
    `upsampling_matrix`. The gradient of the summed logits gives each image its own gradient:
    the images do not interact in inference. With `guide_sigma` > 0 the coarse map is
    multiplied by the positive part of the logit's gradient with respect to the pixels,
    blurred by a Gaussian of that many pixels (guided Grad-CAM: see `GUIDE_SIGMA_MM`).
    """
    with tf.GradientTape() as tape:
        pixels = tf.cast(image, tf.float32)
        tape.watch(pixels)
        activations = tf.cast(features(pixels), tf.float32)
        logit = tf.reshape(tf.cast(head(activations), tf.float32), [-1])
    gradients, pixel_gradients = tape.gradient(logit, [activations, pixels])
    weights = tf.reduce_mean(gradients, axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * activations, axis=-1))
    heat = tf.einsum("yi,nij,xj->nyx", tf.constant(rows), cam, tf.constant(cols))
    if guide_sigma > 0:
        heat = heat * gaussian_blur(tf.nn.relu(pixel_gradients), guide_sigma)[..., 0]
    heat = tf.math.divide_no_nan(heat, tf.reduce_max(heat, axis=[1, 2], keepdims=True))
    return logit, heat[..., tf.newaxis]


def gaussian_blur(images: tf.Tensor, sigma: float) -> tf.Tensor:
    """Separable Gaussian blur of float [N, S, S, 1] (kernel radius 3 sigma, zero outside)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    taps = (taps / taps.sum()).astype(np.float32)
    blurred = tf.nn.conv2d(images, tf.constant(taps.reshape(-1, 1, 1, 1)), 1, "SAME")
    return tf.nn.conv2d(blurred, tf.constant(taps.reshape(1, -1, 1, 1)), 1, "SAME")


def last_conv_index(model: keras.Model) -> int:
    """Index in `model.layers` of the last Conv2D: Grad-CAM's layer (finest semantics that
    still has a spatial layout)."""
    convolutions = [i for i, layer in enumerate(model.layers)
                    if isinstance(layer, keras.layers.Conv2D)]
    if not convolutions:
        raise ValueError(f"model {model.name!r} has no Conv2D layer for Grad-CAM")
    return convolutions[-1]


def keras_grad_cam(model: keras.Model, image_size: int
                   ) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """image uint8 [N, S, S, 1] -> (logit, heat map) for a sequential-chain functional model
    (components/trainer/model.py): the layers up to the last Conv2D give the activations, the
    layers after it, applied in order, give the logit."""
    split = last_conv_index(model)
    conv = model.layers[split]
    # the layers from the pixels to the last convolution, on float pixels (the model's own
    # input casts uint8, which has no gradient)
    trunk = [layer for layer in model.layers[:split + 1]
             if not isinstance(layer, keras.layers.InputLayer)]
    tail = model.layers[split + 1:]
    _, cells, cells_w, _ = conv.output.shape
    geometry = receptive_geometry(model.layers[:split + 1])
    rows = upsampling_matrix(image_size, int(cells), geometry)
    cols = upsampling_matrix(image_size, int(cells_w), geometry)
    sigma = guide_sigma_pixels(image_size)

    def features(pixels: tf.Tensor) -> tf.Tensor:
        for layer in trunk:
            pixels = layer(pixels, training=False)
        return pixels

    def head(activations: tf.Tensor) -> tf.Tensor:
        for layer in tail:
            activations = layer(activations, training=False)
        return activations

    def explain(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return grad_cam(features, head, image, rows, cols, guide_sigma=sigma)

    return explain


def guide_sigma_pixels(image_size: int) -> float:
    """`GUIDE_SIGMA_MM` in pixels of an `image_size` input (a ~240 mm field of view)."""
    return GUIDE_SIGMA_MM * image_size / FIELD_OF_VIEW_MM
