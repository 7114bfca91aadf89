"""Files and folders -> preprocessed slices -> probabilities, per slice and per study.

Files become slices through components.dicom.slices, the loop DicomExampleGen and the web page
use, at the image size the served model declares in its metadata: the very code that made the
training data, with the same reject codes. Slices are grouped into studies by
components.dicom.studies: a study is its StudyInstanceUID, wherever its files lie; only files
without one (JPEG/PNG) fall back to the folder given (loose ones form one group). A study's
probability is the one of training and evaluation, the mean of its slices'
(components.dicom.metrics.aggregate_by_study). Rejected files and frames are returned with
their reason, never silently dropped.

- `predict_paths`: one model version (the server's default, a label or a version) scores all.
- `predict_routed`: a router (serving.rollout.traffic.CanaryRouter) picks the version of each
  study; one report per study.
This module calls the gRPC client; the client knows nothing of files.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from components.dicom.metrics import aggregate_by_study
from components.dicom.slices import FileSlices, expand_paths, files_to_slices
from components.dicom.studies import group_by_study, study_key

if TYPE_CHECKING:
    from serving.client.model_client import ModelClient, ModelMetadata, PredictResult


@dataclass(frozen=True)
class SlicePrediction:
    path: str               # the file, as the caller named it (or below the folder given)
    frame_index: int
    orientation: str
    instance_number: int | None
    probability: float
    logit: float | None
    study: str              # its study's key (components.dicom.studies.study_key)


@dataclass(frozen=True)
class FileRejection:
    path: str
    reason: str             # a components.dicom.rejections REJECT_REASONS code
    detail: str
    frame_index: int | None
    study: str | None       # its study's key; None when unknown (not an image, unreadable)


@dataclass(frozen=True)
class StudyPrediction:
    study: str              # study_key: a salted hash of the StudyInstanceUID, or of the
                            # pixels of a JPEG/PNG group; never the raw UID
    path: str | None        # the folder given that holds all its files, if one does
    probability: float | None  # mean over its slices; None when no slice survived
    slice_count: int
    rejected_count: int
    above_threshold: bool | None = None  # probability > the answering model's threshold


@dataclass
class PathsPrediction:
    model_name: str
    model_version: int
    image_size: int
    slices: list[SlicePrediction] = field(default_factory=list)
    rejections: list[FileRejection] = field(default_factory=list)
    studies: list[StudyPrediction] = field(default_factory=list)
    routed_to: str | None = None  # stable | canary when a router chose the version
    fell_back: bool = False       # routed to canary, answered by stable
    # The answering model's operating threshold (source "model"), or contract's fallback for
    # models exported without one (source "fallback"); None when nothing was scored.
    threshold: float | None = None
    threshold_source: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class InputStudy:
    """One study of the inputs: its key and its files (kept slices and rejections)."""

    key: str
    files: list[FileSlices]

    @property
    def images(self) -> np.ndarray:
        return stack_images(self.files)

    @property
    def folder(self) -> str | None:
        containers = {file.input.container for file in self.files}
        return containers.pop() if len(containers) == 1 else None


class StudyRouter(Protocol):
    """What predict_routed needs of serving.rollout.traffic.CanaryRouter."""

    stable_label: str | None

    def predict_study(self, images: np.ndarray, study_key: str):
        """-> an answer with `label`, `result` (a PredictResult) and `fell_back`."""


def read_studies(paths, image_size: int) -> tuple[list[FileSlices], list[InputStudy]]:
    """Every input file in order, and the studies they form, in the order they first appear."""
    files = list(files_to_slices(expand_paths(paths), image_size=image_size))
    groups = group_by_study(files, lambda file: file.study)
    return files, [InputStudy(study_key(ref, (item.image for file in members
                                              for item in file.slices)), members)
                   for ref, members in groups.items()]


def stack_images(files: list[FileSlices]) -> np.ndarray:
    """The files' kept slices as the model's batch, uint8 [N, S, S, 1], in file order."""
    images = [item.image for file in files for item in file.slices]
    return np.stack(images) if images else np.zeros((0, 0, 0, 1), np.uint8)


def predict_paths(client: "ModelClient", paths, *, label: str | None = None,
                  version: int | None = None) -> PathsPrediction:
    """Every slice scored by one version: the one whose metadata gave the input size."""
    metadata = client.metadata(label=label, version=version)
    files, studies = read_studies([os.fspath(p) for p in paths], metadata.image_size)
    images = stack_images(files)
    result = client.predict_tensors(images, version=metadata.model_version) if len(images) \
        else None
    return build_report(metadata, files, studies, result)


def predict_routed(client: "ModelClient", paths, router: StudyRouter) -> list[PathsPrediction]:
    """One report per study, each answered by the version the router chose for it; files
    of no study (their rejections) come last, in a report of their own."""
    metadata = client.metadata(label=router.stable_label)
    files, studies = read_studies([os.fspath(p) for p in paths], metadata.image_size)
    reports = []
    for study in studies:
        if not any(file.slices for file in study.files):
            reports.append(build_report(metadata, study.files, [study], None))
            continue
        answer = router.predict_study(study.images, study.key)
        report = build_report(metadata, study.files, [study], answer.result)
        report.routed_to, report.fell_back = answer.label, answer.fell_back
        reports.append(report)
    unassigned = [file for file in files if file.study is None]
    if unassigned:
        reports.append(build_report(metadata, unassigned, [], None))
    return reports


def build_report(metadata: "ModelMetadata", files: list[FileSlices], studies: list[InputStudy],
                 result: "PredictResult | None") -> PathsPrediction:
    """`result` holds one answer per kept slice of `files`, in file order."""
    report = PathsPrediction(metadata.model_name,
                             metadata.model_version if result is None else result.model_version,
                             metadata.image_size)
    if result is not None:
        report.threshold, report.threshold_source = (result.decision_threshold,
                                                     result.threshold_source)
    key_of = {id(file): study.key for study in studies for file in study.files}
    for file in files:
        key = key_of.get(id(file))
        for rejection in file.rejections:
            report.rejections.append(FileRejection(file.input.name, rejection.reason,
                                                   rejection.detail, rejection.frame_index, key))
        for item in file.slices:
            index = len(report.slices)
            report.slices.append(SlicePrediction(
                file.input.name, item.frame_index, item.orientation, item.instance_number,
                float(result.probabilities[index]),
                None if result.logits is None else float(result.logits[index]), key))
    report.studies = study_predictions(report, studies)
    return report


def study_predictions(report: PathsPrediction,
                      studies: list[InputStudy]) -> list[StudyPrediction]:
    scores = aggregate_by_study([s.study for s in report.slices],
                                [s.probability for s in report.slices])
    mean_of = dict(zip(scores.study_ids, scores.mean_probability.tolist()))
    return [StudyPrediction(study.key, study.folder, mean_of.get(study.key),
                            sum(s.study == study.key for s in report.slices),
                            sum(r.study == study.key for r in report.rejections),
                            None if mean_of.get(study.key) is None or report.threshold is None
                            else bool(mean_of[study.key] > report.threshold))
            for study in studies]
