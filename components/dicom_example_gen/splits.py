"""Study-level, label-stratified, deterministic train/eval(/test) assignment.

The seed split per slice and leaked 165 of 168 studies into both sides. Here a whole study
goes to one split, chosen before any DICOM is read: each class's studies are ordered by their
salted hash and cut by the ratios (counted in studies, not slices). The same labels file and
salt always give the same assignment, on any runner, whatever order files are read in.
"""
from __future__ import annotations

import json
import math
from typing import Iterable, Mapping, Union

from components.dicom.labels import LABEL_VALUES

TRAIN, EVAL, TEST = "train", "eval", "test"
ALLOWED_SPLITS = (TRAIN, EVAL, TEST)
# Counted in studies. 30 % eval: the eval split is what blesses a model, and a study-level AUC
# needs every study it can get.
DEFAULT_SPLIT_RATIOS: dict[str, float] = {TRAIN: 0.7, EVAL: 0.3}
SplitRatios = Union[Mapping[str, float], Iterable[tuple[str, float]]]


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


def ratios_to_json(ratios: SplitRatios) -> str:
    """The component's `split_ratios` execution property: validated, normalised, canonical
    order, so equal ratios give equal text (and the same cache key)."""
    return json.dumps(validate_ratios(dict(ratios)))


def ratios_from_json(text: str) -> dict[str, float]:
    """The inverse of ratios_to_json, validated again: the property may come from a compiled spec."""
    ratios = json.loads(text)
    if not isinstance(ratios, dict):
        raise ValueError(f"split_ratios must be a JSON object of split name -> ratio, got {text}")
    return validate_ratios(ratios)


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


class EmptySplitError(ValueError):
    """A split was asked for but no study with a usable slice was left for it."""


def assign_usable_studies(study_labels: Mapping[str, int], usable_studies: Iterable[str],
                          ratios: Mapping[str, float]) -> dict[str, str]:
    """Splits for the studies that gave at least one usable slice, and only those.

    Assigned after reading, not from the labels file alone: a study whose files were all
    rejected would otherwise take a split's place and could leave it empty (the issue's
    real-scanner corpus: exit 0 with an empty eval split). Deterministic as assign_splits.
    """
    return assign_splits({study: study_labels[study] for study in usable_studies}, ratios)


def require_every_split(assignment: Mapping[str, str], ratios: Mapping[str, float],
                        labelled_studies: int) -> None:
    """Raises EmptySplitError, giving how many studies each split got, when one got none."""
    got = {name: 0 for name in validate_ratios(ratios)}
    for split in assignment.values():
        got[split] += 1
    empty = [name for name, count in got.items() if count == 0]
    if empty:
        raise EmptySplitError(
            f"split {' and '.join(empty)} got no study: studies per split "
            f"{', '.join(f'{name} {count}' for name, count in got.items())}; only "
            f"{len(assignment)} of {labelled_studies} labelled studies gave a usable slice "
            "(see the ledger); add studies or ask for fewer splits (--splits)")
