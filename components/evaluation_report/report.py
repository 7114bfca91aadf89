"""The evaluation report: one self-contained folder (index.html + PNG figures) per pipeline run.

Written for someone new to the project: what was measured, on how much data, whether the
model was blessed and pushed and why, with every number labelled per slice or per study.
No patient data: only scanner tokens (vendor_model from the header) and aggregate counts
(study hashes are not shown).
"""
from __future__ import annotations

import datetime
import html
import json
import math
import os
import re
import warnings
from collections.abc import Sequence

import numpy as np

from components.contract import DECISION_THRESHOLD
from components.dicom.metrics import (CONFIDENCE, MAX_CONCLUSIVE_AUC_WIDTH, MIN_STUDIES_PER_CLASS,
                                      StudyMetricIntervals, UndefinedAUCWarning,
                                      bootstrap_study_metrics, confusion_counts)
from components.evaluation_report import report_figures
from components.evaluation_report.report_explain import explanations_section
from components.dicom_example_gen.properties import SplitSize
from components.evaluation_report.report_data import (SlicePredictions, TfmaSummary, ThresholdCheck,
                                                      auc_or_nan, load_tfma_summary, predict_split,
                                                      threshold_record)

REJECT_EXPLANATIONS: dict[str, str] = {
    "not_dicom": "not a DICOM file (no 'DICM' marker) and not a PNG/JPEG image",
    "unsupported_sop_class": "a DICOM object that is not an MR image (e.g. a report, "
                             "a secondary capture or another modality)",
    "no_pixel_data": "an MR header without any image pixels",
    "unsupported_transfer_syntax": "the pixels are compressed in a format no installed decoder "
                                   "reads",
    "unsupported_photometric_interpretation": "colour or palette pixels, not a greyscale MR image",
    "truncated": "the file ends early (an incomplete copy or transfer)",
    "decode_error": "header or pixels present but damaged, so they cannot be decoded",
    "missing_orientation": "no Image Orientation (Patient): the slice direction is unknown",
    "invalid_orientation": "orientation values that do not describe a plane",
    "non_axial": "a slice in another direction (coronal, sagittal, oblique) than the kept "
                 "ones (axial by default)",
    "constant_image": "a blank image (every pixel the same after contrast clipping)",
    "no_anatomy": "no head in the image (blank background, noise only or a speck)",
    "unreadable_image": "a PNG/JPEG that cannot be decoded",
    "unreadable_file": "the file could not be read from disk (permissions, vanished)",
    "missing_study_uid": "no Study Instance UID, so the slice cannot be grouped into a study",
    "unlabeled_study": "the study is not in the labels file, so it has no MS/control label",
    "internal_error": "the preprocessing code failed unexpectedly: a bug, please report it",
}
METRIC_NAMES: dict[str, str] = {
    "study_auc": "AUC per study", "study_count": "studies",
    "study_auc_ci_low": "AUC per study, 95% CI lower bound",
    "study_auc_ci_high": "AUC per study, 95% CI upper bound",
    "study_threshold": "operating threshold (the model's)",
    "study_sensitivity": "sensitivity per study at the model's threshold",
    "study_sensitivity_ci_low": "sensitivity per study, 95% CI lower bound",
    "study_sensitivity_ci_high": "sensitivity per study, 95% CI upper bound",
    "study_specificity": "specificity per study at the model's threshold",
    "study_specificity_ci_low": "specificity per study, 95% CI lower bound",
    "study_specificity_ci_high": "specificity per study, 95% CI upper bound", "auc": "AUC per slice (TFMA, "
    "10,000-threshold approximation)", "example_count": "slices",
    "binary_accuracy": "accuracy per slice", "precision": "precision per slice",
    "recall": "sensitivity (recall) per slice", "mean_label": "fraction MS per slice",
    "mean_prediction": "mean probability per slice",
    "calibration": "calibration per slice (sum of probabilities / number of MS slices)",
}
COUNT_METRICS = frozenset({"study_count", "example_count"})
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:980px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}
h1{margin-bottom:.2em} h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.8em}
table{border-collapse:collapse;margin:.8em 0} th,td{border:1px solid #ccc;padding:.3em .7em;
text-align:left} td.num{text-align:right} th{background:#f3f3f3}
.verdict{padding:.8em 1.2em;border-radius:6px;font-size:1.15em;margin:1em 0}
.ok{background:#e3f4e1;border:1px solid #7bbf73} .bad{background:#fbe3e1;border:1px solid #d9827a}
.pass{color:#2b7a2b;font-weight:600} .fail{color:#b3261e;font-weight:600}
.muted{color:#666;font-size:.92em} img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.gradcams{display:flex;flex-wrap:wrap;gap:1em} .gradcam{margin:0;width:256px}
.gradcam img{width:256px}
.caveat{background:#fff8e1;border:1px solid #e6c65c;padding:.6em 1em;border-radius:6px}
.inconclusive{background:#fbe3e1;border:1px solid #d9827a;padding:.6em 1em;border-radius:6px}
"""


def _fmt(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


NUMERIC_CELL = re.compile(r"^[-+]?(\d[\d.,]*( / \d+)?|n/a)$")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Cells are trusted HTML (callers escape); numbers are right-aligned, text left."""
    def cell(content: str) -> str:
        return f"<td class='num'>{content}</td>" if NUMERIC_CELL.match(content) else \
            f"<td>{content}</td>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _rates(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    c = confusion_counts(scores, labels, threshold)
    ratio = lambda a, b: a / b if b else math.nan  # noqa: E731
    return {"accuracy": ratio(c["tp"] + c["tn"], sum(c.values())),
            "sensitivity": ratio(c["tp"], c["tp"] + c["fn"]),
            "specificity": ratio(c["tn"], c["tn"] + c["fp"]),
            "precision": ratio(c["tp"], c["tp"] + c["fp"])}


def _failure_text(check: ThresholdCheck) -> str:
    return (f"{METRIC_NAMES.get(check.metric, check.metric)}: needs {check.rule}, "
            f"was {_fmt(check.value, 4)}")


def _verdict(blessed: bool, pushed_version: int | None, model_name: str,
             summary: TfmaSummary) -> str:
    name = html.escape(model_name)
    if pushed_version is not None:
        pushed = f"Pushed as <b>{name}</b> version <b>{pushed_version}</b>."
    elif not blessed:
        pushed = "Not pushed: not blessed. The model server keeps serving the previous version."
    else:
        pushed = "Not pushed (blessed, but no push was recorded for this run)."
    failed = [c for c in summary.checks if not c.passed]
    why = ""
    if failed:
        why = " Failed check" + ("s" if len(failed) > 1 else "") + ": " + "; ".join(
            html.escape(_failure_text(c)) for c in failed) + "."
    mismatch = ""
    if summary.validation_ok is not None and summary.validation_ok != blessed:
        mismatch = ("<br><span class='fail'>Warning: the blessing artifact and TFMA's "
                    "validation result disagree; check the pipeline wiring.</span>")
    title = "BLESSED" if blessed else "NOT BLESSED"
    return (f'<div class="verdict {"ok" if blessed else "bad"}"><b>{title}</b>: the Evaluator '
            f'{"accepted" if blessed else "rejected"} this model.{why} {pushed}{mismatch}</div>')


INTRO = """<h2>Reading this report</h2>
<p>The model looks at one MRI slice at a time and returns a probability of multiple sclerosis
(MS). A <b>study</b> (one patient's examination) gets the <b>mean probability of its
slices</b>. Numbers <b>per slice</b> count every image; numbers <b>per study</b> count every
examination once, which is what matters for a diagnosis: a study with 60 slices must not weigh
60 times more than one with a single slice. Every study is in exactly one split, so no patient
seen in training is counted here.</p>
<p><b>AUC</b> (area under the ROC curve) is the chance that a random MS case scores higher than
a random control (0.5 = guessing, 1.0 = perfect); it does not depend on a threshold.
<b>Sensitivity</b> is the share of MS cases called MS, <b>specificity</b> the share of controls
called control, at the decision threshold (probability &gt; {threshold:.3g} means MS).
<b>Calibration</b>: among cases given about 70%, about 70% should be MS.</p>"""

CAVEATS = """<h2>Caveats</h2><div class="caveat"><ul>
<li>This is a research tool, <b>not a medical device and not a diagnosis</b>. Its output must not
be used for clinical decisions.</li>
<li>With few eval studies, every number here is uncertain: one study more or less can move
the AUC per study by several points. Per-scanner numbers are even less certain.</li>
<li>If this run used the synthetic demo dataset, the images are generated and the numbers say
nothing about real patients.</li>
<li>Slices come only from the orientations the pipeline keeps (axial by default); rejected files
are listed above and are not part of any number.</li></ul></div>"""


def _data_section(sizes: dict[str, SplitSize], rejects: dict[str, int] | None) -> str:
    rows = [[html.escape(name), str(s.studies), f"{s.positive_studies} / "
             f"{s.studies - s.positive_studies}", str(s.slices)] for name, s in sizes.items()]
    parts = ["<h2>Data</h2>", _table(["split", "studies", "MS / control studies", "slices"],
                                     rows)]
    if rejects is None:
        parts.append("<p class='muted'>No rejects ledger was given to the report.</p>")
    elif not rejects:
        parts.append("<p>Rejected inputs: <b>none</b>: every file and frame became a slice.</p>")
    else:
        total = sum(rejects.values())
        rows = [[f"<code>{html.escape(reason)}</code>", str(count),
                 html.escape(REJECT_EXPLANATIONS.get(reason, "no description for this code yet: "
                                                              "see the ledger's detail field"))]
                for reason, count in sorted(rejects.items(), key=lambda kv: (-kv[1], kv[0]))]
        parts += [f"<p>Rejected inputs: <b>{total}</b> files or frames were skipped, with a "
                  "reason each (DicomExampleGen's rejects ledger). They are in no split.</p>",
                  _table(["reason", "count", "what it means"], rows)]
    return "\n".join(parts)


def _headline_section(slices: SlicePredictions, threshold: float) -> str:
    studies = slices.by_study()
    per = {"per study": (studies.mean_probability, studies.label),
           "per slice": (slices.probability, slices.label)}
    rows = []
    for unit, (scores, labels) in per.items():
        rates = _rates(scores, labels, threshold)
        rows.append([unit, str(len(labels)), _fmt(auc_or_nan(scores, labels)),
                     _fmt(rates["accuracy"]), _fmt(rates["sensitivity"]),
                     _fmt(rates["specificity"]), _fmt(rates["precision"])])
    return ("<h2>Results on the eval split</h2><p>Computed from the candidate model's "
            "<code>serving_default</code> signature (what the model server runs) on every eval "
            f"slice; thresholded metrics use probability &gt; {threshold:.3g}.</p>"
            + _table(["", "n (studies or slices)", "AUC", "accuracy", "sensitivity", "specificity", "precision"],
                     rows))


def _threshold_text(threshold: float, source: str, record: dict | None) -> str:
    """Where the decision threshold came from, in words."""
    if source == "operator":
        return (f"<b>{threshold:.3f}</b>, set for this report (the model's own threshold was "
                "overridden)")
    if source == "fallback":
        return (f"<b>{threshold:g}</b>, the fixed fallback: this model was exported without an "
                "operating threshold of its own")
    how = ""
    if record and record.get("validation"):
        rule = {"youden": "the Youden point (largest sensitivity + specificity - 1)",
                "min_sensitivity": "the best specificity with sensitivity at least the "
                                   "configured minimum"}.get(record["rule"], record["rule"])
        validation = record["validation"]
        how = (f", chosen by {html.escape(rule)} on {validation['positive_studies']} MS and "
               f"{validation['negative_studies']} control <b>validation studies held out of the "
               "training split</b> (never on these eval studies; there: sensitivity "
               f"{validation['sensitivity']:.3f}, specificity {validation['specificity']:.3f})")
    elif record and record.get("rule") == "fixed":
        how = ", a fixed value configured for training (no validation part was held out)"
    return f"<b>{threshold:.3f}</b>, the model's own operating threshold{how}"


def _uncertainty_section(result: StudyMetricIntervals, threshold_text: str) -> str:
    """The headline numbers per study with their 95% intervals, and whether they conclude."""
    rows = [["AUC per study", html.escape(result.auc.text())],
            ["sensitivity per study", html.escape(result.sensitivity.text())],
            ["specificity per study", html.escape(result.specificity.text())]]
    if result.conclusive:
        verdict = ("<p>The eval split is large enough by this report's rule (see below); the "
                   "intervals still say how far the true values may lie.</p>")
    else:
        verdict = (f"<div class='inconclusive'><b>The eval split is too small to conclude</b>: "
                   f"{html.escape(result.caveat.removeprefix('too small to conclude: '))}. "
                   "These numbers may be far from the model's real performance; do not rely "
                   "on them.</div>")
    flat = [name for name, interval in (("AUC", result.auc), ("sensitivity", result.sensitivity),
                                         ("specificity", result.specificity))
            if interval.width == 0]
    if flat:
        verdict += (f"<p class='caveat'>A zero-width interval ({', '.join(flat)}) does not mean "
                    "certainty: every resample gave the same value because every eval study "
                    "fell on the same side (e.g. all MS studies above the threshold), which "
                    "resampling cannot undo. With this few studies the true value may still be "
                    "clearly lower.</p>")
    return (f"<h2>Uncertainty ({CONFIDENCE:.0%} confidence intervals, per study)</h2>"
            f"<p>Decision threshold: {threshold_text}. A study is called MS when its "
            "probability is above it.</p>"
            + _table(["per study, eval split", f"value ({CONFIDENCE:.0%} CI)"], rows)
            + verdict
            + f"<p class='muted'>Intervals: percentile bootstrap, {result.resamples} resamples "
            f"of the {result.positives} MS and {result.negatives} control eval <b>studies</b> "
            "(not slices: the slices of one patient are not independent evidence), stratified "
            f"by class, seed {result.seed}. Rule for \"too small to conclude\": fewer than "
            f"{MIN_STUDIES_PER_CLASS} studies of either class, or an AUC interval wider than "
            f"{MAX_CONCLUSIVE_AUC_WIDTH:g}.</p>")


def _scanner_section(slices: SlicePredictions) -> str:
    rows = []
    for scanner in sorted(set(slices.scanner)):
        part = slices.where(slices.scanner == scanner)
        studies = part.by_study()
        rows.append([html.escape(scanner), str(len(part)), str(len(studies.study_ids)),
                     f"{int(studies.label.sum())} / {int((studies.label == 0).sum())}",
                     _fmt(auc_or_nan(part.probability, part.label)),
                     _fmt(auc_or_nan(studies.mean_probability, studies.label))])
    return ("<h2>Per scanner</h2><p>The same metrics for each scanner (vendor and model from "
            "the DICOM header). A model that works on one scanner only is a warning sign. "
            "n/a: that scanner has eval studies of one class only, so no AUC exists.</p>"
            + _table(["scanner", "slices", "studies", "MS / control studies", "AUC per slice",
                      "AUC per study"], rows))


def _blessing_section(summary: TfmaSummary) -> str:
    parts = ["<h2>Why this verdict (TFMA validation)</h2>"]
    if summary.validation_ok is None:
        return parts[0] + "<p>The Evaluator ran without thresholds, so it blessed nothing.</p>"
    if not summary.has_baseline:
        parts.append("<p>No previously blessed model exists (first run), so only the absolute "
                     "bound applies; the comparison with the last blessed model starts next "
                     "run.</p>")
    rows = []
    for check in summary.checks:
        what = METRIC_NAMES.get(check.metric, check.metric)
        kind = "vs the last blessed model" if check.kind == "change" else "absolute bound"
        verdict = '<span class="pass">pass</span>' if check.passed else '<span class="fail">FAIL</span>'
        rows.append([html.escape(what), kind, html.escape(check.rule),
                     _fmt(check.value, 4), verdict])
    parts.append("<p>Checked on the whole eval split:</p>")
    parts.append(_table(["metric", "check", "rule", "value", "result"], rows))
    rows = []
    for name, label in METRIC_NAMES.items():
        candidate = summary.overall(name)
        if candidate is None:
            continue
        digits = 0 if name in COUNT_METRICS else 4
        row = [html.escape(label), _fmt(candidate, digits)]
        if summary.has_baseline:
            row += [_fmt(summary.overall(name, model="baseline"), digits),
                    _fmt(summary.overall(name, diff=True), digits)]
        rows.append(row)
    parts.append("<p>All metrics TFMA computed on the whole eval split (per-scanner values are "
                 "in the Evaluator's output):</p>")
    header = ["TFMA metric (whole eval split)", "candidate"]
    if summary.has_baseline:
        header += ["last blessed", "difference"]
    parts.append(_table(header, rows))
    return "\n".join(parts)


def _figures_section(out_dir: str, slices: SlicePredictions, threshold: float) -> str:
    studies = slices.by_study()
    report_figures.plot_roc(os.path.join(out_dir, "roc.png"), slices, studies)
    report_figures.plot_confusion(os.path.join(out_dir, "confusion.png"), slices, studies,
                                  threshold)
    report_figures.plot_calibration(os.path.join(out_dir, "calibration.png"), slices, studies)
    return (
        "<h2>ROC curves</h2><p>Each point is one threshold; the closer the curve hugs the top "
        "left corner, the better. Per study and per slice are drawn separately.</p>"
        '<img src="roc.png" alt="ROC curves per slice and per study">'
        f"<h2>Confusion matrices at threshold {threshold:.3g}</h2><p>Rows are the truth, columns "
        "the model's call. Left: per study (what a clinician would see); right: per slice.</p>"
        '<img src="confusion.png" alt="confusion matrices per study and per slice">'
        "<h2>Calibration</h2><p>Predictions grouped into bins of width 0.1; each point is the "
        "bin's mean probability against the fraction of MS cases in it (n = cases in the bin). "
        "Points on the dotted line are well calibrated. The bars below show how many cases fell "
        "in each bin.</p>"
        '<img src="calibration.png" alt="reliability diagrams per slice and per study">')


def write_report(out_dir: str, *, evaluation_uri: str, model_dir: str, eval_examples_uri: str,
                 split_sizes: dict[str, SplitSize], rejects: dict[str, int] | None,
                 blessed: bool, pushed_version: int | None, model_name: str,
                 image_size: int | None = None, threshold: float | None = None,
                 notes: Sequence[str] = ()) -> str:
    """Writes out_dir/index.html and its figures; returns the path of index.html.

    `model_dir` is the candidate SavedModel; `eval_examples_uri` its Split-eval folder;
    `split_sizes` and `rejects` (reason -> count, None when unknown) are what DicomExampleGen
    recorded on its artifacts (see executor.py); `image_size` defaults to the model's
    signature and, if given, must match it. `threshold` defaults to the model's own
    (contract.THRESHOLD_OUTPUT; contract.DECISION_THRESHOLD for models without one).
    """
    if threshold is not None and not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
    os.makedirs(out_dir, exist_ok=True)
    slices = predict_split(model_dir, eval_examples_uri, image_size=image_size)
    if not len(slices):
        raise ValueError(f"{eval_examples_uri}: the eval split holds no examples")
    if threshold is not None:
        source = "operator"
    elif slices.model_threshold is not None:
        threshold, source = slices.model_threshold, "model"
    else:
        threshold, source = DECISION_THRESHOLD, "fallback"
    studies = slices.by_study()
    with warnings.catch_warnings():  # one class: NaN AUC, said so in the table
        warnings.simplefilter("ignore", UndefinedAUCWarning)
        intervals = bootstrap_study_metrics(studies.mean_probability, studies.label, threshold,
                                            what="eval study metrics")
    threshold_text = _threshold_text(threshold, source, threshold_record(model_dir))
    summary = load_tfma_summary(evaluation_uri)
    generated = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    notes_html = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    body = "\n".join([
        f"<h1>Evaluation report: {html.escape(model_name)}</h1>",
        f"<p class='muted'>Generated {generated}. Candidate model evaluated on the eval split "
        f"({len(slices)} slices).</p>",
        _verdict(blessed, pushed_version, model_name, summary),
        INTRO.format(threshold=threshold),
        _data_section(split_sizes, rejects),
        _headline_section(slices, threshold),
        _uncertainty_section(intervals, threshold_text),
        _figures_section(out_dir, slices, threshold),
        explanations_section(out_dir, model_dir, eval_examples_uri, slices),
        _scanner_section(slices),
        _blessing_section(summary),
        f"<h2>Notes</h2><ul>{notes_html}</ul>" if notes else "",
        CAVEATS,
    ])
    with open(os.path.join(out_dir, "study_metrics.json"), "w", encoding="utf-8") as handle:
        json.dump({**intervals.to_dict(), "threshold_source": source}, handle, indent=2,
                  sort_keys=True)  # the same numbers, for programs (NaN written as NaN)
    path = os.path.join(out_dir, "index.html")
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>"
                     f"Evaluation report: {html.escape(model_name)}</title><style>{CSS}</style>"
                     f"</head><body>{body}</body></html>")
    return path
