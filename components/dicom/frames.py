"""DICOM half of the shared preprocessing: read, frames, orientation, pixel values.

Package-private helper of `components.dicom.preprocessing` (steps 1-4 of DESIGN.md "One
preprocessing, used twice"); use that module's public API instead of importing this one
(`components.dicom.scanner` reads its header values through `read_attribute` too).
Every check raises `RejectedInput` with a message that names the tag and the reason, and never
echoes a header value that could be patient data.
"""
from __future__ import annotations

import functools
import io
import math
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.encaps import parse_basic_offsets, parse_fragments
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag, Tag
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import (UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian,
                         ImplicitVRLittleEndian, JPEGLSLossless, JPEGLSNearLossless)

from components.dicom.rejections import RejectedInput, reject

# pydicom's value validation warns with the raw value ("Invalid value for VR UI: '<the UID>'"),
# and Beam's workers forward warnings to stderr: a non-conformant StudyInstanceUID or a
# patient name would reach the console and the logs. Set here, at import, so every process that
# reads DICOM through this package (the driver, each Beam worker, the client, the web page) has
# it; values that matter are checked by this module, whose messages name the tag, never the value.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

MAGIC_OFFSET = 128
DICOM_MAGIC = b"DICM"
UNDEFINED_LENGTH = 0xFFFFFFFF

# The MR storage classes whose frames are slices of a brain MRI; everything else is rejected.
MR_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.4": "MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.1": "Enhanced MR Image Storage",
    "1.2.840.10008.5.1.4.1.1.4.4": "Legacy Converted Enhanced MR Image Storage",
}
ORIENTATIONS = ("axial", "coronal", "sagittal", "oblique")
_AXIS_ORIENTATION = ("sagittal", "coronal", "axial")  # normal mostly along x, y, z
_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# No MR matrix comes near this (4096 x 4096 is already exceptional); a compressed file whose
# Rows x Columns claim more would make the decoder allocate gigabytes before failing.
MAX_FRAME_PIXELS = 8192 * 8192
_NO_FILE_META = Dataset()
# Uncompressed little-endian pixel data is a numpy view of the element's bytes (_native_frame).
_LITTLE_ENDIAN_NATIVE = frozenset({ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                                   DeflatedExplicitVRLittleEndian})


@dataclass(frozen=True)
class FrameInfo:
    """What one frame needs beyond its pixels: its own geometry and modality LUT."""

    index: int
    orientation_cosines: tuple[float, ...] | None
    rescale_slope: float
    rescale_intercept: float


def is_dicom(head: bytes) -> bool:
    """DICOM Part 10 files carry 'DICM' after a 128-byte preamble; extensions lie."""
    return len(head) >= MAGIC_OFFSET + 4 and head[MAGIC_OFFSET:MAGIC_OFFSET + 4] == DICOM_MAGIC


def tag_name(keyword: str) -> str:
    """'(0020,0037) ImageOrientationPatient': how every message names a tag."""
    tag = pydicom.datadict.tag_for_keyword(keyword)
    return _describe_tag(tag) if tag is not None else keyword


def _describe_tag(tag: int) -> str:
    keyword = pydicom.datadict.keyword_for_tag(tag) or "private or unknown element"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {keyword}"


def safe_exception_text(exc: BaseException) -> str:
    """Exception type and message with quoted fragments blanked: they may be header values."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", str(exc).splitlines()[0] if str(exc) else "")
    return f"{type(exc).__name__}: {text[:160]}" if text else type(exc).__name__


def read_mr_dataset(data: bytes, parsed: Dataset | None = None) -> Dataset:
    """Step 1: parse the header and reject anything that is not a complete, decodable MR image.

    `parsed`: `pydicom.dcmread` of these very bytes, when the caller already has it.
    """
    if not is_dicom(data):
        raise reject("not_dicom", "no 'DICM' marker at byte 128 (not a DICOM Part 10 file)")
    try:
        dataset = pydicom.dcmread(io.BytesIO(data)) if parsed is None else parsed
    except (EOFError, zlib.error) as exc:  # zlib: a cut Deflated Explicit VR Little Endian file
        if isinstance(exc, EOFError) or "truncated" in str(exc):
            cause = "end of file" if isinstance(exc, EOFError) else "deflate stream incomplete"
            raise reject("truncated", f"file ends before the data set could be read ({cause})")
        raise reject("decode_error",
                     f"deflated data set could not be inflated ({safe_exception_text(exc)})")
    except Exception as exc:  # pydicom raises many types for malformed headers
        raise reject("decode_error",
                     f"DICOM header could not be parsed ({safe_exception_text(exc)})")
    check_file_meta_present(dataset, data)
    check_not_truncated(dataset, len(data))
    check_sop_class(dataset)
    check_pixel_module(dataset)
    check_decoder_available(dataset)
    frame_count(dataset)  # both validated here, before they size the expected pixel data
    image_shape(dataset)
    check_native_pixel_length(dataset)
    check_encapsulated_frames(dataset)
    return dataset


def _file_meta(dataset: Dataset) -> Dataset:
    """The file meta information, or an empty stand-in (never mutated) when there is none.
    One shared stand-in: building a Dataset per check cost more than the checks (issue 13)."""
    return getattr(dataset, "file_meta", None) or _NO_FILE_META


def check_file_meta_present(dataset: Dataset, data: bytes) -> None:
    """Bytes after 'DICM' that do not start a (0002,xxxx) element are not a DICOM header.

    pydicom still "parses" them into nonsense elements, which then read as a truncated file
    or a missing UID; neither is what happened. A file cut inside its meta information still
    starts with group 0002 and stays `truncated` (check_not_truncated).
    """
    meta_start = data[MAGIC_OFFSET + 4:MAGIC_OFFSET + 6]
    if not _file_meta(dataset) and meta_start \
            and not b"\x02\x00".startswith(meta_start):
        raise reject("decode_error", "no file meta information (group 0002) after the 'DICM' "
                     "marker: the bytes that follow are not a DICOM header")


def check_not_truncated(dataset: Dataset, total_bytes: int) -> None:
    """pydicom stops silently at a premature end of file; find where it stopped short.

    Two signatures: a defined-length value with fewer bytes than declared, or unparsed bytes
    after the last element (the file ends inside an element header, or inside an
    undefined-length value that pydicom dropped).
    """
    file_meta = _file_meta(dataset)
    group_length = file_meta.get("FileMetaInformationGroupLength")
    if isinstance(group_length, int) and MAGIC_OFFSET + 16 + group_length > total_bytes:
        raise reject("truncated", "file ends inside the file meta information ("
                     f"{tag_name('FileMetaInformationGroupLength')} declares {group_length} bytes)")
    if len(dataset) == 0:
        raise reject("truncated", "file ends before its data set could be read: no complete "
                     "data element after the file meta information")
    last_tag, last_start, last_end = None, -1, None
    containers = [file_meta, dataset]
    for container in containers:
        for tag, element in container.items():  # as stored: raw elements stay unconverted
            if isinstance(element, RawDataElement):
                start = element.value_tell
                value_length = len(element.value) if element.value is not None else 0
                if element.length != UNDEFINED_LENGTH and value_length < element.length:
                    raise reject("truncated", f"file ends inside {_describe_tag(tag)}: "
                                 f"{value_length} of {element.length} value bytes present")
                end = start + value_length + (8 if element.length == UNDEFINED_LENGTH else 0)
            else:  # an already parsed sequence; its end offset is not recorded
                start, end = getattr(element, "file_tell", None) or -1, None
            if start > last_start:
                last_tag, last_start, last_end = tag, start, end
    transfer_syntax = _file_meta(dataset).get("TransferSyntaxUID")
    if last_end is None or transfer_syntax == DeflatedExplicitVRLittleEndian:
        return  # offsets of deflated data refer to the inflated stream
    tail = total_bytes - last_end
    if tail < 0:
        raise reject("truncated", f"file ends inside the delimiter of {_describe_tag(last_tag)}")
    if tail > 0:
        raise reject("truncated", f"file ends before the data set is complete: {tail} bytes "
                     f"after {_describe_tag(last_tag)} could not be parsed")


def check_sop_class(dataset: Dataset) -> None:
    """Only MR image storage classes hold brain-MRI slices the model was trained on."""
    sop_class = read_attribute(dataset, "SOPClassUID") or read_attribute(
        _file_meta(dataset), "MediaStorageSOPClassUID")
    if not sop_class:
        raise reject("unsupported_sop_class", f"{tag_name('SOPClassUID')} is missing")
    sop_class = UID(str(sop_class).strip())
    if sop_class not in MR_SOP_CLASSES:
        shown = f"{sop_class} ({sop_class.name})" if sop_class.is_valid else "not a valid UID"
        raise reject("unsupported_sop_class", f"{tag_name('SOPClassUID')} is {shown}; "
                     f"accepted: {', '.join(MR_SOP_CLASSES.values())}")


def check_pixel_module(dataset: Dataset) -> None:
    """Pixel data must exist and be single-channel greyscale (MONOCHROME1/2)."""
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        raise reject("no_pixel_data", f"{tag_name('PixelData')} is missing")
    photometric = photometric_interpretation(dataset)
    samples = read_attribute(dataset, "SamplesPerPixel")
    if photometric not in ("MONOCHROME1", "MONOCHROME2") or (samples or 1) != 1:
        shown = photometric if re.fullmatch(r"[A-Z0-9_ ]{1,16}", photometric) else "missing"
        raise reject("unsupported_photometric_interpretation",
                     f"{tag_name('PhotometricInterpretation')} is {shown} with "
                     f"{tag_name('SamplesPerPixel')} {samples}; MR slices must be "
                     f"single-sample MONOCHROME1 or MONOCHROME2")


def photometric_interpretation(dataset: Dataset) -> str:
    """(0028,0004) as the checks compare it: stripped, "" when absent."""
    return str(read_attribute(dataset, "PhotometricInterpretation") or "").strip()


def check_decoder_available(dataset: Dataset) -> None:
    """Reject encodings that no installed pydicom plugin can decode, before trying."""
    transfer_syntax = _file_meta(dataset).get("TransferSyntaxUID")
    if not transfer_syntax:
        raise reject("unsupported_transfer_syntax",
                     f"{tag_name('TransferSyntaxUID')} is missing from the file meta information")
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise reject("unsupported_transfer_syntax", f"{tag_name('TransferSyntaxUID')} "
                     f"{transfer_syntax} ({transfer_syntax.name}) has no pixel data decoder")
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin available"
        raise reject("unsupported_transfer_syntax", f"{tag_name('TransferSyntaxUID')} "
                     f"{transfer_syntax.name} needs a decoder plugin: {missing}")


def check_native_pixel_length(dataset: Dataset) -> None:
    """Uncompressed pixel data shorter than rows*cols*frames*bits is a truncated file."""
    if dataset.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in dataset:
        return
    expected = _expected_pixel_bytes(dataset)
    present = len(dataset.PixelData)
    if present < expected:
        raise reject("truncated", f"{tag_name('PixelData')} has {present} bytes, "
                     f"{expected} expected from the image pixel module")


def _expected_pixel_bytes(dataset: Dataset) -> int:
    """pydicom's get_expected_length(dataset, "bytes") for the greyscale frames that reach it
    (check_pixel_module ran), from values read once (its own reads converted six elements:
    ~0.2 ms a slice)."""
    rows, cols = image_shape(dataset)
    samples = read_attribute(dataset, "SamplesPerPixel")
    allocated = read_attribute(dataset, "BitsAllocated")
    if not isinstance(samples, int) or not isinstance(allocated, int) or allocated < 1:
        raise reject("decode_error", f"image pixel module is incomplete: "
                     f"{tag_name('SamplesPerPixel')} and {tag_name('BitsAllocated')} must be "
                     "positive integers")
    pixels = rows * cols * samples * frame_count(dataset)
    return -(-pixels // 8) if allocated == 1 else pixels * (allocated // 8)


def check_encapsulated_frames(dataset: Dataset) -> None:
    """Compressed pixel data holding fewer frames than NumberOfFrames claims is one rejection.

    Without this, a lying count (100000 on a one-frame JPEG 2000 file) became one decode_error
    per claimed frame: a ledger of 99,999 rows. The frames present are counted without decoding
    anything: the Extended or Basic Offset Table has one entry per frame; without either, every
    frame needs at least one fragment, so fewer fragments than frames is a lie.
    """
    if not dataset.file_meta.TransferSyntaxUID.is_compressed or "PixelData" not in dataset:
        return
    declared = frame_count(dataset)
    if declared == 1:
        return
    try:
        present = _encapsulated_frames_at_most(dataset)
    except Exception as exc:  # a damaged item structure: decoding it would fail the same way
        raise reject("decode_error", f"encapsulated {tag_name('PixelData')} has no readable "
                     f"item structure ({safe_exception_text(exc)})")
    if present < declared:
        raise reject("truncated", f"{tag_name('NumberOfFrames')} declares {declared} frames; "
                     f"the encapsulated {tag_name('PixelData')} holds at most {present}")


def _encapsulated_frames_at_most(dataset: Dataset) -> int:
    extended = read_attribute(dataset, "ExtendedOffsetTable")
    if extended:
        return len(extended) // 8
    buffer = io.BytesIO(dataset.PixelData)
    offsets = parse_basic_offsets(buffer)
    return len(offsets) if offsets else parse_fragments(buffer)[0]


def read_attribute(dataset: Dataset, keyword: str) -> Any:
    """An attribute's value (None if absent); a malformed value is a decode_error naming it.

    Plain values are read from the raw bytes (_plain_value); pydicom converts the others."""
    tag = _keyword_tag(keyword)
    if tag is not None:
        raw = dataset.get_item(tag)
        if raw is None:
            return None
        if isinstance(raw, RawDataElement):
            value = _plain_value(raw)
            if value is not _CONVERT:
                return None if value == "" else value
    try:
        element = dataset.get(keyword)
    except Exception as exc:  # pydicom converts values lazily and may fail here
        raise reject("decode_error", f"{tag_name(keyword)} has a malformed value "
                     f"({type(exc).__name__})")
    return None if element is None or element == "" else element


_CONVERT = object()  # _plain_value's "not a plain value: let pydicom convert it"
_NUMBER_FORMATS = {"US": struct.Struct("<H"), "UL": struct.Struct("<I"),
                   "SS": struct.Struct("<h"), "SL": struct.Struct("<i")}
_TEXT_VRS = frozenset({"CS", "UI", "LO", "SH"})
_PLAIN_TEXT = re.compile(rb"[\x20-\x5b\x5d-\x7e]*\x00?")  # printable ASCII, no backslash
_INTEGER_TEXT = re.compile(rb" *[+-]?[0-9]+ *")
_DECIMAL_TEXT = re.compile(rb" *[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)? *")


@functools.lru_cache(maxsize=None)
def _keyword_tag(keyword: str) -> BaseTag | None:
    number = tag_for_keyword(keyword)
    return None if number is None else Tag(number)


@functools.lru_cache(maxsize=None)
def _dictionary_vr(tag: BaseTag) -> str | None:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _plain_value(raw: RawDataElement) -> Any:
    """What pydicom converts `raw` to, for the plain values MR headers hold: one little-endian
    US/UL/SS/SL number, one printable ASCII CS/UI/LO/SH text, one integer string, decimal
    strings (a tuple for several); `_CONVERT` for anything else (pydicom's conversion then).

    pydicom's conversion of an element on first access costs ~30 us (its element set-up and
    checks), and ingest reads ~25 per slice: ~0.7 ms of ~3.4 ms of a 512x512 slice's work
    (issue 13). Text comes back stripped of trailing spaces and NULs, as every caller strips
    it; tests/unit/test_plain_values.py compares this with pydicom on arbitrary bytes.
    """
    data = raw.value
    if not raw.is_little_endian or raw.is_buffered or not isinstance(data, bytes) \
            or raw.length == UNDEFINED_LENGTH:
        return _CONVERT
    if not data:
        return None
    vr = raw.VR or _dictionary_vr(raw.tag)
    number = _NUMBER_FORMATS.get(vr)
    if number is not None:
        return number.unpack(data)[0] if len(data) == number.size else _CONVERT
    if vr in _TEXT_VRS:
        if not _PLAIN_TEXT.fullmatch(data):
            return _CONVERT
        text = data.decode("ascii")
        return text.strip("\0 ") if vr == "UI" else text.rstrip("\0 ")
    if vr == "IS":
        return int(data) if _INTEGER_TEXT.fullmatch(data) else _CONVERT
    if vr == "DS":
        parts = data.split(b"\\")
        if not all(_DECIMAL_TEXT.fullmatch(part) for part in parts):
            return _CONVERT
        numbers = tuple(float(part) for part in parts)
        if not all(math.isfinite(number) for number in numbers):
            return _CONVERT
        return numbers[0] if len(numbers) == 1 else numbers
    return _CONVERT


def frame_count(dataset: Dataset) -> int:
    """(0028,0008) NumberOfFrames, 1 when absent: every frame becomes a candidate slice."""
    value = read_attribute(dataset, "NumberOfFrames")
    try:
        count = 1 if value is None else int(value)
    except (TypeError, ValueError):
        raise reject("decode_error", f"{tag_name('NumberOfFrames')} is not an integer")
    if count < 1:
        raise reject("decode_error", f"{tag_name('NumberOfFrames')} is {count}; must be >= 1")
    return count


def image_shape(dataset: Dataset) -> tuple[int, int]:
    """(Rows, Columns) of every frame; the caller records them as the original matrix."""
    shape = []
    for keyword in ("Rows", "Columns"):
        value = read_attribute(dataset, keyword)
        if not isinstance(value, int) or value < 1:
            raise reject("decode_error",
                         f"{tag_name(keyword)} is missing or not a positive integer")
        shape.append(value)
    if shape[0] * shape[1] > MAX_FRAME_PIXELS:
        raise reject("decode_error", f"{tag_name('Rows')} x {tag_name('Columns')} is "
                     f"{shape[0]} x {shape[1]}, over the {MAX_FRAME_PIXELS} pixels of any MR "
                     "matrix: decoding it would exhaust memory")
    return shape[0], shape[1]


def functional_group_value(dataset: Dataset, index: int, macro: str, keyword: str,
                           groups: tuple[Dataset, ...] | None = None) -> Any:
    """Per-frame functional group, else shared functional group, else the top-level tag.

    This is the lookup order of PS3.3 C.7.6.16 for Enhanced / Legacy Converted MR objects;
    classic MR Image Storage has only the top-level tag. `groups`: `frame_groups(dataset,
    index)`, when the caller looks up several values of one frame.
    """
    for group in frame_groups(dataset, index) if groups is None else groups:
        macro_items = read_attribute(group, macro)
        if macro_items:
            value = read_attribute(macro_items[0], keyword)
            if value is not None:
                return value
    return read_attribute(dataset, keyword)


def frame_groups(dataset: Dataset, index: int) -> tuple[Dataset, ...]:
    """The functional group items that apply to frame `index`, per-frame first; none for a
    classic MR image."""
    items = []
    for groups_keyword in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        groups = read_attribute(dataset, groups_keyword)
        item_index = index if groups_keyword.startswith("PerFrame") else 0
        if groups and item_index < len(groups):
            items.append(groups[item_index])
    return tuple(items)


def frame_info(dataset: Dataset, index: int) -> FrameInfo:
    """Step 2: the geometry and modality LUT of one frame."""
    groups = frame_groups(dataset, index)
    cosines = functional_group_value(dataset, index, "PlaneOrientationSequence",
                                     "ImageOrientationPatient", groups)
    slope = functional_group_value(dataset, index, "PixelValueTransformationSequence",
                                   "RescaleSlope", groups)
    intercept = functional_group_value(dataset, index, "PixelValueTransformationSequence",
                                       "RescaleIntercept", groups)
    return FrameInfo(
        index=index,
        orientation_cosines=_as_floats(cosines, "ImageOrientationPatient"),
        rescale_slope=_as_float(slope, "RescaleSlope", default=1.0),
        rescale_intercept=_as_float(intercept, "RescaleIntercept", default=0.0),
    )


def _as_floats(value: Any, keyword: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    items = list(value) if isinstance(value, (MultiValue, list, tuple)) else [value]
    try:
        return tuple(float(item) for item in items)
    except (TypeError, ValueError):
        raise reject("invalid_orientation", f"{tag_name(keyword)} is not numeric")


def _as_float(value: Any, keyword: str, default: float) -> float:
    if value is None:
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise reject("decode_error", f"{tag_name(keyword)} is not a number")
    if not math.isfinite(number):
        raise reject("decode_error", f"{tag_name(keyword)} is not finite")
    return number


def classify_orientation(cosines: tuple[float, ...] | None, oblique_threshold: float = 0.8) -> str:
    """Step 3: plane of the slice from the normal = row cosines x column cosines.

    The largest absolute component of the unit normal picks the plane (z axial, y coronal,
    x sagittal); below `oblique_threshold` (cos ~37 degrees) no plane dominates: oblique.
    """
    iop = tag_name("ImageOrientationPatient")
    if cosines is None:
        raise reject("missing_orientation", f"{iop} is missing (per-frame, shared and top level)")
    if len(cosines) != 6 or not all(math.isfinite(c) for c in cosines):
        raise reject("invalid_orientation", f"{iop} must hold 6 finite direction cosines, "
                     f"has {len(cosines)}")
    # numpy's cross product, term for term, without its cost on 3-vectors (~0.1 ms a slice)
    (r0, r1, r2), (c0, c1, c2) = cosines[:3], cosines[3:]
    normal = (r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0)
    length = float(np.linalg.norm(normal))
    if length < 1e-6:
        raise reject("invalid_orientation", f"{iop} row and column cosines are parallel or zero")
    components = [abs(component / length) for component in normal]
    axis = components.index(max(components))  # the first largest, as np.argmax
    return _AXIS_ORIENTATION[axis] if components[axis] >= oblique_threshold else "oblique"


@dataclass(frozen=True, eq=False)
class ModalityPixels:
    """One decoded frame as stored plus its modality LUT, applied lazily (step 4).

    `values()` is the frame in modality units (float64). Step 5 needs only the values' order
    statistics and a per-value mapping, so for integer frames it works on the stored integers
    and a table of their at most 65,536 distinct values instead of a float64 copy per pixel
    (preprocessing.clip_and_scale); the result is byte-identical.
    """

    stored: np.ndarray      # 2-D, as the decoder gave it (integers, or floats for float data)
    slope: float = 1.0
    intercept: float = 0.0
    invert: bool = False    # MONOCHROME1: negate the rescaled values
    known_levels: tuple[int, int] | None = None  # (min, max) of `stored`, when the decoder
                                                 # already found them

    @functools.cached_property
    def levels(self) -> tuple[int, int] | None:
        """(min, max) of an integer frame as stored, found once for every step that asks;
        None for float data."""
        if self.stored.dtype.kind not in "ui":
            return None
        if self.known_levels is not None:
            return self.known_levels
        return int(self.stored.min()), int(self.stored.max())

    def modality(self, stored: np.ndarray) -> np.ndarray:
        """Stored values (any shape) -> modality units; the one formula for pixels and tables."""
        with np.errstate(over="ignore", invalid="ignore"):  # callers check finiteness
            values = stored.astype(np.float64) * self.slope + self.intercept
        return -values if self.invert else values

    def values(self) -> np.ndarray:
        return self.modality(self.stored)


# The plugin to try first where pydicom's own order (its first available plugin) is slower:
# JPEG-LS by CharLS (pyjpegls) takes ~11 ms for a 512x512 16-bit slice against ~50 ms for
# pylibjpeg-libjpeg (bench/ingest.py), the same pixels (both decode as the standard defines:
# tests/unit/test_preferred_decoders.py compares them on every JPEG-LS file pydicom ships).
PREFERRED_DECODERS = {JPEGLSLossless: "pyjpegls", JPEGLSNearLossless: "pyjpegls"}


@functools.lru_cache(maxsize=None)
def decoding_plugin(transfer_syntax: UID) -> str:
    """The pydicom plugin this package decodes `transfer_syntax` with first: the preferred one
    when installed, else "" (pydicom's own order)."""
    preferred = PREFERRED_DECODERS.get(transfer_syntax, "")
    try:
        available = get_decoder(transfer_syntax).available_plugins
    except NotImplementedError:
        return ""
    return preferred if preferred in available else ""


def _decoded_frame(dataset: Dataset, index: int, transfer_syntax: UID) -> np.ndarray:
    """pydicom's decode of one frame, by the preferred plugin first; where that fails, pydicom's
    own order (every installed plugin) decides, and its error is the one reported."""
    plugin = decoding_plugin(transfer_syntax)
    if plugin:
        try:
            return pixel_array(dataset, index=index, decoding_plugin=plugin)
        except Exception:  # noqa: BLE001 - the other plugins get their turn below
            pass
    return pixel_array(dataset, index=index)


def frame_pixels(dataset: Dataset, frame: FrameInfo) -> ModalityPixels:
    """Step 4: one frame with its modality LUT; MONOCHROME1 is turned bright-is-high.

    Byte order and bit depth are pydicom's rules (uncompressed little-endian frames are read
    as views, _native_frame, exactly as pydicom decodes them); no display windowing (presets
    vary by vendor).
    Negating MONOCHROME1 is an exact inversion because step 5 rescales by percentiles anyway.
    """
    transfer_syntax = dataset.file_meta.TransferSyntaxUID
    try:
        raw, levels = _native_frame(dataset, frame.index, transfer_syntax) \
            or (_decoded_frame(dataset, frame.index, transfer_syntax), None)
    except BaseException as exc:  # decoder plugins raise many types
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise  # KeyboardInterrupt & co.; Rust (pyo3) decoders panic on corrupt data
        if "less than expected" in str(exc):
            raise reject("truncated", f"{tag_name('PixelData')} is shorter than the image "
                         "pixel module declares")
        raise reject("decode_error", f"{tag_name('PixelData')} ({transfer_syntax.name}) could "
                     f"not be decoded ({safe_exception_text(exc)})")
    if raw.ndim != 2 or raw.size == 0:
        raise reject("decode_error", f"{tag_name('PixelData')} decoded to shape {raw.shape}, "
                     "expected one greyscale frame")
    pixels = ModalityPixels(raw, frame.rescale_slope, frame.rescale_intercept,
                            photometric_interpretation(dataset) == "MONOCHROME1", levels)
    # The modality LUT is monotonic, so integer frames are finite iff their extremes are.
    probe = raw if pixels.levels is None else np.array(pixels.levels, dtype=np.int64)
    if not np.all(np.isfinite(pixels.modality(probe))):
        raise reject("decode_error", f"{tag_name('PixelData')} holds non-finite values")
    return pixels


def _native_frame(dataset: Dataset, index: int, transfer_syntax: UID,
                  ) -> tuple[np.ndarray, tuple[int, int] | None] | None:
    """Frame `index` of uncompressed little-endian integer pixel data, as pydicom's
    `pixel_array` gives it, read-only, with its (min, max) where they were needed here;
    None where pydicom's decoder does the work instead
    (compressed or big-endian data, 1-bit or float pixels, fewer bytes than the frame needs).

    An MR frame as stored is already the array: a view of the element's bytes costs
    microseconds, where pydicom's decode (DecodeRunner set-up, its header reads, a copy, the
    unused-bits shift) cost about 0.6 ms a 512x512 slice, half of ingest's decode (issue 13).
    The unused high bits (Bits Stored < Bits Allocated) are pydicom's way too: shifted out,
    masking unsigned and sign-extending signed values; skipped when no value uses them, which
    changes nothing. tests/unit/test_native_frames.py compares it with pydicom's decoder.
    """
    if transfer_syntax not in _LITTLE_ENDIAN_NATIVE:
        return None
    allocated = read_attribute(dataset, "BitsAllocated")
    stored_bits = read_attribute(dataset, "BitsStored")
    representation = read_attribute(dataset, "PixelRepresentation")
    if allocated not in (8, 16, 32) or representation not in (0, 1) \
            or not isinstance(stored_bits, int) or not 1 <= stored_bits <= allocated:
        return None
    rows, cols = image_shape(dataset)
    dtype = np.dtype(f"<{'i' if representation else 'u'}{allocated // 8}")
    frame_bytes = rows * cols * dtype.itemsize
    data = dataset.get("PixelData")
    if not isinstance(data, (bytes, bytearray)) or len(data) < (index + 1) * frame_bytes:
        return None
    raw = np.frombuffer(data, dtype, rows * cols, index * frame_bytes).reshape(rows, cols)
    if stored_bits == allocated:
        return raw, None
    levels = int(raw.min()), int(raw.max())
    limit = 1 << (stored_bits - representation)
    if (-limit if representation else 0) <= levels[0] and levels[1] < limit:
        return raw, levels
    shift = allocated - stored_bits
    return np.right_shift(np.left_shift(raw, shift), shift), None


def optional_uid(dataset: Dataset, keyword: str) -> str | None:
    """A UID for the caller to hash; None when absent (the caller decides if that is fatal)."""
    try:
        value = read_attribute(dataset, keyword)
    except RejectedInput:
        return None
    text = str(value).strip().rstrip("\0").strip() if value is not None else ""
    return text or None


def optional_int(dataset: Dataset, keyword: str) -> int | None:
    """An integer attribute such as InstanceNumber; None when absent or malformed."""
    try:
        value = read_attribute(dataset, keyword)
        return None if value is None else int(value)
    except (RejectedInput, TypeError, ValueError):
        return None
