"""The one preprocessing: a DICOM frame or a JPEG/PNG -> the model's uint8 [S, S, 1] tensor.

DicomExampleGen (training data) and the gRPC client / web page (serving) both call this module,
so a file gives byte-identical tensors on both sides: no train/serve skew. It is pure (numpy,
pydicom, Pillow; no TensorFlow, TFX or Beam) and deterministic. Steps follow DESIGN.md "One
preprocessing, used twice": 1-4 (read, frames, orientation, pixel values) live in the
package-private `components.dicom.frames`; 5-7 (intensity, geometry, output) live here and are
shared by DICOM and JPEG/PNG inputs.

Cost (issue 13, measured by bench/ingest.py): step 5 on integer frames works from a histogram of
the stored levels and a per-level table (`clip_and_scale`), with the same bytes as the per-pixel
definition; a header is parsed once when callers pass a `ParsedDicom`. The Lanczos resize of a
matrix that is not already S x S is now the largest cost after the decode.

Bad content never raises from `preprocess_dicom` / `preprocess_path`: it becomes a `Rejection`
whose reason is one of `REJECT_REASONS`. I/O errors (a missing file) do raise.
"""
from __future__ import annotations

import io
import math
import numbers
import os
import struct
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import pydicom
from PIL import Image, ImageOps, UnidentifiedImageError
from pydicom.dataset import Dataset

from components.dicom.frames import (
    ORIENTATIONS,
    ModalityPixels,
    classify_orientation,
    frame_count,
    frame_info,
    frame_pixels,
    image_shape,
    is_dicom,
    optional_int,
    optional_uid,
    read_mr_dataset,
    safe_exception_text,
)
from components.dicom.lanczos import lanczos_resize
from components.features import DEFAULT_IMAGE_SIZE
from components.dicom.anatomy import require_anatomy
from components.dicom.rejections import REJECT_REASONS, RejectedInput, Rejection, reject

__all__ = [
    "IMAGE_FILE_ORIENTATION", "ORIENTATIONS", "REJECT_REASONS", "PreprocessSettings",
    "ParsedDicom", "PreprocessedSlice", "RejectedInput", "Rejection", "Source", "classify_orientation",
    "is_dicom", "parse_dicom", "pixels_to_tensor", "preprocess_dicom", "preprocess_image_file",
    "preprocess_mask", "preprocess_path", "read_study_identity", "sniff_format",
    "undecodable_header",
]



@dataclass(frozen=True, eq=False)
class ParsedDicom:
    """A DICOM file's bytes with its data set parsed once (`parse_dicom`).

    Every entry point accepts it as a source: a caller that asks `read_study_identity` before
    `preprocess_dicom` (components.dicom.slices) parses the header once, not twice (the second
    parse was about a fifth of the per-slice work of ingest).
    """

    data: bytes
    dataset: Dataset


Source = Union[str, os.PathLike, bytes, bytearray, memoryview, BinaryIO, ParsedDicom]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
IMAGE_FILE_ORIENTATION = "unknown"  # a JPEG/PNG carries no patient geometry
_GREYSCALE_MODES = ("L", "I", "I;16", "I;16L", "I;16B", "I;16N", "F")


@dataclass(frozen=True)
class PreprocessSettings:
    """Every knob of the preprocessing in one place; defaults are the trained model's."""

    image_size: int = DEFAULT_IMAGE_SIZE
    orientations: tuple[str, ...] = ("axial",)
    low_percentile: float = 0.5     # clip below: robust to cold outliers and padding
    high_percentile: float = 99.5   # clip above: one hot pixel cannot crush the image
    oblique_threshold: float = 0.8  # largest normal component below this -> "oblique"

    def __post_init__(self) -> None:
        if isinstance(self.orientations, str):
            raise ValueError("orientations must be a collection of names such as ('axial',)")
        object.__setattr__(self, "orientations", tuple(self.orientations))
        unknown = set(self.orientations) - set(ORIENTATIONS)
        if unknown or not self.orientations:
            raise ValueError(f"orientations must be a non-empty subset of {ORIENTATIONS}, "
                             f"got {sorted(unknown) or 'nothing'}")
        if not isinstance(self.image_size, numbers.Integral) or self.image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        object.__setattr__(self, "image_size", int(self.image_size))
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise ValueError("need 0 <= low_percentile < high_percentile <= 100")


@dataclass(frozen=True, eq=False)
class PreprocessedSlice:
    """One model input plus what the caller needs to label, group and hash it."""

    image: np.ndarray  # uint8 [S, S, 1]
    frame_index: int
    orientation: str   # axial | coronal | sagittal | oblique (DICOM); "unknown" for JPEG/PNG
    rows: int          # original matrix size, before resizing
    cols: int
    study_uid: str | None  # raw UIDs: callers hash them (features.hash_uid) before storing
    series_uid: str | None
    instance_number: int | None


# ---------------------------------------------------------------- public entry points

def preprocess_dicom(source: Source, *, image_size: int = DEFAULT_IMAGE_SIZE,
                     orientations: Collection[str] = ("axial",),
                     ) -> list[PreprocessedSlice | Rejection]:
    """Every frame of one DICOM file: a slice, or a Rejection saying why not.

    A file-level problem gives a single Rejection with frame_index None.
    """
    settings = PreprocessSettings(image_size=image_size, orientations=tuple(orientations))
    return _preprocess_dicom_bytes(read_source(source), settings, _parsed_dataset(source))


def preprocess_image_file(source: Source, *,
                          image_size: int = DEFAULT_IMAGE_SIZE) -> PreprocessedSlice:
    """A JPEG/PNG (e.g. a screenshot sent to the client) through the same steps 5-7.

    Raises RejectedInput (a ValueError) when the image cannot be decoded or is constant.
    """
    return _preprocess_image_bytes(read_source(source), PreprocessSettings(image_size=image_size))


def preprocess_path(source: Source, *, image_size: int = DEFAULT_IMAGE_SIZE,
                    orientations: Collection[str] = ("axial",),
                    ) -> list[PreprocessedSlice | Rejection]:
    """Dispatch on content, not extension: DICOM, PNG/JPEG, or a not_dicom Rejection."""
    settings = PreprocessSettings(image_size=image_size, orientations=tuple(orientations))
    data = read_source(source)
    kind = sniff_format(data)
    if kind == "dicom":
        return _preprocess_dicom_bytes(data, settings, _parsed_dataset(source))
    if kind in ("png", "jpeg"):
        try:
            return [_preprocess_image_bytes(data, settings)]
        except RejectedInput as exc:
            return [exc.rejection]
    return [Rejection("not_dicom", "neither a DICOM Part 10 file ('DICM' at byte 128) "
                      "nor a PNG or JPEG image")]


def read_study_identity(source: Source) -> tuple[str | None, str | None] | None:
    """(StudyInstanceUID, SeriesInstanceUID) from the header alone, normalised exactly as
    PreprocessedSlice's, without decoding pixels; None when it is not a readable DICOM.
    For deciding about a file (labelled? which canary route?) before paying for its pixels."""
    dataset = _parsed_dataset(source)
    if dataset is None:
        data = read_source(source)
        if not is_dicom(data):
            return None
        try:
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True,
                                      specific_tags=["StudyInstanceUID", "SeriesInstanceUID"])
        except Exception:  # noqa: BLE001 -- preprocessing will name the problem
            return None
    return optional_uid(dataset, "StudyInstanceUID"), optional_uid(dataset, "SeriesInstanceUID")


def parse_dicom(source: Source) -> ParsedDicom | None:
    """The file parsed once for several of this module's calls; None when it is not DICOM or
    pydicom cannot parse it (then each call parses on its own and names the problem)."""
    if isinstance(source, ParsedDicom):
        return source
    data = read_source(source)
    if not is_dicom(data):
        return None
    try:
        return ParsedDicom(data, pydicom.dcmread(io.BytesIO(data)))  # as read_mr_dataset does
    except Exception:  # noqa: BLE001 -- read_mr_dataset will name the problem
        return None


def _parsed_dataset(source: Source) -> Dataset | None:
    return source.dataset if isinstance(source, ParsedDicom) else None


def undecodable_header(source: Source) -> Rejection | None:
    """Why a DICOM file cannot give any slice, judged from its header without decoding pixels;
    None when the header is a usable MR image. Callers that refuse a file before decoding it
    (no StudyInstanceUID) ask this first, so an undecodable file is named undecodable, not
    "missing_study_uid" (a header that cannot be parsed has no UID to find)."""
    try:
        dataset = read_mr_dataset(read_source(source), _parsed_dataset(source))
        frame_count(dataset)
        image_shape(dataset)
    except RejectedInput as exc:
        return exc.rejection
    except Exception as exc:  # see _unexpected
        return _unexpected(exc, None)
    return None


def sniff_format(head: bytes) -> str | None:
    """'dicom', 'png', 'jpeg' or None, from the leading bytes only."""
    if is_dicom(head):
        return "dicom"
    if head.startswith(PNG_SIGNATURE):
        return "png"
    if head.startswith(JPEG_SIGNATURE):
        return "jpeg"
    return None


def read_source(source: Source) -> bytes:
    """All bytes of a path, a bytes-like object or a binary file object (from its position)."""
    if isinstance(source, ParsedDicom):
        return source.data
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if hasattr(source, "read"):
        data = source.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("file objects must be opened in binary mode")
        return bytes(data)
    return Path(source).read_bytes()


def pixels_to_tensor(pixels: np.ndarray, *, image_size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Steps 5-7 on a 2-D array of modality values: the model's uint8 [S, S, 1].

    Raises RejectedInput("constant_image") when clipping leaves no contrast, and
    RejectedInput("no_anatomy") when the frame shows no head (components.dicom.anatomy).
    """
    return _pixels_to_tensor(np.asarray(pixels), PreprocessSettings(image_size=image_size))


# ---------------------------------------------------------------- DICOM: steps 1-4 per frame

def _preprocess_dicom_bytes(data: bytes, settings: PreprocessSettings,
                            parsed: Dataset | None = None) -> list[PreprocessedSlice | Rejection]:
    try:
        dataset = read_mr_dataset(data, parsed)
        frames = frame_count(dataset)
        rows, cols = image_shape(dataset)
    except RejectedInput as exc:
        return [exc.rejection]
    except Exception as exc:  # see _unexpected
        return [_unexpected(exc, None)]
    identity = {
        "study_uid": optional_uid(dataset, "StudyInstanceUID"),
        "series_uid": optional_uid(dataset, "SeriesInstanceUID"),
        "instance_number": optional_int(dataset, "InstanceNumber"),
    }
    return [_preprocess_frame(dataset, index, settings, rows, cols, identity)
            for index in range(frames)]


def _preprocess_frame(dataset: Dataset, index: int, settings: PreprocessSettings, rows: int,
                      cols: int, identity: dict) -> PreprocessedSlice | Rejection:
    """Orientation is checked before decoding, so unwanted planes cost no decode time."""
    try:
        info = frame_info(dataset, index)
        orientation = classify_orientation(info.orientation_cosines, settings.oblique_threshold)
        if orientation not in settings.orientations:
            raise reject("non_axial", f"frame orientation is {orientation}; kept orientations: "
                         f"{', '.join(settings.orientations)}")
        image = _pixels_to_tensor(frame_pixels(dataset, info), settings)
    except RejectedInput as exc:
        return replace(exc.rejection, frame_index=index)
    except Exception as exc:  # see _unexpected
        return _unexpected(exc, index)
    return PreprocessedSlice(image=image, frame_index=index, orientation=orientation,
                             rows=rows, cols=cols, **identity)


def _unexpected(exc: Exception, frame_index: int | None) -> Rejection:
    """Keep the promise that bad content never raises, even where pydicom converts a corrupt
    value lazily in a place the named checks did not foresee: one decode_error for the file or
    frame (type and scrubbed message only), so one odd file cannot stop an ingest run."""
    return Rejection("decode_error", f"unexpected {safe_exception_text(exc)} while reading the "
                     "DICOM data set", frame_index)


# ---------------------------------------------------------------- JPEG / PNG

def _preprocess_image_bytes(data: bytes, settings: PreprocessSettings) -> PreprocessedSlice:
    pixels = decode_image_file(data)
    rows, cols = pixels.shape
    return PreprocessedSlice(image=_pixels_to_tensor(pixels, settings), frame_index=0,
                             orientation=IMAGE_FILE_ORIENTATION, rows=rows, cols=cols,
                             study_uid=None, series_uid=None, instance_number=None)


def decode_image_file(data: bytes) -> np.ndarray:
    """PNG/JPEG -> 2-D greyscale as decoded (uint8, uint16 or int32; float32 for mode "F"),
    keeping 16-bit PNG depth (no 8-bit squeeze).

    EXIF orientation is applied so a phone photo is upright, as a viewer shows it.
    Colour is reduced with Pillow's ITU-R 601-2 luma ("L"), an integer, deterministic transform.
    """
    try:
        with Image.open(io.BytesIO(data), formats=("PNG", "JPEG")) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
            if image.mode in ("LA", "La"):
                image = image.getchannel("L")
            elif image.mode not in _GREYSCALE_MODES:
                image = image.convert("L")
            pixels = np.array(image)
    except (UnidentifiedImageError, OSError, EOFError, ValueError, SyntaxError, struct.error,
            Image.DecompressionBombError) as exc:
        raise reject("unreadable_image", f"PNG/JPEG could not be decoded ({type(exc).__name__})")
    if pixels.ndim != 2 or pixels.size == 0:
        raise reject("unreadable_image", f"decoded to shape {pixels.shape}, expected 2-D greyscale")
    return pixels


# ---------------------------------------------------------------- steps 5-7 (shared)

Pixels = Union[np.ndarray, ModalityPixels]
# Integer frames whose stored values span at most this many levels take the table path of
# clip_and_scale (16-bit MR: at most 65,536); wider ones (32-bit integers) take the float path.
_MAX_TABLE_LEVELS = 1 << 17


def _pixels_to_tensor(pixels: Pixels, settings: PreprocessSettings) -> np.ndarray:
    frame = pixels if isinstance(pixels, ModalityPixels) else ModalityPixels(np.asarray(pixels))
    if frame.stored.ndim != 2 or frame.stored.size == 0:
        raise ValueError(f"expected a non-empty 2-D array, got shape {frame.stored.shape}")
    size = settings.image_size
    table = _scaled_level_table(frame, settings.low_percentile, settings.high_percentile)
    if table is None:  # floats, or integers too wide for a table
        scaled = clip_and_scale(pixels, settings.low_percentile, settings.high_percentile)
    elif fitted_shape(*frame.stored.shape, size) == frame.stored.shape:
        # No resize (a 512x512 MR matrix): step 7's rounding is a function of each pixel's
        # level, so round the table once instead of every pixel: same bytes, one pass.
        levels, index = table
        rounded = np.take(_rounded(levels), index, mode="clip")  # in range: no bounds check
        require_anatomy(rounded)  # as below; rounding moves its 64x64 block means by < 0.5 level
        return _centred(rounded, size)[:, :, np.newaxis]
    else:
        levels, index = table
        scaled = np.take(levels, index, mode="clip")
    # scaled: float32 0..255 at the original matrix size, the normalised slice
    require_anatomy(scaled)   # no head, no answer: blank, noise-only or speck frames
    return to_uint8_tensor(fit_to_square(scaled, size))


def clip_and_scale(pixels: Pixels, low_percentile: float, high_percentile: float) -> np.ndarray:
    """Step 5: clip to percentiles, map to 0..255 (float32).

    Per-image min-max would let one hot pixel crush the image; percentiles do not. No contrast
    left (high == low) is a rejection, never a division by zero or a NaN.

    `pixels`: modality values, or a frame as stored plus its modality LUT (frames.ModalityPixels,
    the DICOM path). An integer frame (every MR frame, 8/16-bit PNG/JPEG) is computed from a
    histogram of its stored values: the percentiles are interpolated between order statistics
    found by a cumulative count, exactly as np.percentile's "linear" method does after its
    full partition, and each pixel is then looked up in a table holding the very float64
    expression the per-pixel path computes for each stored level. The output is therefore
    byte-identical to the float path (tests/unit/test_preprocessing_fast_path.py checks it),
    at about a tenth of its cost: no float64 copy of the image, no partition.
    """
    plain = not isinstance(pixels, ModalityPixels)
    frame = ModalityPixels(np.asarray(pixels)) if plain else pixels
    table = _scaled_level_table(frame, low_percentile, high_percentile)
    if table is not None:
        levels, index = table
        return np.take(levels, index, mode="clip")
    return _clip_and_scale_values(frame.stored if plain else frame.values(), low_percentile,
                                  high_percentile)


def _clip_and_scale_values(values: np.ndarray, low_percentile: float,
                           high_percentile: float) -> np.ndarray:
    """The per-pixel definition of step 5, on float64 modality values."""
    values = np.asarray(values, dtype=np.float64)
    low, high = np.percentile(values, [low_percentile, high_percentile])
    with np.errstate(over="ignore"):
        span_overflows = not np.isfinite(high - low)
    if span_overflows:  # extreme rescale: finite values whose span does not fit; shrink first
        values = values / max(abs(low), abs(high))
        low, high = np.percentile(values, [low_percentile, high_percentile])
    _check_contrast(low, high, low_percentile, high_percentile)
    scaled = (np.clip(values, low, high) - low) * (255.0 / (high - low))
    return scaled.astype(np.float32)


def _check_contrast(low: float, high: float, low_percentile: float,
                    high_percentile: float) -> None:
    if not high > low:
        raise reject("constant_image", f"no contrast between the {low_percentile} and "
                     f"{high_percentile} intensity percentiles (constant or near-constant image)")


def _scaled_level_table(pixels: ModalityPixels, low_percentile: float, high_percentile: float,
                        ) -> tuple[np.ndarray, np.ndarray] | None:
    """float32 output of step 5 for every stored level from the frame's minimum to its maximum,
    and each pixel's row in it (intp, the index type np.bincount and np.take work in: one
    conversion serves both); None when the frame is not integer, spans too many levels, or its
    span overflows (the float path handles those rare cases)."""
    stored = pixels.stored
    if pixels.levels is None or stored.dtype.itemsize > 4:
        return None
    low_level, high_level = pixels.levels
    if high_level - low_level >= _MAX_TABLE_LEVELS:
        return None
    index = stored.astype(np.intp)  # a plain cast is faster than a casting subtract
    if low_level:
        index -= low_level
    counts = np.bincount(index.ravel(), minlength=high_level - low_level + 1)
    levels = _levels_from_counts(pixels, counts, low_percentile, high_percentile)
    return None if levels is None else (levels, index)


def _levels_from_counts(pixels: ModalityPixels, counts: np.ndarray, low_percentile: float,
                        high_percentile: float) -> np.ndarray | None:
    """float32 output of step 5 for every stored level from the frame's minimum to its maximum,
    given `counts[i]`, the number of pixels at level minimum + i; None when the percentiles'
    span overflows."""
    low_level, high_level = pixels.levels
    values = pixels.modality(np.arange(low_level, high_level + 1, dtype=np.int64))
    low, high = _percentiles_from_counts(values, counts, (low_percentile, high_percentile),
                                         descending=(pixels.slope < 0) != pixels.invert)
    with np.errstate(over="ignore"):
        if not np.isfinite(high - low):
            return None
    _check_contrast(low, high, low_percentile, high_percentile)
    scaled = (np.clip(values, low, high) - low) * (255.0 / (high - low))
    return scaled.astype(np.float32)


def _percentiles_from_counts(values: np.ndarray, counts: np.ndarray,
                             percentiles: tuple[float, ...], descending: bool) -> np.ndarray:
    """np.percentile(all pixels' values, percentiles) (method "linear") from a histogram.

    `values[i]` is the value of stored level i and `counts[i]` how many pixels hold it; the
    values are monotonic in the level (the modality LUT is linear, and float rounding keeps it
    monotonic), increasing unless `descending`. Mirrors numpy 1.x/2.x `_quantile`: virtual
    index (n - 1) * q, neighbours floor and floor + 1 (clamped to the last), and `_lerp`.
    """
    if descending:
        values, counts = values[::-1], counts[::-1]
    cumulative = np.cumsum(counts)
    last = int(cumulative[-1]) - 1
    neighbours, gammas = [], []
    for percentile in percentiles:  # scalars: numpy's array calls cost more than the math
        virtual = last * (float(percentile) / 100)
        if virtual >= last:
            neighbours += [last, last]
            gammas.append(virtual + 1.0)  # numpy's gamma with its -1 index for the last
        else:
            previous = float(math.floor(virtual))
            neighbours += [previous, previous + 1]
            gammas.append(virtual - previous)
    order_statistics = values[np.searchsorted(cumulative, neighbours, side="right")].tolist()
    result = []
    for a, b, gamma in zip(order_statistics[::2], order_statistics[1::2], gammas):
        difference = b - a
        result.append(b - difference * (1 - gamma) if gamma >= 0.5 else a + difference * gamma)
    return np.array(result, dtype=np.float64)


def fitted_shape(rows: int, cols: int, size: int) -> tuple[int, int]:
    """Step 6's matrix before padding: the longest side becomes `size`, aspect ratio kept."""
    scale = size / max(rows, cols)
    return (min(size, max(1, int(rows * scale + 0.5))),
            min(size, max(1, int(cols * scale + 0.5))))


def fit_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """Step 6: longest side -> `size` with Lanczos (antialiased when shrinking), centre zero-pad.

    Resampling the float image (Pillow's mode "F" Lanczos, computed bit for bit by
    components.dicom.lanczos at about half Pillow's cost) avoids an 8-bit rounding before the
    resize. A matrix already the fitted size is only padded.
    """
    rows, cols = image.shape
    new_rows, new_cols = fitted_shape(rows, cols, size)
    if (new_rows, new_cols) == (rows, cols):
        resized = np.asarray(image, dtype=np.float32)
    else:
        resized = lanczos_resize(image, new_rows, new_cols)
    return _centred(resized, size)


def _centred(image: np.ndarray, size: int) -> np.ndarray:
    """`image` (at most size x size) in the middle of a zero size x size canvas of its dtype."""
    rows, cols = image.shape
    if (rows, cols) == (size, size):
        return image
    canvas = np.zeros((size, size), dtype=image.dtype)
    top, left = (size - rows) // 2, (size - cols) // 2
    canvas[top:top + rows, left:left + cols] = image
    return canvas


def preprocess_mask(mask: np.ndarray, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """A region drawn on a frame's native matrix (e.g. a lesion mask) -> bool [S, S] in the
    model's frame, through step 6's own geometry, so it lies exactly over the tensor's pixels."""
    return fit_to_square(np.asarray(mask, dtype=np.float32), size) >= 0.5


def to_uint8_tensor(image: np.ndarray) -> np.ndarray:
    """Step 7: round to uint8 [S, S, 1]; Lanczos overshoot is clipped, not wrapped."""
    return _rounded(image)[:, :, np.newaxis]


def _rounded(values: np.ndarray) -> np.ndarray:
    """Step 7's per-value rounding: clip to 0..255, round half to even, uint8."""
    rounded = np.clip(values, 0.0, 255.0)
    np.rint(rounded, out=rounded)
    return rounded.astype(np.uint8)
