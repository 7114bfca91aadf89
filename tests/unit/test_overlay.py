"""Heat-map overlay colours (components/dicom/overlay.py): cold is clear, hot is red."""
from __future__ import annotations

import numpy as np
import pytest

from components.dicom.overlay import MAX_OPACITY, blend, heat_rgba


def test_cold_is_transparent_and_the_peak_is_red_and_most_opaque():
    layer = heat_rgba(np.array([[0.0, 0.5], [1.0, 0.25]]))
    assert layer.dtype == np.uint8 and layer.shape == (2, 2, 4)
    assert layer[0, 0, 3] == 0
    assert layer[1, 0].tolist() == [255, 0, 0, round(MAX_OPACITY * 255)]
    assert layer[1, 0, 3] > layer[0, 1, 3] > layer[1, 1, 3] > 0


def test_blend_keeps_the_slice_where_the_map_is_cold():
    image = np.arange(16, dtype=np.uint8).reshape(4, 4, 1) * 10
    heat = np.zeros((4, 4))
    heat[2, 3] = 1.0
    mixed = blend(image, heat)
    assert mixed.shape == (4, 4, 3)
    cold = np.ones((4, 4), bool)
    cold[2, 3] = False
    assert np.array_equal(mixed[cold], np.repeat(image[cold], 3, axis=-1))
    assert mixed[2, 3, 0] > mixed[2, 3, 1]  # tinted red


def test_mismatched_sizes_are_refused():
    with pytest.raises(ValueError, match="differ in size"):
        blend(np.zeros((4, 4), np.uint8), np.zeros((5, 5)))
