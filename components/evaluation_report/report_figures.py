"""PNG figures of the evaluation report (matplotlib, Agg canvas, no pyplot global state).

Every figure shows the per-slice and the per-study view side by side and says which is
which: the student project this replaces reported per-slice numbers only, and they flattered.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from components.dicom.metrics import StudyScores, confusion_counts, roc_curve
from components.evaluation_report.report_data import SlicePredictions, auc_or_nan

CLASS_NAMES = ("control (0)", "MS (1)")
SLICE_COLOUR = "#4c72b0"
STUDY_COLOUR = "#dd8452"
DPI = 110


def _save(figure: Figure, path: str) -> str:
    figure.savefig(path, dpi=DPI, bbox_inches="tight", facecolor="white")
    return path


def _auc_text(auc: float) -> str:
    return "AUC undefined (one class only)" if math.isnan(auc) else f"AUC = {auc:.3f}"


def plot_roc(path: str, slices: SlicePredictions, studies: StudyScores) -> str:
    """Both ROC curves on one pair of axes, with their AUC and sample size in the legend."""
    figure = Figure(figsize=(5.6, 5.2))
    axes = figure.add_subplot()
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance (AUC = 0.5)")
    curves = (
        ("per slice", slices.probability, slices.label, f"{len(slices)} slices", SLICE_COLOUR),
        ("per study", studies.mean_probability, studies.label,
         f"{len(studies.study_ids)} studies", STUDY_COLOUR),
    )
    for name, scores, labels, size, colour in curves:
        auc = auc_or_nan(scores, labels)
        if math.isnan(auc):
            axes.plot([], [], color=colour, label=f"{name} ({size}): {_auc_text(auc)}")
            continue
        fpr, tpr, _ = roc_curve(scores, labels)
        axes.plot(fpr, tpr, color=colour, linewidth=2, drawstyle="default",
                  marker="o" if name == "per study" else None, markersize=3,
                  label=f"{name} ({size}): {_auc_text(auc)}")
    axes.set(xlim=(-0.01, 1.01), ylim=(-0.01, 1.01), aspect="equal",
             xlabel="false positive rate (1 - specificity)",
             ylabel="true positive rate (sensitivity)",
             title="ROC curves on the eval split")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8.5)
    return _save(figure, path)


def _draw_matrix(axes, counts: dict[str, int], title: str, units: tuple[str, str]) -> None:
    """2x2 counts (rows: truth, columns: the call) coloured by share of the row."""
    matrix = np.array([[counts["tn"], counts["fp"]], [counts["fn"], counts["tp"]]])
    row_totals = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_totals, out=np.zeros(matrix.shape), where=row_totals > 0)
    axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for row in range(2):
        for col in range(2):
            colour = "white" if shares[row, col] > 0.6 else "black"
            count = matrix[row, col]
            axes.text(col, row, f"{count} {units[0] if count == 1 else units[1]}\n"
                      f"{shares[row, col]:.0%} of row",
                      ha="center", va="center", color=colour, fontsize=10)
    axes.set_xticks([0, 1], [f"predicted\n{c}" for c in CLASS_NAMES])
    axes.set_yticks([0, 1], [f"true\n{c}" for c in CLASS_NAMES])
    axes.set_title(title, fontsize=10.5)


def plot_confusion(path: str, slices: SlicePredictions, studies: StudyScores,
                   threshold: float) -> str:
    """Confusion matrices at the decision threshold: per study (left), per slice (right)."""
    figure = Figure(figsize=(9.6, 4.3))
    left, right = figure.subplots(1, 2)
    _draw_matrix(left, confusion_counts(studies.mean_probability, studies.label, threshold),
                 f"per study: mean slice probability > {threshold:g}", ("study", "studies"))
    _draw_matrix(right, confusion_counts(slices.probability, slices.label, threshold),
                 f"per slice: slice probability > {threshold:g}", ("slice", "slices"))
    figure.tight_layout()
    return _save(figure, path)


def _reliability(axes_curve, axes_counts, scores, labels, bins: int, unit: str, colour: str,
                 title: str) -> None:
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    positives = np.bincount(index, weights=labels, minlength=bins)
    mean_score = np.bincount(index, weights=scores, minlength=bins)
    filled = counts > 0
    observed = positives[filled] / counts[filled]
    predicted = mean_score[filled] / counts[filled]
    axes_curve.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axes_curve.plot(predicted, observed, marker="o", color=colour, label=f"{title}")
    for x, y, n in zip(predicted, observed, counts[filled]):
        axes_curve.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(5, 5),
                            fontsize=8, color="#333333")
    axes_curve.tick_params(labelbottom=False)
    axes_curve.set(xlim=(0, 1), ylim=(-0.04, 1.1), ylabel="observed fraction MS",
                   title=f"{title}: reliability ({bins} bins)")
    axes_curve.grid(alpha=0.3)
    axes_curve.legend(loc="upper left", fontsize=8)
    width = 1.0 / bins
    centres = edges[:-1] + width / 2
    negatives = counts - positives
    axes_counts.bar(centres, negatives, width=width * 0.9, color="#9ecae1", label=CLASS_NAMES[0])
    axes_counts.bar(centres, positives, width=width * 0.9, bottom=negatives, color="#de2d26",
                    label=CLASS_NAMES[1])
    axes_counts.set(xlim=(0, 1), ylim=(0, max(counts.max(), 1) * 1.45),
                    xlabel="predicted probability of MS", ylabel=f"{unit} per bin")
    axes_counts.legend(loc="upper right", fontsize=8, ncol=2)


def plot_calibration(path: str, slices: SlicePredictions, studies: StudyScores,
                     bins: int = 10) -> str:
    """Reliability diagrams (predicted vs observed, with counts): per slice and per study."""
    figure = Figure(figsize=(10, 6.4))
    grid = figure.add_gridspec(2, 2, height_ratios=(2.2, 1))
    for column, (scores, labels, unit, colour, title) in enumerate((
            (slices.probability, slices.label, "slices", SLICE_COLOUR, "per slice"),
            (studies.mean_probability, studies.label, "studies", STUDY_COLOUR, "per study"))):
        curve = figure.add_subplot(grid[0, column])
        counts = figure.add_subplot(grid[1, column], sharex=curve)
        _reliability(curve, counts, np.asarray(scores, float), np.asarray(labels, float), bins,
                     unit, colour, title)
    figure.tight_layout()
    return _save(figure, path)
