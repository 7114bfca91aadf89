"""The TFRecord example contract shared by DicomExampleGen, the schema, the Trainer and TFMA.

One `tf.train.Example` per kept slice. Only these features exist: nothing else from the
DICOM header (no names, dates, IDs, institution, free text, raw UIDs or paths).
"""
from __future__ import annotations

import hashlib
import hmac
import os

IMAGE = "image"              # bytes: raw uint8, image_size * image_size * 1, row-major
LABEL = "label"              # int64: 1 = MS, 0 = control (study-level label)
STUDY_ID = "study_id"        # bytes: salted hash of StudyInstanceUID
SERIES_ID = "series_id"      # bytes: salted hash of SeriesInstanceUID
SCANNER = "scanner"          # bytes: top-level folder name of the hospital export
SLICE_INDEX = "slice_index"  # int64: InstanceNumber (or frame number for multi-frame files)
ORIENTATION = "orientation"  # bytes: axial | coronal | sagittal | oblique
ROWS = "rows"                # int64: original matrix rows
COLS = "cols"                # int64: original matrix columns

ALL_FEATURES = (IMAGE, LABEL, STUDY_ID, SERIES_ID, SCANNER, SLICE_INDEX, ORIENTATION, ROWS, COLS)

DEFAULT_IMAGE_SIZE = 512
DEFAULT_SALT = "ms-mri-pipeline-default-salt"  # override per deployment (PipelineConfig.salt)
_SALT_FROM_FILE, _SALT_FROM_ENV = "file:", "env:"


def hash_uid(uid: str, salt: str = DEFAULT_SALT) -> str:
    """Salted, keyed hash of a DICOM UID: stable within a deployment, not reversible."""
    digest = hmac.new(salt.encode("utf-8"), uid.strip().encode("utf-8"), hashlib.sha256)
    return digest.hexdigest()[:24]


def resolve_salt(spec: str) -> str:
    """The salt itself from its setting: `file:PATH` or `env:NAME` name where a secret salt
    lives, anything else is the salt. Pipelines pass the reference, so the secret never lands
    in ML Metadata, the compiled pipeline spec or TFX's logs; it is read where it is used."""
    if spec.startswith(_SALT_FROM_FILE):
        path = spec[len(_SALT_FROM_FILE):]
        try:
            with open(path, encoding="utf-8") as handle:
                salt = handle.read().strip()
        except OSError as error:
            raise ValueError(f"salt file {path}: {error.strerror}") from None
    elif spec.startswith(_SALT_FROM_ENV):
        name = spec[len(_SALT_FROM_ENV):]
        salt = os.environ.get(name, "").strip()
        if not salt:
            raise ValueError(f"salt: environment variable {name} is not set or empty")
    else:
        salt = spec
    if not salt:
        raise ValueError("salt is empty")
    return salt
