"""Files and folders -> preprocessed slices -> probabilities, per slice and per study.

A folder is one study (all files below it, in name order) and gets the study-level probability
used in training and evaluation: the mean of its slices' probabilities. A single file gives one
result per kept frame. Preprocessing is `components.dicom.preprocessing.preprocess_path` at the image
size the served model declares in its metadata: the very code that made the training data.
Rejected files and frames are returned with their reason, never silently dropped.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from components.dicom.preprocessing import PreprocessedSlice, Rejection, preprocess_path

if TYPE_CHECKING:
    from serving.client.model_client import ModelClient


@dataclass(frozen=True)
class SlicePrediction:
    path: str               # the file, as the caller named it (or below the folder given)
    frame_index: int
    orientation: str
    instance_number: int | None
    probability: float
    logit: float | None
    study: str | None       # the folder given, when the file came from one


@dataclass(frozen=True)
class FileRejection:
    path: str
    reason: str             # a components.dicom.preprocessing REJECT_REASONS code
    detail: str
    frame_index: int | None
    study: str | None


@dataclass(frozen=True)
class StudyPrediction:
    path: str               # the folder given
    probability: float | None  # mean over its slices; None when no slice survived
    slice_count: int
    rejected_count: int


@dataclass
class PathsPrediction:
    model_name: str
    model_version: int
    image_size: int
    slices: list[SlicePrediction] = field(default_factory=list)
    rejections: list[FileRejection] = field(default_factory=list)
    studies: list[StudyPrediction] = field(default_factory=list)

    def to_dict(self) -> dict:
        from dataclasses import asdict
        return asdict(self)


@dataclass(frozen=True)
class _Item:
    path: str
    study: str | None


def expand_paths(paths: list[str]) -> list[_Item]:
    """Files stay files; a folder becomes all regular, non-hidden files below it."""
    items: list[_Item] = []
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                items.extend(_Item(str(Path(dirpath) / name), given)
                             for name in sorted(filenames) if not name.startswith("."))
        else:
            items.append(_Item(given, None))
    return items


def preprocess_items(items: list[_Item], image_size: int
                     ) -> tuple[list[tuple[_Item, PreprocessedSlice]], list[FileRejection]]:
    kept, rejected = [], []
    for item in items:
        try:
            outcomes = preprocess_path(item.path, image_size=image_size)
        except OSError as error:
            outcomes = [Rejection("unreadable_file", error.strerror or type(error).__name__)]
        for outcome in outcomes:
            if isinstance(outcome, Rejection):
                rejected.append(FileRejection(item.path, outcome.reason, outcome.detail,
                                              outcome.frame_index, item.study))
            else:
                kept.append((item, outcome))
    return kept, rejected


def predict_paths(client: "ModelClient", paths, *, label: str | None = None,
                  version: int | None = None) -> PathsPrediction:
    paths = [str(p) for p in paths]
    metadata = client.metadata(label=label, version=version)
    kept, rejected = preprocess_items(expand_paths(paths), metadata.image_size)
    report = PathsPrediction(metadata.model_name, metadata.model_version, metadata.image_size,
                             rejections=rejected)
    if kept:
        images = np.stack([slice_.image for _, slice_ in kept])
        # the version that described the input size also scores every slice
        result = client.predict_tensors(images, version=metadata.model_version)
        report.model_version = result.model_version
        for index, (item, slice_) in enumerate(kept):
            report.slices.append(SlicePrediction(
                item.path, slice_.frame_index, slice_.orientation, slice_.instance_number,
                float(result.probabilities[index]),
                None if result.logits is None else float(result.logits[index]), item.study))
    report.studies = _studies(paths, report)
    return report


def _studies(paths: list[str], report: PathsPrediction) -> list[StudyPrediction]:
    studies = []
    for given in paths:
        if not Path(given).is_dir():
            continue
        probabilities = [s.probability for s in report.slices if s.study == given]
        rejected = sum(r.study == given for r in report.rejections)
        studies.append(StudyPrediction(
            given, float(np.mean(probabilities)) if probabilities else None,
            len(probabilities), rejected))
    return studies
