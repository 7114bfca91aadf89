"""Study-level, label-stratified, deterministic train/eval(/test) assignment.

The seed split per slice and leaked 165 of 168 studies into both sides. Here a whole study
goes to one split, chosen before any DICOM is read: each class's studies are ordered by their
salted hash and cut by the ratios (counted in studies, not slices). The same labels file and
salt always give the same assignment, on any runner, whatever order files are read in.
"""
from __future__ import annotations

import math
from typing import Mapping

from tfx.proto import example_gen_pb2

from components.dicom_example_gen.labels import LABEL_VALUES

TRAIN, EVAL, TEST = "train", "eval", "test"
ALLOWED_SPLITS = (TRAIN, EVAL, TEST)
DEFAULT_SPLIT_RATIOS: dict[str, float] = {TRAIN: 0.8, EVAL: 0.2}
_BUCKET_RESOLUTION = 1000  # ratios travel as TFX hash_buckets, in thousandths


def validate_ratios(ratios: Mapping[str, float]) -> dict[str, float]:
    """Normalised ratios in canonical order (train, eval, test); raises ValueError if unusable."""
    unknown = sorted(set(ratios) - set(ALLOWED_SPLITS))
    if unknown:
        raise ValueError(f"unknown split name(s) {unknown}; allowed: {list(ALLOWED_SPLITS)}")
    for required in (TRAIN, EVAL):
        if ratios.get(required, 0) <= 0:
            raise ValueError(f"split ratios need a positive '{required}' ratio, got {dict(ratios)}")
    if any(not math.isfinite(value) or value < 0 for value in ratios.values()):
        raise ValueError(f"split ratios must be finite and >= 0, got {dict(ratios)}")
    total = float(sum(ratios.values()))
    return {name: ratios[name] / total for name in ALLOWED_SPLITS if ratios.get(name, 0) > 0}


def ratios_to_output_config(ratios: Mapping[str, float]) -> example_gen_pb2.Output:
    """Ratios as a standard ExampleGen Output config, so split names reach the Examples artifact."""
    normalised = validate_ratios(ratios)
    return example_gen_pb2.Output(split_config=example_gen_pb2.SplitConfig(splits=[
        example_gen_pb2.SplitConfig.Split(
            name=name, hash_buckets=max(1, round(ratio * _BUCKET_RESOLUTION)))
        for name, ratio in normalised.items()
    ]))


def ratios_from_output_config(output_config: example_gen_pb2.Output) -> dict[str, float]:
    """The inverse: hash_buckets are read as relative weights, as TFX's ExampleGen does."""
    splits = output_config.split_config.splits
    if not splits:
        raise ValueError("DicomExampleGen needs output_config.split_config.splits "
                         "(train and eval, optionally test); it does not use input splits")
    return validate_ratios({split.name: float(split.hash_buckets) for split in splits})


def split_counts(num_studies: int, ratios: Mapping[str, float]) -> dict[str, int]:
    """How many of one class's studies go to each split.

    Largest-remainder rounding, then each non-train split gets at least one study when the
    class has enough (so eval can score both classes), taken from the largest split.
    """
    exact = {name: num_studies * ratio for name, ratio in ratios.items()}
    counts = {name: math.floor(value) for name, value in exact.items()}
    by_remainder = sorted(ratios, key=lambda name: (counts[name] - exact[name], list(ratios).index(name)))
    for name in by_remainder[: num_studies - sum(counts.values())]:
        counts[name] += 1
    for name in [split for split in ratios if split != TRAIN]:
        if counts[name] == 0 and num_studies >= len(ratios):
            donor = max(counts, key=lambda split: (counts[split], split == TRAIN))
            counts[donor] -= 1
            counts[name] += 1
    return counts


def assign_splits(study_labels: Mapping[str, int], ratios: Mapping[str, float]) -> dict[str, str]:
    """study_id (salted hash) -> split name, stratified by label."""
    normalised = validate_ratios(ratios)
    assignment: dict[str, str] = {}
    for label in LABEL_VALUES:
        studies = sorted(study for study, value in study_labels.items() if value == label)
        counts = split_counts(len(studies), normalised)
        start = 0
        for name in normalised:
            for study in studies[start:start + counts[name]]:
                assignment[study] = name
            start += counts[name]
    return assignment
