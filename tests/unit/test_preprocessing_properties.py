"""Property-based tests of the shared preprocessing (components/dicom/preprocessing.py, frames.py).

Whatever bytes and header values arrive, the promise is: a uint8 [S, S, 1] slice or a Rejection
whose reason is in REJECT_REASONS, never an exception. Valid MR files are built with pydicom,
then hypothesis mutates them (lying sizes, odd photometric interpretations, extreme rescale,
NaN/inf float pixels, bit-depth combinations, lying or textual frame counts) or replaces them
with arbitrary bytes. Issue 12's rows about misleading or unbounded rejections are pinned first.
"""
from __future__ import annotations

import contextlib
import io
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                         MRImageStorage, RLELossless)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.dicom.preprocessing import (REJECT_REASONS, PreprocessedSlice, Rejection,
                                            preprocess_dicom, preprocess_path)
from components.dicom.slices import NamedInput, file_to_slices, labelled_studies_only

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
SIZE = 16  # a small model input keeps each example cheap; the steps do not depend on it


def to_bytes(dataset: pydicom.Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


# ---------------------------------------------------------------- issue 12's rows

def test_a_lying_frame_count_on_a_one_frame_jpeg2000_file_is_one_bounded_rejection():
    dataset = pydicom.dcmread(TEST_FILES / "MR_small_jp2klossless.dcm")
    dataset.NumberOfFrames = 100000
    results = preprocess_dicom(to_bytes(dataset), image_size=SIZE)
    assert len(results) == 1
    assert isinstance(results[0], Rejection) and results[0].reason == "truncated"
    assert "NumberOfFrames declares 100000 frames" in results[0].detail


@pytest.mark.parametrize("declared, kept", [(3, 3), (4, 0)])
def test_compressed_multi_frame_data_is_checked_against_its_frame_count(declared, kept):
    dataset = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
    frames = np.stack([dataset.pixel_array + index for index in range(3)])
    dataset.NumberOfFrames = 3
    dataset.compress(RLELossless, frames, generate_instance_uid=False)
    dataset.NumberOfFrames = declared
    results = preprocess_dicom(to_bytes(dataset), image_size=SIZE,
                               orientations=("axial", "coronal", "sagittal", "oblique"))
    assert sum(isinstance(result, PreprocessedSlice) for result in results) == kept
    assert len(results) == (kept or 1)


def test_lying_rows_and_columns_on_compressed_data_are_refused_before_decoding():
    dataset = pydicom.dcmread(TEST_FILES / "MR_small_RLE.dcm")
    dataset.Rows = dataset.Columns = 65535
    started = time.monotonic()
    [rejection] = preprocess_dicom(to_bytes(dataset), image_size=SIZE)
    assert rejection.reason == "decode_error" and "exhaust memory" in rejection.detail
    assert time.monotonic() - started < 5  # it used to allocate 8 GiB and take 20 s


@pytest.mark.parametrize("slope, intercept, reason", [
    ("1e308", "0", "decode_error"),        # overflows to inf: rejected, without a numpy warning
    ("1.5e306", "0", None),                # values +-1.5e308: finite, their span overflows
])
def test_extreme_rescale_gives_a_rejection_or_a_finite_slice_without_numpy_warnings(
        slope, intercept, reason):
    pixels = np.arange(-100, 100, dtype=np.int16).reshape(10, 20)
    with lenient_pydicom():
        dataset = mr_dataset(pixels, ExplicitVRLittleEndian)
    dataset.RescaleSlope, dataset.RescaleIntercept = slope, intercept
    data = to_bytes(dataset)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        [result] = preprocess_dicom(data, image_size=SIZE)
    if reason:
        assert isinstance(result, Rejection) and result.reason == reason
    else:
        assert isinstance(result, PreprocessedSlice) and result.image.max() > 0


def random_after_dicm(seed: int, length: int = 2000) -> bytes:
    return b"\0" * 128 + b"DICM" + random.Random(seed).randbytes(length)


@pytest.mark.parametrize("seed", range(5))
def test_random_bytes_after_the_dicm_marker_are_undecodable_not_a_missing_study(seed):
    data = random_after_dicm(seed)
    assert [result.reason for result in preprocess_dicom(data, image_size=SIZE)] == ["decode_error"]
    ingest_check = labelled_studies_only(set(), salt="salt")
    file = file_to_slices(NamedInput("a.dcm", data), image_size=SIZE, study_check=ingest_check,
                          dicom_only=True)
    assert [rejection.reason for rejection in file.rejections] == ["decode_error"]


def test_a_decodable_file_without_study_uid_is_still_missing_study_uid():
    dataset = pydicom.dcmread(TEST_FILES / "MR_small.dcm")
    del dataset.StudyInstanceUID
    file = file_to_slices(NamedInput("a.dcm", to_bytes(dataset)), image_size=SIZE,
                          study_check=labelled_studies_only(set(), salt="salt"), dicom_only=True)
    assert [rejection.reason for rejection in file.rejections] == ["missing_study_uid"]


@contextlib.contextmanager
def lenient_pydicom():
    """Let pydicom write and read values that break their VR: that is the point here."""
    saved = (pydicom.config.settings.reading_validation_mode,
             pydicom.config.settings.writing_validation_mode)
    pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        (pydicom.config.settings.reading_validation_mode,
         pydicom.config.settings.writing_validation_mode) = saved


def mr_dataset(pixels: np.ndarray, transfer_syntax) -> pydicom.Dataset:
    """A complete MR Image Storage instance (as components/synthetic/dicom_files.py writes)."""
    dataset = pydicom.Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = MRImageStorage
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    dataset.StudyInstanceUID, dataset.SeriesInstanceUID = "1.2.3.5", "1.2.3.6"
    dataset.PatientName = "Doe^Jane"
    dataset.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    dataset.set_pixel_data(pixels, "MONOCHROME2", 16, generate_instance_uid=False)
    if transfer_syntax.is_compressed:
        dataset.compress(transfer_syntax, generate_instance_uid=False)
    dataset.file_meta.TransferSyntaxUID = transfer_syntax
    return dataset
