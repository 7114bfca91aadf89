"""Step 5's table path (components/dicom/preprocessing.py clip_and_scale) against its definition.

Integer frames are scaled from a histogram of their stored levels and a per-level table instead
of np.percentile and float64 arithmetic on every pixel (issue 13: the percentile and the copies
cost several times pydicom's decode). The promise is byte-identical output, so these tests
compare it bit for bit with the per-pixel definition on frames hypothesis chooses: any dtype
an MR decoder or PNG gives, any rescale and MONOCHROME1, ties, outliers and tiny images.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.dicom.frames import ModalityPixels
from components.dicom.preprocessing import (PreprocessSettings, RejectedInput,
                                            _clip_and_scale_values, _percentiles_from_counts,
                                            _pixels_to_tensor, _scaled_level_table,
                                            clip_and_scale, fit_to_square, pixels_to_tensor,
                                            to_uint8_tensor)

DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.int32, np.uint32)
SLOPES = (1.0, 2.5, 0.25, -1.0, 1e-3, 0.1, 3.3e5)


@st.composite
def frames(draw) -> ModalityPixels:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    info = np.iinfo(dtype)
    low = draw(st.integers(max(info.min, -40000), min(info.max, 60000)))
    span = draw(st.sampled_from((1, 2, 7, 255, 4095, 65535)))
    high = min(info.max, low + span)
    rows, cols = draw(st.integers(1, 40)), draw(st.integers(1, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    stored = rng.integers(low, high, size=(rows, cols), endpoint=True).astype(dtype)
    if draw(st.booleans()):  # a background of one value, as MR has: many ties
        stored[: rows // 2] = low
    return ModalityPixels(stored, draw(st.sampled_from(SLOPES)),
                          draw(st.sampled_from((0.0, -100.0, 1024.0, 0.5))), draw(st.booleans()))


def per_pixel(frame: ModalityPixels, low: float = 0.5, high: float = 99.5):
    try:
        return _clip_and_scale_values(frame.values(), low, high)
    except RejectedInput as exc:
        return exc.rejection.reason


def table_path(frame: ModalityPixels, low: float = 0.5, high: float = 99.5):
    try:
        return clip_and_scale(frame, low, high)
    except RejectedInput as exc:
        return exc.rejection.reason


@settings(max_examples=150, deadline=None, derandomize=True)
@given(frames(), st.sampled_from(((0.5, 99.5), (0.0, 100.0), (1.0, 99.0), (25.0, 75.0))))
def test_table_path_is_byte_identical_to_the_per_pixel_definition(frame, percentiles):
    expected, got = per_pixel(frame, *percentiles), table_path(frame, *percentiles)
    if isinstance(expected, str):
        assert got == expected
    else:
        assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.integers(-5000, 5000), min_size=1, max_size=300),
       st.sampled_from(SLOPES), st.booleans(),
       st.lists(st.floats(0.0, 100.0), min_size=1, max_size=4))
def test_percentiles_from_counts_equal_np_percentile(levels, slope, invert, percentiles):
    stored = np.array(levels, dtype=np.int32)
    frame = ModalityPixels(stored, slope, 7.0, invert)
    low = int(stored.min())
    counts = np.bincount(stored - low)
    values = frame.modality(np.arange(low, int(stored.max()) + 1))
    got = _percentiles_from_counts(values, counts, tuple(percentiles),
                                   descending=(slope < 0) != invert)
    assert got.tobytes() == np.percentile(frame.values(), percentiles).tobytes()


def test_the_table_path_is_taken_for_16_bit_frames_and_not_for_floats_or_wide_ranges():
    rng = np.random.default_rng(0)
    assert _scaled_level_table(ModalityPixels(rng.integers(0, 4096, (64, 64), dtype=np.uint16)),
                               0.5, 99.5) is not None
    assert _scaled_level_table(ModalityPixels(rng.random((64, 64)).astype(np.float32)),
                               0.5, 99.5) is None
    wide = np.array([[0, 2 ** 30], [5, 7]], dtype=np.int32)
    assert _scaled_level_table(ModalityPixels(wide), 0.5, 99.5) is None
    assert table_path(ModalityPixels(wide)).tobytes() == per_pixel(ModalityPixels(wide)).tobytes()


@settings(max_examples=150, deadline=None, derandomize=True)
@given(frames())
def test_a_frame_that_needs_no_resize_is_rounded_through_its_table_with_the_same_bytes(frame):
    """Its longest side is already the tensor's size (512x512 MR, or padded only): step 7's
    rounding is applied to the table of levels, not to every pixel."""
    size = max(frame.stored.shape)
    try:
        expected = to_uint8_tensor(fit_to_square(_clip_and_scale_values(frame.values(), 0.5,
                                                                        99.5), size))
        got = _pixels_to_tensor(frame, PreprocessSettings(image_size=size))
    except RejectedInput as exc:
        with pytest.raises(RejectedInput) as raised:
            _pixels_to_tensor(frame, PreprocessSettings(image_size=size))
        assert raised.value.rejection == exc.rejection
        return
    assert got.dtype == np.uint8 and got.shape == (size, size, 1)
    assert got.tobytes() == expected.tobytes()


@pytest.mark.parametrize("shape", [(512, 512), (512, 400), (384, 416), (748, 640), (30, 20)])
def test_pixels_to_tensor_of_integers_equals_it_of_the_same_values_as_floats(shape):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    head = (rows - shape[0] / 2) ** 2 + (cols - shape[1] / 2) ** 2 < (min(shape) / 3) ** 2
    noise = np.random.default_rng(1).integers(0, 300, shape)
    stored = (1500 * head + noise).astype(np.uint16)  # a disk: pure noise has no anatomy
    assert np.array_equal(pixels_to_tensor(stored), pixels_to_tensor(stored.astype(np.float64)))
