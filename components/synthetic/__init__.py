"""Synthetic hospital DICOM export (the demo's, tests' and benchmarks' stand-in for real data).

    from components.synthetic import generate_dataset
    manifest = generate_dataset("out/hospital", studies=12, seed=0, slices_per_series=8)

Pure numpy + pydicom (+ pylibjpeg for RLE / JPEG 2000, pyjpegls for JPEG-LS); no TensorFlow, TFX
or Beam.
"""
from components.synthetic.generator import generate_dataset, generate_from_settings
from components.synthetic.labels import LABEL_COLUMNS, LABELS_CSV, LABELS_XLSX
from components.synthetic.manifest import FileRecord, Manifest, StudyRecord
from components.synthetic.settings import (
    DEFAULT_SCANNERS,
    PLANTED_PATIENT_STRINGS,
    ScannerProfile,
    SynthSettings,
)

__all__ = [
    "DEFAULT_SCANNERS",
    "FileRecord",
    "LABEL_COLUMNS",
    "LABELS_CSV",
    "LABELS_XLSX",
    "Manifest",
    "PLANTED_PATIENT_STRINGS",
    "ScannerProfile",
    "StudyRecord",
    "SynthSettings",
    "generate_dataset",
    "generate_from_settings",
]
