"""ROC metrics shared by the TFMA study metric, the evaluation report and the rollout analysis.

scikit-learn computes them; this module adds only what scikit-learn leaves to the caller:
- inputs are checked with messages that name the metric asked for (`what`);
- the NaN policy: the AUC of a single class does not exist, so it is NaN with an
  `UndefinedAUCWarning` (scikit-learn raises instead), never a made-up 0.5 or 1.0 that could
  bless a model by accident.
One implementation, so the number that gates the blessing and the number printed in the report
can never disagree. The AUC is exact (ties count one half), not TFMA's bucketed approximation:
at study level there are few points and every one matters.

scikit-learn is imported on first use: it takes seconds to load, and light clients (the
rollout CLI) import this module just to build their `--help`.
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
    label: np.ndarray | None      # int64 [n_studies], 0/1; None for unlabelled predictions
    slice_count: np.ndarray       # int64 [n_studies]


def _checked(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
             what: str) -> tuple[np.ndarray, np.ndarray]:
    """(float64 scores, int64 0/1 labels), refusing what scikit-learn would misread or
    reject with a message that does not say which metric failed."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels)
    if labels.size and not np.isin(labels, (0, 1)).all():
        bad = sorted({float(v) for v in np.unique(labels) if v not in (0, 1)})[:5]
        raise ValueError(f"{what}: labels must be 0 or 1, found {bad}")
    if scores.shape != labels.shape:
        raise ValueError(f"{what}: {scores.shape[0]} scores but {labels.shape[0]} labels")
    if np.isnan(scores).any():
        raise ValueError(f"{what}: scores contain NaN")
    return scores, labels.astype(np.int64)


def _both_classes(labels: np.ndarray, what: str) -> bool:
    """The NaN policy: False, with an `UndefinedAUCWarning` for the caller's caller, when a
    class is absent."""
    n_pos = int(labels.sum())
    n_neg = int(labels.size - n_pos)
    if n_pos and n_neg:
        return True
    warnings.warn(f"{what} is undefined: the data holds {n_pos} positive and {n_neg} "
                  "negative cases (both classes are needed); reporting NaN",
                  UndefinedAUCWarning, stacklevel=3)
    return False


def roc_auc(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
            *, what: str = "AUC") -> float:
    """ROC AUC = P(score of a positive > score of a negative) + 0.5 * P(tie); NaN (with an
    `UndefinedAUCWarning`) when either class is absent."""
    scores, labels = _checked(scores, labels, what)
    if not _both_classes(labels, what):
        return float("nan")
    from sklearn.metrics import roc_auc_score
    return float(roc_auc_score(labels, scores))


def roc_curve(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
              *, what: str = "ROC curve") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate, threshold) at every distinct score.

    Points run from (0, 0) (threshold +inf: nothing positive) to (1, 1); no point is dropped,
    so the trapezoid area under them equals `roc_auc`. With one class the missing class's rate
    is NaN, with an `UndefinedAUCWarning`.
    """
    scores, labels = _checked(scores, labels, what)
    from sklearn.exceptions import UndefinedMetricWarning
    from sklearn.metrics import roc_curve as sklearn_roc_curve
    _both_classes(labels, what)
    with warnings.catch_warnings():  # the NaN policy above has already warned
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        fpr, tpr, thresholds = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    return fpr, tpr, thresholds


def confusion_counts(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                     threshold: float) -> dict[str, int]:
    """tp/fp/tn/fn with `score > threshold` called positive (TFMA's convention)."""
    scores, labels = _checked(scores, labels, "confusion matrix")
    from sklearn.metrics import confusion_matrix
    predicted = (scores > threshold).astype(np.int64)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    return {"tp": int(tp), "fp": int(fp), "tn": int(tn), "fn": int(fn)}


class StudyTotals:
    """Running sum of slice probabilities per study: mergeable, so Beam can combine it in parts.

    Raises when one study's slices carry different labels: labels are per study, so a
    mismatch means the examples are corrupt and any study metric would be meaningless.
    """

    __slots__ = ("by_study",)

    def __init__(self) -> None:
        self.by_study: dict[str, list] = {}  # study_id -> [sum of probabilities, slices, label]

    def add(self, study_id: str, probability: float, label: int | None, slices: int = 1) -> None:
        label = None if label is None else int(label)
        entry = self.by_study.get(study_id)
        if entry is None:
            self.by_study[study_id] = [float(probability), int(slices), label]
            return
        if entry[2] != label:
            raise ValueError(f"study_id {study_id}: slices carry different labels "
                             f"({entry[2]} and {label}); the label must be per study")
        entry[0] += float(probability)
        entry[1] += int(slices)

    def merge(self, other: "StudyTotals") -> None:
        for study_id, (probability_sum, slices, label) in other.by_study.items():
            self.add(study_id, probability_sum, label, slices)

    def scores(self) -> StudyScores:
        ordered = sorted(self.by_study)
        totals = [self.by_study[s] for s in ordered]
        labels = [t[2] for t in totals]
        return StudyScores(
            study_ids=tuple(ordered),
            mean_probability=np.array([t[0] / t[1] for t in totals], dtype=np.float64),
            label=None if None in labels else np.array(labels, dtype=np.int64),
            slice_count=np.array([t[1] for t in totals], dtype=np.int64),
        )


def aggregate_by_study(study_ids: Iterable[str], probabilities: Iterable[float],
                       labels: Iterable[int] | None = None) -> StudyScores:
    """Mean slice probability per study: THE study-level prediction, for evaluation, the
    rollout analysis, `mspipe predict` and the web page. Without labels (a prediction) the
    scores' `label` is None."""
    study_ids, probabilities = list(study_ids), list(probabilities)
    labels = [None] * len(study_ids) if labels is None else labels
    totals = StudyTotals()
    for study_id, probability, label in zip(study_ids, probabilities, labels, strict=True):
        totals.add(study_id, probability, label)
    return totals.scores()
