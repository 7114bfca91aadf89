"""Decide, before any pixel is drawn, what every study and series of the export will be.

All choices come from one `np.random.default_rng(seed)` consumed in a fixed order, so a seed
names exactly one dataset (UIDs included). Variety (transfer syntax, matrix, MONOCHROME1,
rescale, multi-frame, tilt) is dealt out *per class* so that every value appears and none of
them can stand in for the label: a model must find the lesions, not the encoding.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np

from components.synthetic.dicom_files import PixelEncoding, SeriesIdentity
from components.synthetic.settings import (
    MATRIX_SIZES,
    PLANTED_INSTITUTIONS,
    PLANTED_PATIENTS,
    RESCALES,
    PlantedPatient,
    ScannerProfile,
    SynthSettings,
)

T = TypeVar("T")

AXIAL, SAGITTAL, CORONAL, LOCALIZER = "axial", "sagittal", "coronal", "localizer"
LOCALIZER_KINDS = (SAGITTAL, CORONAL, AXIAL)   # frame order of the 3-plane localizer
_SERIES_NUMBERS = {LOCALIZER: 1, SAGITTAL: 2, AXIAL: 3, CORONAL: 4}
_DESCRIPTIONS = {LOCALIZER: "3-Plane Loc", SAGITTAL: "T2 SAG", AXIAL: "FLAIR AX",
                 CORONAL: "FLAIR COR"}


@dataclass(frozen=True)
class SeriesPlan:
    """One image series: what it shows and how its files are encoded."""

    kind: str                     # axial | sagittal | coronal | localizer
    identity: SeriesIdentity
    encoding: PixelEncoding
    rows: int
    cols: int
    frames: int                   # images in the series
    multiframe: bool              # one Enhanced MR file instead of one file per image
    shared_orientation: bool      # Enhanced MR: orientation in the shared functional groups
    tilt_deg: float
    fov_mm: float
    instance_uids: tuple[str, ...]   # one per file

    @property
    def files(self) -> int:
        return 1 if self.multiframe else self.frames


@dataclass(frozen=True)
class StudyPlan:
    """One study: its label (None = missing from the labels file) and its series."""

    study_uid: str
    label: int | None
    has_lesions: bool
    scanner: ScannerProfile
    patient: PlantedPatient
    institution: str
    series: tuple[SeriesPlan, ...]
    pixel_seed: int               # seeds this study's own generator: anatomy and noise

    def axial_frames(self) -> int:
        """Axial images the preprocessing should keep (a localizer has one axial frame)."""
        return sum(s.frames if s.kind == AXIAL else (s.kind == LOCALIZER) for s in self.series)


def new_uid(rng: np.random.Generator) -> str:
    """A UUID-derived UID (2.25 root), drawn from the seed instead of the clock."""
    return "2.25." + str(int.from_bytes(rng.bytes(16), "big"))


def spread(values: Sequence[T], count: int, rng: np.random.Generator) -> list[T]:
    """`count` picks that use every value before any repeats, in random order."""
    picks = [values[i % len(values)] for i in range(count)]
    return [picks[int(i)] for i in rng.permutation(count)]


def plan_studies(settings: SynthSettings, rng: np.random.Generator) -> list[StudyPlan]:
    """The labelled studies: balanced classes, every used scanner holding both classes."""
    count = settings.studies
    labels = [index % 2 for index in range(count)]
    choices: dict[str, list] = {}
    for label in (0, 1):
        members = [i for i in range(count) if labels[i] == label]
        for name, values in _variety_menu(settings).items():
            picks = spread(values, len(members), rng)
            for member, pick in zip(members, picks):
                choices.setdefault(name, [None] * count)[member] = pick
    studies = []
    for index in range(count):
        scanner_index = (index // 2) % settings.scanner_count
        picks = {name: values[index] for name, values in choices.items()}
        studies.append(_plan_study(settings, rng, index, labels[index], scanner_index, picks,
                                   settings.slices_per_series))
    return studies


def _variety_menu(settings: SynthSettings) -> dict[str, Sequence]:
    """Per-study choices dealt out evenly within each class."""
    return {
        "transfer_syntax": settings.transfer_syntaxes,
        "matrix": MATRIX_SIZES,
        "monochrome1": (False, True, False),
        "rescale": RESCALES,
        "multiframe": (False, True, False),
        "shared_orientation": (False, True),
        "tilt_deg": (0.0, 7.0, 0.0, -11.0),
        "coronal": (True, False),
        "localizer": (False, False, True),
    }


def _plan_study(settings: SynthSettings, rng: np.random.Generator, index: int,
                label: int | None, scanner_index: int, picks: dict,
                axial_frames: int) -> StudyPlan:
    scanner = settings.scanners[scanner_index]
    study_uid = new_uid(rng)
    patient = PLANTED_PATIENTS[index % len(PLANTED_PATIENTS)]
    institution = PLANTED_INSTITUTIONS[scanner_index % len(PLANTED_INSTITUTIONS)]
    frame_of_reference = new_uid(rng)

    def series(kind: str, frames: int, **overrides) -> SeriesPlan:
        identity = SeriesIdentity(study_uid, new_uid(rng), frame_of_reference,
                                  _SERIES_NUMBERS[kind], _DESCRIPTIONS[kind], patient,
                                  institution, scanner)
        rows, cols = overrides.pop("matrix", MATRIX_SIZES[int(rng.integers(len(MATRIX_SIZES)))])
        encoding = PixelEncoding(
            overrides.pop("transfer_syntax", settings.transfer_syntaxes[
                int(rng.integers(len(settings.transfer_syntaxes)))]),
            overrides.pop("monochrome1", bool(rng.random() < 0.25)),
            overrides.pop("rescale", RESCALES[int(rng.integers(len(RESCALES)))]),
            scanner.signed)
        multiframe = overrides.pop("multiframe", False)
        plan = SeriesPlan(kind, identity, encoding, rows, cols, frames, multiframe,
                          shared_orientation=False, tilt_deg=0.0,
                          fov_mm=float(rng.uniform(*settings.fov_mm)), instance_uids=())
        plan = replace(plan, **overrides)
        return replace(plan, instance_uids=tuple(new_uid(rng) for _ in range(plan.files)))

    planned = []
    if picks.get("localizer", False):
        planned.append(series(LOCALIZER, 3, matrix=(256, 256), multiframe=True))
    if picks.get("sagittal", True):
        planned.append(series(SAGITTAL, settings.non_axial_slices))
    planned.append(series(AXIAL, axial_frames, **{
        name: picks[name] for name in ("transfer_syntax", "matrix", "monochrome1", "rescale",
                                       "multiframe", "shared_orientation", "tilt_deg")
        if name in picks}))
    if picks.get("coronal", False):
        planned.append(series(CORONAL, settings.non_axial_slices))
    has_lesions = bool(label) if label is not None else bool(rng.random() < 0.5)
    return StudyPlan(study_uid, label, has_lesions, scanner, patient, institution,
                     tuple(planned), int(rng.integers(2**63 - 1)))


def plan_unlabeled_study(settings: SynthSettings, rng: np.random.Generator,
                         index: int) -> StudyPlan:
    """A study folder whose UID is missing from the labels file: clean axial files only,
    so each of its files is rejected for exactly one reason (unlabeled_study)."""
    scanner_index = int(rng.integers(settings.scanner_count))
    picks = {"sagittal": False, "localizer": False, "coronal": False}
    return _plan_study(settings, rng, index, None, scanner_index, picks,
                       settings.unlabeled_slices)
