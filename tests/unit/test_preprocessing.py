"""The one preprocessing (components/dicom/preprocessing.py): DICOM and JPEG/PNG -> uint8 [S, S, 1].

Inputs are pydicom's bundled test files (found via the installed package; nothing downloads)
and tiny synthetic datasets built here.
"""
from __future__ import annotations

import io
import random
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                         JPEG2000Lossless, RLELossless, SecondaryCaptureImageStorage)

from components.dicom.preprocessing import (ORIENTATIONS, REJECT_REASONS, PreprocessedSlice,
                                      RejectedInput, Rejection, classify_orientation, is_dicom,
                                      pixels_to_tensor, preprocess_dicom, preprocess_image_file,
                                      preprocess_path)

MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
ENHANCED_MR = "1.2.840.10008.5.1.4.1.1.4.1"
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
OBLIQUE = (1.0, 0.0, 0.0, 0.0, 0.7071068, 0.7071068)  # 45 degrees about x
TEST_FILES = Path(pydicom.__file__).parent / "data" / "test_files"
BUNDLED = sorted(TEST_FILES.rglob("*.dcm"))
MR_SMALL_LOSSLESS = ["MR_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm",
                     "MR_small_expb.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm",
                     "MR_small_jpeg_ls_lossless.dcm", "MR_small_padded.dcm"]


# ---------------------------------------------------------------- synthetic DICOM builder

def phantom(rows: int, cols: int, dtype=np.uint16) -> np.ndarray:
    """A smooth 'head' (ellipse on a gradient) so percentiles and resizing have structure."""
    y, x = np.mgrid[0:rows, 0:cols]
    ellipse = ((y - rows / 2) / (rows * 0.4)) ** 2 + ((x - cols / 2) / (cols * 0.4)) ** 2 < 1
    values = 100 + 3 * x + 2 * y + 800 * ellipse
    return values.astype(dtype)


def mr_dataset(pixels: np.ndarray, *, sop_class: str = MR_IMAGE, orientation=AXIAL,
               photometric: str = "MONOCHROME2") -> Dataset:
    """A minimal but complete MR Image Storage instance around `pixels`."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.PatientName, ds.PatientID = "Doe^Jane", "PID-0042"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    ds.InstanceNumber = 7
    if orientation is not None:
        ds.ImageOrientationPatient = list(orientation)
    bits = 8 if pixels.dtype.itemsize == 1 else 16
    ds.set_pixel_data(pixels, photometric, bits)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def mr_bytes(pixels: np.ndarray, **kwargs) -> bytes:
    return to_bytes(mr_dataset(pixels, **kwargs))


def only_slice(results: list) -> PreprocessedSlice:
    assert len(results) == 1 and isinstance(results[0], PreprocessedSlice), results
    return results[0]


def only_rejection(results: list) -> Rejection:
    assert len(results) == 1 and isinstance(results[0], Rejection), results
    return results[0]


def assert_valid(result, size: int) -> None:
    if isinstance(result, Rejection):
        assert result.reason in REJECT_REASONS and result.detail
    else:
        assert isinstance(result, PreprocessedSlice)
        assert result.image.shape == (size, size, 1) and result.image.dtype == np.uint8


# ---------------------------------------------------------------- pydicom's bundled files

@pytest.mark.parametrize("path", BUNDLED, ids=lambda p: p.name)
def test_every_bundled_file_is_a_slice_or_a_named_rejection(path):
    results = preprocess_path(path, image_size=32, orientations=ORIENTATIONS)
    assert results
    for result in results:
        assert_valid(result, 32)
    ds = pydicom.dcmread(path, force=True)
    private = [str(ds.get(k, "")) for k in ("PatientName", "PatientID", "StudyInstanceUID",
                                            "SOPInstanceUID") if str(ds.get(k, "")).strip()]
    for rejection in (r for r in results if isinstance(r, Rejection)):
        assert path.name not in rejection.detail
        assert not any(value in rejection.detail for value in private), rejection.detail


def test_bundled_files_cover_the_expected_outcomes():
    outcome = {p.name: preprocess_path(p, image_size=32, orientations=ORIENTATIONS)[0]
               for p in BUNDLED}
    assert isinstance(outcome["MR_small.dcm"], PreprocessedSlice)
    assert outcome["MR_truncated.dcm"].reason == "truncated"
    assert outcome["rtplan_truncated.dcm"].reason == "truncated"
    assert outcome["CT_small.dcm"].reason == "unsupported_sop_class"
    assert outcome["test-SR.dcm"].reason == "unsupported_sop_class"
    assert outcome["no_meta.dcm"].reason == "not_dicom"  # no preamble: not a Part 10 file


def test_bundled_pixel_encodings_relabelled_as_mr_never_raise():
    """Push every bundled image (CT, US, SC, RT dose, colour, JPEG, J2K, RLE...) through the
    decode path by relabelling it MR and giving it an axial orientation."""
    decoded = 0
    for path in BUNDLED:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            if "PixelData" not in ds or "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
                continue
            ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = MR_IMAGE
            ds.ImageOrientationPatient = list(AXIAL)
            try:
                data = to_bytes(ds)
            except Exception:  # a few deliberately broken files cannot be re-written
                continue
            results = preprocess_dicom(data, image_size=32)
        for result in results:
            assert_valid(result, 32)
        decoded += any(isinstance(r, PreprocessedSlice) for r in results)
    assert decoded >= 15


def test_all_lossless_encodings_of_mr_small_give_the_identical_tensor():
    reference = only_slice(preprocess_path(TEST_FILES / "MR_small.dcm", image_size=96))
    assert reference.orientation == "axial" and (reference.rows, reference.cols) == (64, 64)
    for name in MR_SMALL_LOSSLESS:
        result = only_slice(preprocess_path(TEST_FILES / name, image_size=96))
        assert np.array_equal(result.image, reference.image), name


def test_same_input_gives_byte_identical_output_from_path_bytes_and_file_object():
    path = TEST_FILES / "MR_small_RLE.dcm"
    data = path.read_bytes()
    outputs = [only_slice(preprocess_path(src, image_size=80)).image.tobytes()
               for src in (path, str(path), data, bytearray(data), io.BytesIO(data), path)]
    assert len(set(outputs)) == 1
    assert only_slice(preprocess_dicom(path, image_size=80)).image.tobytes() == outputs[0]


# ---------------------------------------------------------------- step 1: reading

def test_non_dicom_bytes_are_not_dicom():
    junk = b"this is a text file, not an image" * 10
    assert not is_dicom(junk)
    assert only_rejection(preprocess_path(junk)).reason == "not_dicom"
    assert only_rejection(preprocess_dicom(junk)).reason == "not_dicom"
    assert only_rejection(preprocess_dicom(b"")).reason == "not_dicom"


def test_dicom_is_recognised_by_content_not_extension(tmp_path):
    disguised = tmp_path / "scan.png"
    disguised.write_bytes(mr_bytes(phantom(40, 40)))
    assert only_slice(preprocess_path(disguised, image_size=40)).orientation == "axial"


def test_truncated_files_are_truncated_wherever_they_are_cut():
    plain = mr_bytes(phantom(32, 32))
    rle_ds = mr_dataset(phantom(32, 32))
    rle_ds.compress(RLELossless)
    rle = to_bytes(rle_ds)
    deflated_ds = mr_dataset(phantom(32, 32))
    deflated_ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    deflated = to_bytes(deflated_ds)
    assert only_slice(preprocess_dicom(deflated, image_size=32)).orientation == "axial"
    # the last byte of the deflated file is DICOM's even-length pad, so cut at -2 there
    for data, last in ((plain, -1), (rle, -1), (deflated, -2)):
        for cut in (132, 140, 200, 400, len(data) // 2, len(data) - 100, len(data) + last):
            rejection = only_rejection(preprocess_dicom(data[:cut]))
            assert rejection.reason == "truncated", (cut, rejection)
    assert only_rejection(preprocess_dicom(plain[:100])).reason == "not_dicom"


def test_secondary_capture_and_sr_are_unsupported_sop_classes():
    capture = mr_bytes(phantom(32, 32), sop_class=SecondaryCaptureImageStorage)
    rejection = only_rejection(preprocess_dicom(capture))
    assert rejection.reason == "unsupported_sop_class" and "Secondary Capture" in rejection.detail
    assert "(0008,0016)" in rejection.detail
    report = only_rejection(preprocess_dicom(TEST_FILES / "test-SR.dcm"))
    assert report.reason == "unsupported_sop_class"


def test_no_pixel_data_unknown_transfer_syntax_and_undecodable_pixels():
    ds = mr_dataset(phantom(16, 16))
    del ds.PixelData
    assert only_rejection(preprocess_dicom(to_bytes(ds))).reason == "no_pixel_data"

    mpeg = mr_dataset(phantom(16, 16))
    mpeg.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: no pixel decoder
    mpeg.PixelData = encapsulate([b"\x00" * 64])
    rejection = only_rejection(preprocess_dicom(to_bytes(mpeg)))
    assert rejection.reason == "unsupported_transfer_syntax" and "(0002,0010)" in rejection.detail

    broken = mr_dataset(phantom(16, 16))
    broken.file_meta.TransferSyntaxUID = JPEG2000Lossless
    broken.PixelData = encapsulate([b"not a jpeg 2000 codestream"])
    rejection = only_rejection(preprocess_dicom(to_bytes(broken)))
    assert rejection.reason == "decode_error" and rejection.frame_index == 0


def test_colour_mr_is_rejected_with_photometric_reason():
    rgb = np.stack([phantom(16, 16, np.uint8)] * 3, axis=-1)
    rejection = only_rejection(preprocess_dicom(mr_bytes(rgb, photometric="RGB")))
    assert rejection.reason == "unsupported_photometric_interpretation"


def test_uids_are_returned_for_the_caller_and_missing_ones_are_none():
    result = only_slice(preprocess_dicom(mr_bytes(phantom(16, 16)), image_size=16))
    assert result.study_uid == "1.2.826.0.1.3680043.8.498.1" and result.instance_number == 7
    ds = mr_dataset(phantom(16, 16))
    del ds.StudyInstanceUID, ds.InstanceNumber
    result = only_slice(preprocess_dicom(to_bytes(ds), image_size=16))
    assert result.study_uid is None and result.instance_number is None
    assert result.series_uid == "1.2.826.0.1.3680043.8.498.2"


# ---------------------------------------------------------------- steps 2-3: frames, orientation

def enhanced_mr(frames: np.ndarray, per_frame: list[dict], shared_orientation=AXIAL) -> bytes:
    """Enhanced MR with per-frame functional groups; a frame dict may omit its orientation."""
    ds = mr_dataset(frames, sop_class=ENHANCED_MR, orientation=None)
    shared = Dataset()
    shared.PlaneOrientationSequence = Sequence([Dataset()])
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = list(shared_orientation)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    items = []
    for spec in per_frame:
        item = Dataset()
        if "orientation" in spec:
            item.PlaneOrientationSequence = Sequence([Dataset()])
            item.PlaneOrientationSequence[0].ImageOrientationPatient = list(spec["orientation"])
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = spec["slope"], spec["intercept"]
        transform.RescaleType = "US"
        item.PixelValueTransformationSequence = Sequence([transform])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    return to_bytes(ds)


def test_multi_frame_enhanced_mr_yields_every_frame_with_its_own_geometry_and_rescale():
    raw = np.stack([phantom(24, 30), phantom(24, 30)[::-1], phantom(24, 30)[:, ::-1]])
    per_frame = [
        {"orientation": AXIAL, "slope": 1.0, "intercept": 0.0},
        {"orientation": CORONAL, "slope": 2.0, "intercept": -50.0},
        {"slope": -1.0, "intercept": 4000.0},  # orientation from the shared group: axial
    ]
    data = enhanced_mr(raw, per_frame)
    results = preprocess_dicom(data, image_size=40, orientations=ORIENTATIONS)
    assert [r.frame_index for r in results] == [0, 1, 2]
    assert [r.orientation for r in results] == ["axial", "coronal", "axial"]
    for result, frame, spec in zip(results, raw, per_frame):
        expected = pixels_to_tensor(frame.astype(np.float64) * spec["slope"] + spec["intercept"],
                                    image_size=40)
        assert np.array_equal(result.image, expected)
        assert (result.rows, result.cols) == (24, 30)
    # the negative slope of frame 2 is applied: it is frame 2's raw pixels inverted
    not_inverted = pixels_to_tensor(raw[2], image_size=40)
    assert np.abs(results[2].image.astype(int) - not_inverted.astype(int)).mean() > 50

    axial_only = preprocess_dicom(data, image_size=40)
    assert isinstance(axial_only[0], PreprocessedSlice)
    assert isinstance(axial_only[2], PreprocessedSlice)
    assert axial_only[1].reason == "non_axial" and axial_only[1].frame_index == 1
    assert "coronal" in axial_only[1].detail


@pytest.mark.parametrize("cosines, expected", [
    (AXIAL, "axial"), (CORONAL, "coronal"), (SAGITTAL, "sagittal"), (OBLIQUE, "oblique"),
    ((1.0, 0.0, 0.0, 0.0, 0.9397, 0.3420), "axial"),      # 20 degrees tilt: still axial
    ((0.0, 0.0, -1.0, 0.0, 1.0, 0.0), "sagittal"),
])
def test_orientation_from_the_normal_of_the_direction_cosines(cosines, expected):
    assert classify_orientation(cosines) == expected
    results = preprocess_dicom(mr_bytes(phantom(20, 20), orientation=cosines), image_size=20,
                               orientations=ORIENTATIONS)
    assert only_slice(results).orientation == expected
    if expected != "axial":
        rejection = only_rejection(preprocess_dicom(mr_bytes(phantom(20, 20), orientation=cosines)))
        assert rejection.reason == "non_axial" and expected in rejection.detail


def test_missing_or_degenerate_orientation_is_rejected_naming_the_tag():
    rejection = only_rejection(preprocess_dicom(mr_bytes(phantom(20, 20), orientation=None),
                                                orientations=ORIENTATIONS))
    assert rejection.reason == "missing_orientation" and "(0020,0037)" in rejection.detail
    parallel = (1.0, 0.0, 0.0, 1.0, 0.0, 0.0)
    rejection = only_rejection(preprocess_dicom(mr_bytes(phantom(20, 20), orientation=parallel)))
    assert rejection.reason == "invalid_orientation"


def test_bad_settings_are_programming_errors():
    with pytest.raises(ValueError):
        preprocess_dicom(b"", orientations=("transverse",))
    with pytest.raises(ValueError):
        preprocess_dicom(b"", orientations="axial")
    with pytest.raises(ValueError):
        preprocess_dicom(b"", image_size=0)


# ---------------------------------------------------------------- steps 4-7: values and geometry

def test_one_hot_pixel_does_not_crush_the_image():
    clean = phantom(64, 64)
    hot = clean.copy()
    hot[10, 10] = 65000
    clean_out = only_slice(preprocess_dicom(mr_bytes(clean), image_size=64)).image.astype(int)
    hot_out = only_slice(preprocess_dicom(mr_bytes(hot), image_size=64)).image.astype(int)
    difference = np.abs(clean_out - hot_out)
    assert difference.mean() < 1.0 and (difference > 2).sum() <= 1
    assert hot_out.mean() > 60  # min-max scaling would have pushed this to ~3


def test_constant_image_is_rejected_not_nan():
    rejection = only_rejection(preprocess_dicom(mr_bytes(np.full((32, 32), 500, np.uint16))))
    assert rejection.reason == "constant_image" and rejection.frame_index == 0
    with pytest.raises(RejectedInput) as raised:
        pixels_to_tensor(np.zeros((8, 8)))
    assert raised.value.rejection.reason == "constant_image"


def test_monochrome1_is_inverted():
    pixels = phantom(48, 48)
    normal = only_slice(preprocess_dicom(mr_bytes(pixels), image_size=48)).image.astype(int)
    inverted = only_slice(preprocess_dicom(mr_bytes(pixels, photometric="MONOCHROME1"),
                                           image_size=48)).image.astype(int)
    assert np.abs((255 - normal) - inverted).max() <= 1


@pytest.mark.parametrize("rows, cols", [(384, 416), (748, 640)])
def test_non_square_images_keep_aspect_ratio_and_are_centred(rows, cols):
    result = only_slice(preprocess_dicom(mr_bytes(phantom(rows, cols)), image_size=512))
    image = result.image[:, :, 0]
    assert image.shape == (512, 512) and (result.rows, result.cols) == (rows, cols)
    content_rows = np.flatnonzero(image.any(axis=1))
    content_cols = np.flatnonzero(image.any(axis=0))
    height = content_rows[-1] - content_rows[0] + 1
    width = content_cols[-1] - content_cols[0] + 1
    expected_h, expected_w = ((round(rows * 512 / cols), 512) if cols > rows
                              else (512, round(cols * 512 / rows)))
    assert (height, width) == (expected_h, expected_w)
    assert content_rows[0] == (512 - expected_h) // 2 and content_cols[0] == (512 - expected_w) // 2
    assert abs(width / height - cols / rows) < 0.01


# ---------------------------------------------------------------- JPEG / PNG

def png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_greyscale_png_equals_the_same_pixels_through_the_dicom_path(dtype):
    pixels = phantom(50, 70, dtype)
    from_png = preprocess_image_file(png_bytes(pixels), image_size=64)
    from_dicom = only_slice(preprocess_dicom(mr_bytes(pixels), image_size=64))
    assert from_png.image.shape == (64, 64, 1) and from_png.image.dtype == np.uint8
    assert np.array_equal(from_png.image, from_dicom.image)
    assert (from_png.rows, from_png.cols) == (50, 70) and from_png.orientation == "unknown"
    assert np.array_equal(only_slice(preprocess_path(png_bytes(pixels), image_size=64)).image,
                          from_png.image)


def test_colour_png_and_jpeg_become_greyscale_tensors():
    grey = phantom(40, 60, np.uint8)
    rgb = np.stack([grey] * 3, axis=-1)
    assert np.array_equal(preprocess_image_file(png_bytes(rgb), image_size=32).image,
                          preprocess_image_file(png_bytes(grey), image_size=32).image)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=95)
    from_jpeg = only_slice(preprocess_path(buffer.getvalue(), image_size=32)).image
    reference = preprocess_image_file(png_bytes(grey), image_size=32).image
    assert from_jpeg.shape == (32, 32, 1)
    assert np.corrcoef(from_jpeg.ravel(), reference.ravel())[0, 1] > 0.98


def test_unreadable_image_raises_for_the_client_and_is_a_rejection_for_the_path_api():
    broken = png_bytes(phantom(20, 20, np.uint8))[:60]
    with pytest.raises(RejectedInput) as raised:
        preprocess_image_file(broken)
    assert raised.value.rejection.reason == "unreadable_image"
    assert isinstance(raised.value, ValueError)
    assert only_rejection(preprocess_path(broken)).reason == "unreadable_image"
    with pytest.raises(RejectedInput):
        preprocess_image_file(mr_bytes(phantom(20, 20)))  # a DICOM is not a JPEG/PNG


# ---------------------------------------------------------------- robustness and purity

def test_corrupted_bytes_never_raise():
    """Seeded byte flips in DICOM (native, RLE, J2K, Enhanced MR) and PNG/JPEG inputs."""
    rng = random.Random(1234)
    jpeg = io.BytesIO()
    Image.fromarray(phantom(24, 24, np.uint8)).save(jpeg, format="JPEG")
    enhanced = enhanced_mr(np.stack([phantom(16, 16)] * 2),
                           [{"orientation": AXIAL, "slope": 1.0, "intercept": 0.0},
                            {"slope": 2.0, "intercept": 1.0}])
    seeds = [(TEST_FILES / name).read_bytes() for name in
             ("MR_small.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm")]
    seeds += [enhanced, png_bytes(phantom(24, 24)), jpeg.getvalue()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for seed in seeds:
            start = 132 if is_dicom(seed) else 0  # keep the magic so DICOM parsing is reached
            for _ in range(120):
                data = bytearray(seed)
                for _ in range(rng.choice((1, 3, 8))):
                    data[rng.randrange(start, len(data))] = rng.randrange(256)
                results = preprocess_path(bytes(data), image_size=16, orientations=ORIENTATIONS)
                for result in results:
                    assert_valid(result, 16)


def test_module_imports_no_tensorflow_tfx_or_beam():
    code = ("import sys, components.dicom.preprocessing; "
            "print(sorted(m for m in ('tensorflow', 'tfx', 'apache_beam') if m in sys.modules))")
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).resolve().parents[2]).stdout
    assert output.strip() == "[]"
