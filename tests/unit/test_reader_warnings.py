"""pydicom's value validation echoes raw values ("Invalid value for VR UI: '<the UID>'") as a
warning and a log record, which Beam workers forward to stderr (issue 12). Reading through the
shared reader (components.dicom) must emit neither, for any of its entry points."""
from __future__ import annotations

import io
import logging
import warnings

from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

from components.dicom.preprocessing import preprocess_dicom, read_study_identity
from components.dicom.scanner import read_scanner
from components.dicom.slices import NamedInput, file_to_slices

BAD_UID = "Doe^Jane.1.2.3x"
FRAMES_TEXT = "MRN-4711-XYZ"


def _file_with_raw_values() -> bytes:
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta.MediaStorageSOPClassUID = dataset.SOPClassUID = MRImageStorage
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID = "1.2.3.4"
    dataset.Manufacturer = "SIEMENS"
    for tag, vr, value in ((0x0020000D, "UI", BAD_UID + "\0"), (0x00280008, "IS", FRAMES_TEXT)):
        dataset[tag] = RawDataElement(Tag(tag), vr, len(value), value.encode(), 0, False, True)
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_no_raw_value_in_warnings_or_log_records(caplog):
    data = _file_with_raw_values()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.DEBUG):
        warnings.simplefilter("always")
        assert read_study_identity(data)[0] == BAD_UID  # read, just not echoed
        preprocess_dicom(data, image_size=16)
        read_scanner(data)
        result = file_to_slices(NamedInput("x", data), image_size=16)
    assert result.rejections and not result.slices
    texts = [str(warning.message) for warning in caught] + [r.getMessage() for r in caplog.records]
    assert not [text for text in texts if BAD_UID in text or FRAMES_TEXT in text]
