"""Uncompressed little-endian frames are read as views of the pixel bytes
(components.dicom.frames._native_frame); every value must be pydicom's decoder's, unused high
bits included, for every bit depth, sign, frame and transfer syntax it takes."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import pixel_array
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
                         ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless)

from components.dicom import frames

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"


def dataset(values: np.ndarray, bits_stored: int, syntax=ExplicitVRLittleEndian) -> Dataset:
    """A written and re-read single- or multi-frame greyscale data set holding `values` as
    stored (whatever their unused high bits hold)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    ds.SOPInstanceUID = "1.2.3.4"
    frame_count, ds.Rows, ds.Columns = values.shape
    if frame_count > 1:
        ds.NumberOfFrames = frame_count
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = values.dtype.itemsize * 8
    ds.BitsStored = bits_stored
    ds.HighBit = bits_stored - 1
    ds.PixelRepresentation = int(values.dtype.kind == "i")
    ds.PixelData = values.astype(values.dtype.newbyteorder("<")).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True,
               implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)
    return pydicom.dcmread(io.BytesIO(buffer.getvalue()))


def both(ds: Dataset, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    found = frames._native_frame(ds, index, ds.file_meta.TransferSyntaxUID)
    assert found is not None
    native, levels = found
    if levels is not None:  # the extremes it found on the way are the frame's
        assert levels == (native.min(), native.max())
    return native, pixel_array(ds, index=index)


@settings(max_examples=60, deadline=None)
@given(dtype=st.sampled_from([np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32]),
       frames_=st.integers(1, 3), shape=st.tuples(st.integers(1, 9), st.integers(1, 9)),
       unused=st.integers(0, 7), seed=st.integers(0, 2**32 - 1),
       syntax=st.sampled_from([ExplicitVRLittleEndian, ImplicitVRLittleEndian]))
def test_a_view_of_the_bytes_equals_pydicoms_decode(dtype, frames_, shape, unused, seed,
                                                    syntax):
    """Random bit patterns, unused high bits set or not: values, dtype and shape agree."""
    info = np.iinfo(dtype)
    values = np.random.default_rng(seed).integers(info.min, info.max, (frames_, *shape),
                                                  dtype=dtype, endpoint=True)
    if seed % 2:  # half the cases keep their values within Bits Stored (the usual file)
        values = values >> unused  # arithmetic for signed: within the stored range
    ds = dataset(values, info.bits - unused, syntax)
    for index in range(frames_):
        native, decoded = both(ds, index)
        assert native.dtype == decoded.dtype and native.shape == decoded.shape
        np.testing.assert_array_equal(native, decoded)


def test_the_twelve_bit_mr_of_pydicom_and_a_deflated_file_agree():
    for name in ("MR_small.dcm", "MR_small_implicit.dcm", "MR_small_padded.dcm",
                 "image_dfl.dcm"):
        ds = pydicom.dcmread(TEST_FILES / name)
        native, decoded = both(ds)
        np.testing.assert_array_equal(native, decoded)


def test_what_it_does_not_take_goes_to_pydicom():
    values = np.arange(12, dtype=np.uint16).reshape(1, 3, 4)
    big = pydicom.dcmread(TEST_FILES / "MR_small_bigendian.dcm")
    rle = pydicom.dcmread(TEST_FILES / "MR_small_RLE.dcm")
    for ds in (big, rle):
        assert frames._native_frame(ds, 0, ds.file_meta.TransferSyntaxUID) is None
    short = dataset(values, 16)
    short.PixelData = short.PixelData[:-2]   # fewer bytes than the frame: pydicom's error
    assert frames._native_frame(short, 0, ExplicitVRLittleEndian) is None
    assert frames._native_frame(dataset(values, 16), 1, ExplicitVRLittleEndian) is None
    assert ExplicitVRBigEndian not in frames._LITTLE_ENDIAN_NATIVE
    assert DeflatedExplicitVRLittleEndian in frames._LITTLE_ENDIAN_NATIVE
    assert RLELossless not in frames._LITTLE_ENDIAN_NATIVE


def test_the_view_is_read_only_so_no_step_can_change_the_files_bytes():
    native, _ = both(dataset(np.arange(12, dtype=np.uint16).reshape(1, 3, 4), 12))
    with pytest.raises(ValueError):
        native[0, 0] = 1
