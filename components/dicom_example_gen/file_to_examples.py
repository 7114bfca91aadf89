"""One input file -> serialized examples + ledger records + counts. Runs in Beam workers.

A file does not know its split: splits are assigned once every study's usable slices are
counted (executor.py), so a worker emits its examples keyed by study_id (`keyed_example`).
The `scanner` feature and the ledger's scanner come from the header (components.dicom.scanner),
never from a folder name.

Files become slices through components.dicom.slices, the loop `mspipe predict` and the web page
use too (same reject codes; the study is checked from the header first, so a file of an
unlabelled study costs no pixel decoding). Imports numpy/pydicom/Pillow and Beam, never
TensorFlow or TFX: Beam's multi-processing workers unpickle this module's DoFn, and importing
TensorFlow there would cost each worker ~0.6 GB and ~10 s. `file_outcome` is plain Python so it
can be tested and reused (bench/ingest.py's in-process baseline) without Beam.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterator, Mapping

import apache_beam as beam
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from components import features
from components.dicom.preprocessing import PreprocessedSlice
from components.dicom.records import encode_example
from components.dicom.scanner import UNKNOWN_SCANNER
from components.dicom.slices import FileSlices, NamedInput, file_to_slices, labelled_studies_only
from components.dicom_example_gen import allocator, ledger
from components.dicom_example_gen.discovery import Skipped

EXAMPLES_TAG = "examples"
LEDGER_TAG = "ledger"
COUNTS_TAG = "counts"
STUDY_COUNT_PREFIX = "study/"
REJECTS_COUNT_PREFIX = "rejects/"
_KEY_SEPARATOR = b" "


@dataclass(frozen=True)
class IngestSettings:
    """What every worker needs: no raw UID in here, studies are keyed by their salted hash."""

    input_base: str
    image_size: int
    orientations: tuple[str, ...]
    salt: str
    study_labels: Mapping[str, int]  # study_id -> label; splits are chosen after reading


@dataclass
class FileOutcome:
    """Everything one file contributed: examples (all of one study), ledger lines, counts."""

    examples: list[bytes] = field(default_factory=list)
    rejects: list[ledger.LedgerRecord] = field(default_factory=list)
    study_id: str | None = None  # set when the file gave examples

    def counts(self) -> dict[str, int]:
        """Summary keys: study/<study_id> (slices kept), rejects/<reason>."""
        counts: dict[str, int] = {}
        if self.examples and self.study_id:
            counts[STUDY_COUNT_PREFIX + self.study_id] = len(self.examples)
        for record in self.rejects:
            key = REJECTS_COUNT_PREFIX + record.reason
            counts[key] = counts.get(key, 0) + 1
        return counts


def slice_index(item: PreprocessedSlice, frames_in_file: int) -> int:
    """InstanceNumber for single-frame files, the 1-based frame number for multi-frame ones."""
    if frames_in_file > 1 or item.instance_number is None:
        return item.frame_index + 1
    return item.instance_number


def file_outcome(relative_path: str, source: bytes | str, settings: IngestSettings) -> FileOutcome:
    """One file's examples and ledger records; never raises for its content or its I/O.

    `source`: the file's bytes, or its full path (read through Beam's filesystems).
    """
    result = file_to_slices(
        NamedInput(relative_path, source), image_size=settings.image_size,
        orientations=settings.orientations, dicom_only=True, read=read_file_bytes,
        study_check=labelled_studies_only(settings.study_labels, settings.salt))
    record = _RecordFactory(relative_path, settings.salt)
    record.identify(result.study_uid, result.series_uid, result.scanner)
    outcome = FileOutcome(rejects=[record(r.reason, r.detail, r.frame_index)
                                   for r in result.rejections])
    if result.slices:
        label = settings.study_labels[record.study_id]
        outcome.study_id = record.study_id
        outcome.examples = [_example(item, result, record, label) for item in result.slices]
    return outcome


def keyed_example(study_id: str, example: bytes) -> bytes:
    """An example staged with its study_id in front, so it can be routed to its split once
    every study's slices are counted without parsing the example."""
    return study_id.encode("ascii") + _KEY_SEPARATOR + example


def split_keyed_example(record: bytes) -> tuple[str, bytes]:
    """The inverse of keyed_example."""
    study_id, _, example = record.partition(_KEY_SEPARATOR)
    return study_id.decode("ascii"), example


def skipped_outcome(entry: Skipped, settings: IngestSettings) -> FileOutcome:
    """An entry the listing did not pass on (discovery.py): one ledger record, no reading."""
    record = _RecordFactory(entry.relative_path, settings.salt)
    return FileOutcome(rejects=[record(entry.reason, entry.detail)])


def _example(item: PreprocessedSlice, result: FileSlices, record: "_RecordFactory",
             label: int) -> bytes:
    return encode_example({
        features.IMAGE: item.image.tobytes(),
        features.LABEL: label,
        features.STUDY_ID: record.study_id,
        features.SERIES_ID: record.series_id or "",
        features.SCANNER: record.scanner,
        features.SLICE_INDEX: slice_index(item, result.frames),
        features.ORIENTATION: item.orientation,
        features.ROWS: item.rows,
        features.COLS: item.cols,
    })


class _RecordFactory:
    """Builds ledger records for one file; holds its hashed ids, never the raw path or UIDs."""

    def __init__(self, relative_path: str, salt: str):
        self.salt = salt
        self.file_id = ledger.file_id(relative_path, salt)
        self.scanner = UNKNOWN_SCANNER  # from the header (identify), never from the path
        self.study_id: str | None = None
        self.series_id: str | None = None

    def identify(self, study_uid: str | None, series_uid: str | None, scanner: str) -> None:
        self.study_id = features.hash_uid(study_uid, self.salt) if study_uid else None
        self.series_id = features.hash_uid(series_uid, self.salt) if series_uid else None
        self.scanner = scanner

    def __call__(self, reason: str, detail: str,
                 frame_index: int | None = None) -> ledger.LedgerRecord:
        return ledger.LedgerRecord(reason=reason, detail=detail, scanner=self.scanner,
                                   file_id=self.file_id, study_id=self.study_id,
                                   series_id=self.series_id, frame_index=frame_index)


def read_file_bytes(path: str) -> bytes:
    """Raw bytes through Beam's filesystems (local, gs://, hdfs://...), never decompressed."""
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as handle:
        return handle.read()


class FileToExamplesDoFn(beam.DoFn):
    """relative path -> tagged outputs: EXAMPLES_TAG (keyed_example), LEDGER_TAG (JSON),
    COUNTS_TAG."""

    def __init__(self, settings: IngestSettings):
        super().__init__()
        self._settings = settings

    def setup(self) -> None:
        allocator.keep_freed_memory()  # see allocator.py: ~5 ms of page faults per resized slice

    def process(self, relative_path: str) -> Iterator[beam.pvalue.TaggedOutput]:
        outcome = file_outcome(relative_path,
                               os.path.join(self._settings.input_base, relative_path),
                               self._settings)
        for example in outcome.examples:
            yield beam.pvalue.TaggedOutput(EXAMPLES_TAG, keyed_example(outcome.study_id, example))
        for record in outcome.rejects:
            yield beam.pvalue.TaggedOutput(LEDGER_TAG, record.to_json())
        for key, count in outcome.counts().items():
            yield beam.pvalue.TaggedOutput(COUNTS_TAG, (key, count))
