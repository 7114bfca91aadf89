"""JPEG-LS is decoded by CharLS (pyjpegls) first, ~4x faster than pydicom's default order's first
plugin (pylibjpeg-libjpeg): components.dicom.frames.PREFERRED_DECODERS. Every value must be the
default decoder's, on every JPEG-LS file pydicom ships (lossless and near-lossless, 8 and 16
bits, signed, colour) and on our own synthetic MR slices; a file the preferred plugin cannot
decode still gets pydicom's own order, and its error."""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.pixels import pixel_array
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, JPEGLSNearLossless

from components.dicom import frames

TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
JPEG_LS_FILES = ["JPEGLSNearLossless_08.dcm", "JPEGLSNearLossless_16.dcm",
                 "MR_small_jpeg_ls_lossless.dcm", "SC_rgb_jls_lossy_line.dcm",
                 "SC_rgb_jls_lossy_sample.dcm"]


def test_jpeg_ls_prefers_charls_and_other_syntaxes_keep_pydicoms_order():
    assert frames.decoding_plugin(JPEGLSLossless) == "pyjpegls"
    assert frames.decoding_plugin(JPEGLSNearLossless) == "pyjpegls"
    assert frames.decoding_plugin(ExplicitVRLittleEndian) == ""


@pytest.mark.parametrize("name", JPEG_LS_FILES)
def test_charls_gives_the_default_decoders_values(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(TEST_FILES / name)
        expected = pixel_array(dataset, index=0, decoding_plugin="pylibjpeg")
        ours = frames._decoded_frame(dataset, 0, dataset.file_meta.TransferSyntaxUID)
    assert ours.dtype == expected.dtype and np.array_equal(ours, expected)


@pytest.mark.parametrize("shape", [(384, 416), (512, 512)])
def test_synthetic_mr_slices_in_jpeg_ls_decode_to_their_uncompressed_pixels(shape):
    from components.synthetic import dicom_files

    rng = np.random.default_rng(7)
    stored = rng.integers(0, 4096, shape, dtype=np.uint16)
    dataset = pydicom.Dataset()
    dataset.file_meta = pydicom.dataset.FileMetaDataset()
    dataset.SOPClassUID = dataset.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.3.4"
    dataset.set_pixel_data(stored, "MONOCHROME2", 12, generate_instance_uid=False)
    data = dicom_files.encode(dataset, JPEGLSLossless, stored[None])
    decoded = pydicom.dcmread(io.BytesIO(data))
    assert decoded.file_meta.TransferSyntaxUID == JPEGLSLossless
    assert np.array_equal(frames._decoded_frame(decoded, 0, JPEGLSLossless), stored)


def test_a_file_charls_refuses_falls_back_to_pydicoms_order_and_its_error(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dataset = pydicom.dcmread(TEST_FILES / "MR_small_jpeg_ls_lossless.dcm")
    calls = []

    def charls_fails(source, *, index, decoding_plugin=""):
        calls.append(decoding_plugin)
        if decoding_plugin == "pyjpegls":
            raise RuntimeError("CharLS refused it")
        return pixel_array(source, index=index, decoding_plugin=decoding_plugin)

    monkeypatch.setattr(frames, "pixel_array", charls_fails)
    ours = frames._decoded_frame(dataset, 0, JPEGLSLossless)
    assert calls == ["pyjpegls", ""]
    assert np.array_equal(ours, pixel_array(dataset, index=0, decoding_plugin="pylibjpeg"))
