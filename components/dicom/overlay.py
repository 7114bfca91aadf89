"""How a Grad-CAM heat map is drawn over the slice it explains: one colouring for the web page
(a transparent layer it toggles over the thumbnail) and the HTML report (the blended picture).

The map (float [H, W] in [0, 1], from the `serving_explain` signature) is coloured on a
blue -> cyan -> yellow -> red ramp, and its opacity grows with the heat, so cold areas leave
the anatomy visible and only where the model looked is tinted; the heat is drawn in 256 levels
(a palette), which makes a layer a one-channel palette image. Pure numpy: the thin clients
draw it without TensorFlow.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

# heat -> RGB anchors (linear in between)
_HEAT_STOPS = np.array([0.0, 0.35, 0.65, 1.0])
_HEAT_RGB = np.array([[0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0]], dtype=np.float64)
MAX_OPACITY = 0.7  # at the peak: the anatomy under it still shows
LEVELS = 256       # heat is drawn in 256 steps (finer than the eye tells apart on the ramp)


def heat_rgba(heatmap: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 4]: the coloured, heat-weighted translucent layer."""
    return heat_palette()[heat_levels(heatmap)]


def heat_levels(heatmap: np.ndarray) -> np.ndarray:
    """uint8 [H, W]: the heat in LEVELS steps, round(heat * 255): an index into heat_palette.
    A layer is drawn from these (the web page sends them as a palette PNG, a quarter of the
    RGBA bytes to compress and send)."""
    return np.rint(_heat(heatmap) * (LEVELS - 1)).astype(np.uint8)


@lru_cache(maxsize=1)
def heat_palette() -> np.ndarray:
    """uint8 [LEVELS, 4]: colour and opacity of each heat level (heat = level / 255)."""
    heat = np.arange(LEVELS) / (LEVELS - 1)
    rgb = np.stack([np.interp(heat, _HEAT_STOPS, _HEAT_RGB[:, c]) for c in range(3)], axis=-1)
    alpha = MAX_OPACITY * 255.0 * heat
    palette = np.round(np.concatenate([rgb, alpha[:, None]], axis=-1)).astype(np.uint8)
    palette.flags.writeable = False
    return palette


def blend(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """uint8 [H, W, 3]: the grey slice (uint8 [H, W] or [H, W, 1]) with the layer over it."""
    grey = np.asarray(image, dtype=np.float64)
    if grey.ndim == 3:
        grey = grey[..., 0]
    layer = heat_rgba(heatmap).astype(np.float64)
    if layer.shape[:2] != grey.shape:
        raise ValueError(f"heat map {list(layer.shape[:2])} and image {list(grey.shape)} "
                         "differ in size")
    alpha = layer[..., 3:] / 255.0
    mixed = grey[..., None] * (1.0 - alpha) + layer[..., :3] * alpha
    return np.round(mixed).astype(np.uint8)


def _heat(heatmap: np.ndarray) -> np.ndarray:
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.ndim == 3 and heat.shape[-1] == 1:
        heat = heat[..., 0]
    if heat.ndim != 2:
        raise ValueError(f"heat map must be [H, W], got {list(heat.shape)}")
    return np.clip(np.nan_to_num(heat, nan=0.0), 0.0, 1.0)
