"""ROC math shared by the TFMA study metric and the evaluation report (pure numpy).

One implementation, so the number that gates the blessing and the number printed in the
report can never disagree. AUC is the exact Mann-Whitney statistic (ties count one half),
not a bucketed approximation: at study level there are few points and every one matters.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np


class UndefinedAUCWarning(RuntimeWarning):
    """AUC asked of data holding only one class: the result is NaN, on purpose."""


@dataclass(frozen=True)
class StudyScores:
    """Per-study aggregate of slice predictions: the study's score is its mean slice probability."""

    study_ids: tuple[str, ...]
    mean_probability: np.ndarray  # float64 [n_studies]
    label: np.ndarray             # int64 [n_studies], 0/1
    slice_count: np.ndarray       # int64 [n_studies]


def _as_binary_labels(labels: Sequence[int] | np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = sorted({float(v) for v in np.unique(labels) if v not in (0, 1)})[:5]
        raise ValueError(f"{what}: labels must be 0 or 1, found {bad}")
    return labels.astype(np.int64)


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share the mean of their ranks (gives ties a weight of 1/2)."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])
    ends = np.r_[starts[1:], len(values)]
    mean_rank_per_run = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank_per_run, ends - starts)
    return ranks


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
            *, what: str = "AUC") -> float:
    """Exact ROC AUC = P(score of a positive > score of a negative) + 0.5 * P(tie).

    Returns NaN with an `UndefinedAUCWarning` when either class is absent: an AUC of a
    single class does not exist, and a made-up 0.5 or 1.0 could bless a model by accident.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = _as_binary_labels(labels, what)
    if scores.shape != labels.shape:
        raise ValueError(f"{what}: {scores.shape[0]} scores but {labels.shape[0]} labels")
    if np.isnan(scores).any():
        raise ValueError(f"{what}: scores contain NaN")
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        warnings.warn(f"{what} is undefined: the data holds {n_pos} positive and {n_neg} "
                      "negative cases (both classes are needed); reporting NaN",
                      UndefinedAUCWarning, stacklevel=2)
        return float("nan")
    ranks = _average_ranks(scores)
    u_statistic = ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def roc_curve(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, threshold) at every distinct score.

    Points run from (0, 0) (threshold +inf: nothing positive) to (1, 1). The trapezoid
    area under these points equals `roc_auc` exactly, ties included.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = _as_binary_labels(labels, "ROC curve")
    n_pos = max(int(labels.sum()), 1)
    n_neg = max(int(labels.size - labels.sum()), 1)
    order = np.argsort(-scores, kind="mergesort")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_run = np.r_[sorted_scores[1:] != sorted_scores[:-1], True]
    true_pos = np.cumsum(sorted_labels)[last_of_run]
    false_pos = np.cumsum(1 - sorted_labels)[last_of_run]
    fpr = np.r_[0.0, false_pos / n_neg]
    tpr = np.r_[0.0, true_pos / n_pos]
    thresholds = np.r_[np.inf, sorted_scores[last_of_run]]
    return fpr, tpr, thresholds


def confusion_counts(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                     threshold: float) -> dict[str, int]:
    """tp/fp/tn/fn with `score > threshold` called positive (TFMA's convention)."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = _as_binary_labels(labels, "confusion matrix")
    predicted = scores > threshold
    return {
        "tp": int(np.sum(predicted & (labels == 1))),
        "fp": int(np.sum(predicted & (labels == 0))),
        "tn": int(np.sum(~predicted & (labels == 0))),
        "fn": int(np.sum(~predicted & (labels == 1))),
    }


class StudyTotals:
    """Running sum of slice probabilities per study: mergeable, so Beam can combine it in parts.

    Raises when one study's slices carry different labels: labels are per study, so a
    mismatch means the examples are corrupt and any study metric would be meaningless.
    """

    __slots__ = ("by_study",)

    def __init__(self) -> None:
        self.by_study: dict[str, list] = {}  # study_id -> [sum of probabilities, slices, label]

    def add(self, study_id: str, probability: float, label: int, slices: int = 1) -> None:
        entry = self.by_study.get(study_id)
        if entry is None:
            self.by_study[study_id] = [float(probability), int(slices), int(label)]
            return
        if entry[2] != int(label):
            raise ValueError(f"study_id {study_id}: slices carry different labels "
                             f"({entry[2]} and {int(label)}); the label must be per study")
        entry[0] += float(probability)
        entry[1] += int(slices)

    def merge(self, other: "StudyTotals") -> None:
        for study_id, (probability_sum, slices, label) in other.by_study.items():
            self.add(study_id, probability_sum, label, slices)

    def scores(self) -> StudyScores:
        ordered = sorted(self.by_study)
        totals = [self.by_study[s] for s in ordered]
        return StudyScores(
            study_ids=tuple(ordered),
            mean_probability=np.array([t[0] / t[1] for t in totals], dtype=np.float64),
            label=np.array([t[2] for t in totals], dtype=np.int64),
            slice_count=np.array([t[1] for t in totals], dtype=np.int64),
        )


def aggregate_by_study(study_ids: Iterable[str], probabilities: Iterable[float],
                       labels: Iterable[int]) -> StudyScores:
    """Mean slice probability per study (the documented study-level prediction)."""
    totals = StudyTotals()
    for study_id, probability, label in zip(study_ids, probabilities, labels, strict=True):
        totals.add(study_id, probability, label)
    return totals.scores()
