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


# --- uncertainty: bootstrap over studies ---------------------------------------------------

BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
# "Too small to conclude": fewer studies than this in either class, or an AUC interval wider
# than MAX_CONCLUSIVE_AUC_WIDTH. With 5 studies per class one study moves the sensitivity by
# 0.2; an interval 0.2 wide cannot tell a useful model (0.85) from a poor one (0.65).
MIN_STUDIES_PER_CLASS = 10
MAX_CONCLUSIVE_AUC_WIDTH = 0.2


@dataclass(frozen=True)
class Interval:
    """A point estimate and its percentile bootstrap interval (NaN bounds when undefined)."""

    estimate: float
    low: float
    high: float

    @property
    def width(self) -> float:
        return self.high - self.low

    def to_dict(self) -> dict[str, float]:
        return {"estimate": self.estimate, "low": self.low, "high": self.high}

    def text(self, digits: int = 3) -> str:
        """'0.912 (95% CI 0.801-0.990)'; 'n/a' when the estimate does not exist."""
        if np.isnan(self.estimate):
            return "n/a"
        if np.isnan(self.low):
            return f"{self.estimate:.{digits}f} (no CI)"
        return (f"{self.estimate:.{digits}f} ({CONFIDENCE:.0%} CI {self.low:.{digits}f}-"
                f"{self.high:.{digits}f})")


@dataclass(frozen=True)
class StudyMetricIntervals:
    """Study-level AUC, sensitivity and specificity at `threshold`, each with its 95 % CI.

    `conclusive` is False, with the reason in `caveat`, when the data is too small to conclude
    (see MIN_STUDIES_PER_CLASS and MAX_CONCLUSIVE_AUC_WIDTH). A percentile bootstrap
    interval has zero width when every study is on the right side (AUC 1, sensitivity 1):
    resampling cannot create a mistake that is not in the data. That is not certainty; the
    report says so, and the small-data rule above is what flags such sets.
    """

    auc: Interval
    sensitivity: Interval
    specificity: Interval
    threshold: float
    positives: int
    negatives: int
    resamples: int
    seed: int
    conclusive: bool
    caveat: str

    def to_dict(self) -> dict:
        return {"auc": self.auc.to_dict(), "sensitivity": self.sensitivity.to_dict(),
                "specificity": self.specificity.to_dict(), "threshold": self.threshold,
                "positives": self.positives, "negatives": self.negatives,
                "resamples": self.resamples, "seed": self.seed, "confidence": CONFIDENCE,
                "conclusive": self.conclusive, "caveat": self.caveat}


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    tail = (1.0 - CONFIDENCE) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_study_metrics(scores: Sequence[float] | np.ndarray,
                            labels: Sequence[int] | np.ndarray, threshold: float, *,
                            resamples: int = BOOTSTRAP_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                            what: str = "study metrics") -> StudyMetricIntervals:
    """AUC, sensitivity and specificity (`score > threshold` is positive) with 95 % percentile
    bootstrap intervals.

    One score per STUDY goes in (aggregate_by_study first): resampling slices would treat the
    slices of one patient as independent evidence and make the interval far too narrow. The
    resampling is stratified by class (each resample keeps the number of MS and control
    studies, as pROC does), so every resample has both classes and an AUC. Seeded: the same
    input gives the same interval everywhere (Evaluator, report, rollout analysis).
    The AUC of a resample is computed exactly from the positive-by-negative comparison matrix
    weighted by how often each study was drawn, so 2000 resamples cost milliseconds.
    """
    scores, labels = _checked(scores, labels, what)
    if resamples < 1:
        raise ValueError(f"{what}: resamples must be >= 1, got {resamples}")
    positive, negative = scores[labels == 1], scores[labels == 0]
    n_pos, n_neg = positive.size, negative.size
    nan = Interval(float("nan"), float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    # counts[b, i]: how often study i is drawn in resample b (multinomial = with replacement)
    pos_counts = rng.multinomial(n_pos, np.full(n_pos, 1.0 / n_pos), resamples) if n_pos else None
    neg_counts = rng.multinomial(n_neg, np.full(n_neg, 1.0 / n_neg), resamples) if n_neg else None

    sensitivity = specificity = auc = nan
    if n_pos:
        called = (positive > threshold).astype(np.float64)
        sensitivity = Interval(float(called.mean()), *_percentiles(pos_counts @ called / n_pos))
    if n_neg:
        cleared = (negative <= threshold).astype(np.float64)
        specificity = Interval(float(cleared.mean()), *_percentiles(neg_counts @ cleared / n_neg))
    if n_pos and n_neg:
        wins = (positive[:, None] > negative[None, :]) + 0.5 * (positive[:, None] == negative[None, :])
        resampled = np.einsum("bp,pn,bn->b", pos_counts, wins, neg_counts) / (n_pos * n_neg)
        auc = Interval(float(wins.mean()), *_percentiles(resampled))
    else:
        _both_classes(labels, what)  # warns: the AUC is NaN
    caveat = ""
    if min(n_pos, n_neg) < MIN_STUDIES_PER_CLASS:
        caveat = (f"too small to conclude: {n_pos} MS and {n_neg} control studies (at least "
                  f"{MIN_STUDIES_PER_CLASS} of each are needed)")
    elif auc.width > MAX_CONCLUSIVE_AUC_WIDTH:
        caveat = (f"too small to conclude: the AUC interval is {auc.width:.2f} wide "
                  f"(more than {MAX_CONCLUSIVE_AUC_WIDTH:g})")
    return StudyMetricIntervals(auc, sensitivity, specificity, float(threshold), n_pos, n_neg,
                                resamples, seed, not caveat, caveat)


# --- the operating threshold ---------------------------------------------------------------

THRESHOLD_RULES = ("youden", "min_sensitivity")


@dataclass(frozen=True)
class ThresholdChoice:
    """The chosen study-level threshold (`probability > threshold` = MS) and how it was made."""

    threshold: float
    rule: str
    sensitivity: float  # on the studies it was chosen on
    specificity: float
    positives: int
    negatives: int


def choose_threshold(scores: Sequence[float] | np.ndarray, labels: Sequence[int] | np.ndarray,
                     *, rule: str = "youden", min_sensitivity: float = 0.9,
                     what: str = "threshold choice") -> ThresholdChoice:
    """The study-level operating threshold, chosen by a documented rule on VALIDATION studies.

    Candidates are the midpoints between consecutive distinct scores (plus one above the
    highest and one below the lowest), so the threshold never sits on a study's score and
    `score > threshold` is unambiguous. Rules:
    - `youden`: maximise sensitivity + specificity - 1 (Youden's J); among ties, the lowest
      threshold (more sensitive: a missed MS costs more than a second look).
    - `min_sensitivity`: the best specificity among thresholds whose sensitivity is at least
      `min_sensitivity`; among ties, the highest threshold.
    Scores are probabilities in [0, 1]. Both classes are required.
    """
    if rule not in THRESHOLD_RULES:
        raise ValueError(f"{what}: rule must be one of {THRESHOLD_RULES}, got {rule!r}")
    if not 0.0 < min_sensitivity <= 1.0:
        raise ValueError(f"{what}: min_sensitivity must lie in (0, 1], got {min_sensitivity}")
    scores, labels = _checked(scores, labels, what)
    n_pos, n_neg = int(labels.sum()), int(labels.size - labels.sum())
    if not (n_pos and n_neg):
        raise ValueError(f"{what}: needs studies of both classes, got {n_pos} MS and {n_neg} "
                         "control")
    distinct = np.unique(scores)  # ascending
    candidates = np.concatenate([[distinct[0] / 2.0], (distinct[:-1] + distinct[1:]) / 2.0,
                                 [(distinct[-1] + 1.0) / 2.0]])
    called = scores[None, :] > candidates[:, None]  # [candidate, study]
    sensitivity = (called & (labels == 1)).sum(axis=1) / n_pos
    specificity = (~called & (labels == 0)).sum(axis=1) / n_neg
    if rule == "youden":
        best = int(np.flatnonzero(np.isclose(sensitivity + specificity,
                                             (sensitivity + specificity).max()))[0])
    else:
        allowed = np.flatnonzero(sensitivity >= min_sensitivity - 1e-12)
        if not allowed.size:  # only when MS studies score exactly 0
            raise ValueError(f"{what}: no threshold reaches sensitivity {min_sensitivity:g}")
        best_specificity = specificity[allowed].max()
        best = int(allowed[np.isclose(specificity[allowed], best_specificity)][-1])
    return ThresholdChoice(float(candidates[best]), rule, float(sensitivity[best]),
                           float(specificity[best]), n_pos, n_neg)
