"""Encode synthetic images as DICOM files the way hospital exports actually arrive.

Each builder returns a pydicom Dataset; `encode` turns it into Part-10 bytes in one of the six
transfer syntaxes (native little/big endian, implicit VR, RLE, JPEG 2000 lossless, JPEG-LS
lossless). Stored pixel values come from the physical signal through the inverse modality LUT
(slope/intercept) and, for MONOCHROME1, an inversion of the *rescaled* values, so a reader that
applies the modality LUT and then inverts MONOCHROME1 gets the phantom back.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from pydicom import dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    BasicTextSRStorage,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    JPEGLSLossless,
    JPEGLSNearLossless,
    MRImageStorage,
    SecondaryCaptureImageStorage,
)

from components.synthetic.phantom import Plane
from components.synthetic.settings import PlantedPatient, ScannerProfile

SIGNED_OFFSET = 1024.0   # signed scanners store (value - 1024): negative background, intercept 1024


@dataclass(frozen=True)
class SeriesIdentity:
    """Header values shared by every file of one series, fake patient data included."""

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    series_number: int
    series_description: str
    patient: PlantedPatient
    institution: str
    scanner: ScannerProfile


@dataclass(frozen=True)
class PixelEncoding:
    """How one series stores its pixel values."""

    transfer_syntax: UID
    monochrome1: bool
    rescale: tuple[float, float]     # (slope, intercept) before the signed-scanner offset
    signed: bool


@dataclass(frozen=True)
class StoredPixels:
    """Stored values of one file (frames, rows, cols) and the rescale of each frame."""

    values: np.ndarray
    rescales: tuple[tuple[float, float], ...]
    bits_stored: int


def to_stored(signal: np.ndarray, encoding: PixelEncoding, frame_slopes: tuple[float, ...]
              ) -> StoredPixels:
    """Physical signal (frames, rows, cols) -> stored integers and per-frame (slope, intercept)."""
    slope, intercept = encoding.rescale
    intercept += SIGNED_OFFSET if encoding.signed else 0.0
    values = signal
    if encoding.monochrome1:   # display inverts MONOCHROME1, so invert the rescaled values
        values = np.float32(np.ceil(float(signal.max()))) - signal
    rescales = tuple((round(slope * factor, 6), intercept) for factor in frame_slopes)
    stored = np.stack([np.rint((values[f] - b) / m) for f, (m, b) in enumerate(rescales)])
    dtype = np.int16 if encoding.signed else np.uint16
    limits = np.iinfo(dtype)
    if stored.min() < limits.min or stored.max() > limits.max:
        raise ValueError(f"stored values {stored.min()}..{stored.max()} do not fit "
                         f"{dtype.__name__}")
    stored = stored.astype(dtype)
    bits = 16 if encoding.signed or stored.max() >= 4096 else 12
    return StoredPixels(stored, rescales, bits)


def _base(sop_class: UID, sop_uid: str, identity: SeriesIdentity, modality: str) -> Dataset:
    """Patient, study, series and equipment modules; the fake patient data goes in here."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    patient = identity.patient
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = patient.study_date
    ds.StudyTime, ds.ContentTime = "081512", "083000"
    ds.SeriesTime = f"08{(20 + identity.series_number) % 60:02d}00"
    ds.AccessionNumber = patient.accession
    ds.Modality = modality
    ds.Manufacturer = identity.scanner.manufacturer
    ds.InstitutionName = identity.institution
    ds.ReferringPhysicianName = patient.referring_physician
    ds.StudyDescription = patient.study_description
    ds.SeriesDescription = identity.series_description
    ds.ManufacturerModelName = identity.scanner.model_name
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = identity.study_uid
    ds.SeriesInstanceUID = identity.series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = identity.series_number
    return ds


def _image_pixel_module(ds: Dataset, stored: StoredPixels, monochrome1: bool) -> None:
    frames, rows, cols = stored.values.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if monochrome1 else "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    ds.BitsAllocated = 16
    ds.BitsStored = stored.bits_stored
    ds.HighBit = stored.bits_stored - 1
    ds.PixelRepresentation = int(stored.values.dtype == np.int16)


def _mr_acquisition(ds: Dataset, identity: SeriesIdentity, thickness: float) -> None:
    ds.BodyPartExamined = "HEAD"
    ds.ScanningSequence, ds.SequenceVariant = "SE\\IR", "SK\\SP"
    ds.MRAcquisitionType = "2D"
    ds.SliceThickness = round(thickness, 3)
    ds.RepetitionTime, ds.EchoTime, ds.InversionTime = 9000.0, 81.0, 2500.0
    ds.MagneticFieldStrength = identity.scanner.field_strength
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""


def mr_image(identity: SeriesIdentity, sop_uid: str, instance: int, plane: Plane,
             stored: StoredPixels, encoding: PixelEncoding, thickness: float) -> Dataset:
    """Classic single-frame MR Image Storage file."""
    ds = _base(MRImageStorage, sop_uid, identity, "MR")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "ND"]
    _mr_acquisition(ds, identity, thickness)
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = plane.position
    ds.ImageOrientationPatient = plane.orientation
    ds.SliceLocation = round(float(plane.origin @ plane.normal), 4)
    ds.PixelSpacing = [plane.spacing, plane.spacing]
    _image_pixel_module(ds, stored, encoding.monochrome1)
    slope, intercept = stored.rescales[0]
    if (slope, intercept) != (1.0, 0.0):   # classic MR carries rescale tags only when needed
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    ds.WindowCenter, ds.WindowWidth = 600, 1200
    return ds


def enhanced_mr_image(identity: SeriesIdentity, sop_uid: str, planes: list[Plane],
                      stored: StoredPixels, encoding: PixelEncoding, thickness: float,
                      shared_orientation: bool) -> Dataset:
    """Enhanced MR multi-frame file: geometry and rescale live in the functional groups,
    per frame (orientation optionally shared, as some vendors write it)."""
    ds = _base(EnhancedMRImageStorage, sop_uid, identity, "MR")
    ds.ImageType = ["ORIGINAL", "PRIMARY", "M", "NONE"]
    _mr_acquisition(ds, identity, thickness)
    ds.InstanceNumber = 1
    ds.ContentQualification = "PRODUCT"
    ds.AcquisitionDateTime = identity.patient.study_date + "081600"
    ds.NumberOfFrames = len(planes)
    _image_pixel_module(ds, stored, encoding.monochrome1)
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [planes[0].spacing, planes[0].spacing]
    measures.SliceThickness = round(thickness, 3)
    shared.PixelMeasuresSequence = Sequence([measures])
    if shared_orientation:
        shared.PlaneOrientationSequence = Sequence([_orientation_item(planes[0])])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    per_frame = []
    for index, (plane, (slope, intercept)) in enumerate(zip(planes, stored.rescales)):
        frame = Dataset()
        content = Dataset()
        content.InStackPositionNumber = index + 1
        content.StackID = "1"
        frame.FrameContentSequence = Sequence([content])
        position = Dataset()
        position.ImagePositionPatient = plane.position
        frame.PlanePositionSequence = Sequence([position])
        if not shared_orientation:
            frame.PlaneOrientationSequence = Sequence([_orientation_item(plane)])
        transform = Dataset()
        transform.RescaleSlope, transform.RescaleIntercept = slope, intercept
        transform.RescaleType = "US"
        frame.PixelValueTransformationSequence = Sequence([transform])
        per_frame.append(frame)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per_frame)
    return ds


def _orientation_item(plane: Plane) -> Dataset:
    item = Dataset()
    item.ImageOrientationPatient = plane.orientation
    return item


def secondary_capture(identity: SeriesIdentity, sop_uid: str, pixels: np.ndarray) -> Dataset:
    """A screenshot-style capture with burned-in text: has pixels, but is not an MR image."""
    ds = _base(SecondaryCaptureImageStorage, sop_uid, identity, "OT")
    ds.ConversionType = "WSD"
    ds.InstanceNumber = 1
    ds.BurnedInAnnotation = "YES"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = pixels.astype(np.uint8).tobytes()
    return ds


def text_report(identity: SeriesIdentity, sop_uid: str, text: str) -> Dataset:
    """Basic Text SR: a radiology report object living among the images, without pixels."""
    ds = _base(BasicTextSRStorage, sop_uid, identity, "SR")
    ds.InstanceNumber = 1
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code("11528-7", "LN", "Radiology Report")])
    ds.ContinuityOfContent = "SEPARATE"
    ds.CompletionFlag, ds.VerificationFlag = "COMPLETE", "UNVERIFIED"
    finding = Dataset()
    finding.RelationshipType, finding.ValueType = "CONTAINS", "TEXT"
    finding.ConceptNameCodeSequence = Sequence([_code("121071", "DCM", "Finding")])
    finding.TextValue = text
    ds.ContentSequence = Sequence([finding])
    return ds


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


# pydicom's encoder per compressed transfer syntax: pylibjpeg's (RLE, JPEG 2000), except JPEG-LS,
# which only pyjpegls (CharLS) writes.
_ENCODING_PLUGINS = {JPEGLSLossless: "pyjpegls", JPEGLSNearLossless: "pyjpegls"}


def encode(ds: Dataset, transfer_syntax: UID, pixels: np.ndarray | None = None) -> bytes:
    """Part-10 bytes of `ds` in `transfer_syntax`; `pixels` (frames, rows, cols) become its
    Pixel Data. Deterministic: no generated UIDs, no timestamps."""
    if pixels is not None:
        single = pixels[0] if pixels.shape[0] == 1 else pixels
        if transfer_syntax.is_compressed:
            ds.compress(transfer_syntax, single, generate_instance_uid=False,
                        encoding_plugin=_ENCODING_PLUGINS.get(transfer_syntax, "pylibjpeg"))
        else:
            order = ">" if transfer_syntax == ExplicitVRBigEndian else "<"
            ds.PixelData = single.astype(single.dtype.newbyteorder(order)).tobytes()
    ds.file_meta.TransferSyntaxUID = transfer_syntax
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()

