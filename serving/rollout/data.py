"""The labelled held-out set a canary is judged on, streamed as batches of slices.

Two sources, one shape (`SliceBatch`: uint8 images, labels, study ids):
- the eval split the pipeline wrote: gzip TFRecords of tf.Examples (components/features.py:
  `image` raw bytes, `label`, `study_id`), read without TensorFlow by the project's one
  record reader (components/dicom/records.py): the rollout tool is a client and starts in a
  second. CRCs are checked, so a truncated file is an error;
- a hospital DICOM folder plus its labels file (study_uid -> sclerosis, CSV/XLSX), through
  the very preprocessing the pipeline used (components.dicom.preprocessing via serving/client/predict.py),
  at the input size the served model declares. Slices are grouped by study through their
  StudyInstanceUID, hashed as soon as it is read, the key the labels file uses.

Streaming keeps memory flat whatever the set's size; study-level metrics need only the
per-slice probabilities, which the analysis keeps. Nothing here logs a path below the folder
given, a UID or any header text: skipped inputs are counted by reason.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from components import features
from components.dicom import records


class EvalDataError(ValueError):
    """The held-out set cannot be read; the message names the file, record and field."""


@dataclass(frozen=True)
class SliceBatch:
    images: np.ndarray        # uint8 [N, S, S, 1]
    labels: np.ndarray        # int64 [N], 0/1 (the study's label)
    study_ids: tuple[str, ...]  # salted study hashes, for grouping only


@dataclass
class DataSummary:
    """What was read: counts only (no paths below the folder given, no identifiers)."""
    source: str                     # "tfrecords" | "dicom"
    files: int = 0
    slices: int = 0
    skipped: Counter = field(default_factory=Counter)  # reason -> slices or files

    def to_dict(self) -> dict:
        return {"source": self.source, "files": self.files, "slices": self.slices,
                "skipped": dict(sorted(self.skipped.items()))}


# ------------------------------------------------------------------------------ TFRecords
def eval_split_files(data: str | os.PathLike) -> list[Path]:
    """The TFRecord files of the held-out set. Given a whole Examples artifact (its Split-*
    folders), only Split-eval is read: judging a model on its training data would flatter it."""
    root = Path(data)
    if root.is_dir() and any(child.is_dir() and child.name.startswith("Split-")
                             for child in root.iterdir()):
        if not (root / "Split-eval").is_dir():
            raise EvalDataError(f"{root}: holds Split-* folders but no Split-eval; pass the "
                                "held-out split's folder")
        root = root / "Split-eval"
    try:
        return records.tfrecord_files(root)
    except FileNotFoundError as error:
        raise EvalDataError(str(error)) from None


def slices_from_tfrecords(data: str | os.PathLike, image_size: int, summary: DataSummary
                          ) -> Iterator[tuple[np.ndarray, int, str]]:
    files = eval_split_files(data)
    summary.files = len(files)
    for path in files:
        try:
            for index, record in enumerate(records.read_tfrecords(path)):
                yield _parse_slice(record, image_size, f"{path}: record {index}")
        except records.RecordError as error:
            raise EvalDataError(str(error)) from None


def _parse_slice(record: bytes, image_size: int, where: str) -> tuple[np.ndarray, int, str]:
    try:
        example = records.decode_example(record)
    except records.RecordError:
        raise EvalDataError(f"{where}: not a serialized tf.Example") from None

    def one(name: str, kind: type, kind_name: str):
        if name not in example:
            raise EvalDataError(f"{where}: feature '{name}' is missing")
        values = [value for value in example[name] if isinstance(value, kind)]
        if len(values) != 1 or len(example[name]) != 1:
            raise EvalDataError(f"{where}: feature '{name}' must hold one {kind_name} value, "
                                f"found {len(values)}")
        return values[0]

    raw = one(features.IMAGE, bytes, "bytes_list")
    if len(raw) != image_size * image_size:
        raise EvalDataError(f"{where}: feature '{features.IMAGE}' has {len(raw)} bytes, "
                            f"expected {image_size}x{image_size}x1 = {image_size ** 2} for "
                            "the served model's input size")
    label = one(features.LABEL, int, "int64_list")
    if label not in (0, 1):
        raise EvalDataError(f"{where}: feature '{features.LABEL}' must be 0 or 1")
    study_id = one(features.STUDY_ID, bytes, "bytes_list").decode("utf-8", "replace")
    image = np.frombuffer(raw, dtype=np.uint8).reshape(image_size, image_size, 1)
    return image, int(label), study_id


# ------------------------------------------------------------------------------ DICOM
def slices_from_dicom(folder: str | os.PathLike, labels_path: str | os.PathLike,
                      image_size: int, summary: DataSummary,
                      salt: str = features.DEFAULT_SALT
                      ) -> Iterator[tuple[np.ndarray, int, str]]:
    """Every kept slice of a labelled study below `folder`; others are counted as skipped,
    by the reject codes ingest writes to its ledger (components.dicom.slices, same check)."""
    from components.dicom.slices import expand_paths, files_to_slices, labelled_studies_only
    from components.dicom.labels import LabelsError, read_labels

    if not Path(folder).is_dir():
        raise EvalDataError(f"{folder}: not a folder (a DICOM held-out set is a folder with "
                            "a --labels file)")
    try:
        study_labels = read_labels(os.fspath(labels_path), salt).labels
    except LabelsError as error:
        raise EvalDataError(str(error)) from None
    inputs = expand_paths([folder])
    summary.files = len(inputs)
    for file in files_to_slices(inputs, image_size=image_size,  # one file at a time
                                study_check=labelled_studies_only(study_labels, salt)):
        summary.skipped.update(rejection.reason for rejection in file.rejections)
        if file.slices:
            study_id = features.hash_uid(file.study_uid, salt)
            for item in file.slices:
                yield item.image, study_labels[study_id], study_id


# ------------------------------------------------------------------------------ batching
def open_eval_data(data: str | os.PathLike, image_size: int, *,
                   labels: str | os.PathLike | None = None
                   ) -> tuple[Iterator[tuple[np.ndarray, int, str]], DataSummary]:
    """`--data` with `--labels` is a DICOM folder; without, TFRecords (file or folder)."""
    if labels is not None:
        summary = DataSummary("dicom")
        return slices_from_dicom(data, labels, image_size, summary), summary
    summary = DataSummary("tfrecords")
    return slices_from_tfrecords(data, image_size, summary), summary


def batched(slices: Iterable[tuple[np.ndarray, int, str]], batch_size: int,
            summary: DataSummary, max_slices: int | None = None) -> Iterator[SliceBatch]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    study_ids: list[str] = []
    for image, label, study_id in slices:
        if max_slices is not None and summary.slices >= max_slices:
            break
        images.append(image)
        labels.append(label)
        study_ids.append(study_id)
        summary.slices += 1
        if len(images) == batch_size:
            yield SliceBatch(np.stack(images), np.asarray(labels, np.int64), tuple(study_ids))
            images, labels, study_ids = [], [], []
    if images:
        yield SliceBatch(np.stack(images), np.asarray(labels, np.int64), tuple(study_ids))
