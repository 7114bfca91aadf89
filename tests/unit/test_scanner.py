"""The scanner feature: a safe token from the header's Manufacturer and Model Name, never a
folder name and never free text (issue 12: a patient's folder name reached the TFRecords)."""
from __future__ import annotations

import io

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from components.dicom.scanner import (MAX_MODEL_CHARACTERS, OTHER_VENDOR, UNKNOWN_SCANNER,
                                      read_scanner, scanner_token)


@pytest.mark.parametrize("manufacturer, model, token", [
    ("GE MEDICAL SYSTEMS", "SIGNA Premier", "ge_signa"),
    ("SIEMENS", "Skyra", "siemens_skyra"),
    ("Philips Medical Systems", "Ingenia", "philips_ingenia"),
    ("Siemens Healthineers", None, "siemens"),
    ("  GE Healthcare ", "750w", "ge_750w"),
    ("Canon Medical Systems", "1234567", "canon"),          # digits only: could be a serial
    ("TOSHIBA", "Vantage-Titan", "toshiba_vantage"),
    ("Philips", "A" * 40, "philips_" + "a" * MAX_MODEL_CHARACTERS),
    ("Doe^Jane", "Skyra", OTHER_VENDOR),                    # free text: never echoed
    ("Dr. Quackenbush's ward 3", "Skyra", OTHER_VENDOR),
    ("Zwölfer Jürgen", "x", OTHER_VENDOR),
    ("", "Skyra", UNKNOWN_SCANNER),
    (None, "Skyra", UNKNOWN_SCANNER),
    (["SIEMENS", "Doe^Jane"], "Prisma", "siemens_prisma"),  # multi-valued by mistake
])
def test_scanner_token(manufacturer, model, token):
    assert scanner_token(manufacturer, model) == token


def test_read_scanner_from_header_and_unknown_when_unreadable():
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = MRImageStorage
    dataset.SOPClassUID = MRImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = "1.2.3.4"
    dataset.Manufacturer = "GE MEDICAL SYSTEMS"
    dataset.ManufacturerModelName = "SIGNA Premier"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    assert read_scanner(buffer.getvalue()) == "ge_signa"
    assert read_scanner(b"\0" * 128 + b"DICM" + b"\xff" * 64) == UNKNOWN_SCANNER
