"""Shadow analysis of a canary: the same labelled slices to `stable` and `canary`, compared.

Every batch goes to both labels, one after the other (the order alternates per batch, so
neither label is always the one meeting a warm cache or a busy CPU); in shadow mode the
caller is always given the stable answer. Per label we record: failed requests and slices
without a usable answer (a gRPC error, a missing or non-finite probability, or one outside
[0, 1] all count as errors), request latency, and the probabilities. Then:
- error rate: erroneous slices / slices sent;
- latency p50 / p99 of the successful requests, in ms;
- agreement with stable: the share of slices (answered by both) whose thresholded call
  (p > each version's own operating threshold, or `--decision-threshold`) is the same, and
  the mean |p_canary - p_stable|;
- study-level AUC, sensitivity and specificity (at the version's threshold), each with its 95 %
  bootstrap interval over studies (components.dicom.metrics.bootstrap_study_metrics, the
  report's): each study scored by the mean probability of its slices (the pipeline's
  definition), over the studies both labels answered, so the two compare like with like; and
  whether that many studies can conclude anything.

`decide` turns those into checks with values and thresholds; all must pass to promote. An
AUC that cannot be computed (one class only, or no study answered) fails its check: an
analysis that saw nothing must not promote. When checks fail but stable itself met an outage
(a request failed with UNAVAILABLE, DEADLINE_EXCEEDED, ...: serving/api/errors.py
OUTAGE_CODES), the server failed, not the canary: the decision is "inconclusive" (analyze
again), never "rollback".
"""
from __future__ import annotations

import math
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from components.contract import DECISION_THRESHOLD
from components.dicom.metrics import (UndefinedAUCWarning, aggregate_by_study,
                                      bootstrap_study_metrics)
from serving.api.errors import OUTAGE_CODES, ServingError
from serving.client.model_client import ModelClient
from serving.rollout.data import SliceBatch
from serving.rollout.settings import AnalysisSettings, AnalysisThresholds

STABLE, CANARY = "stable", "canary"


@dataclass(frozen=True)
class Check:
    name: str
    value: float | None
    threshold: float
    rule: str            # e.g. "<=" ; the check passes when `value rule threshold`
    passed: bool
    note: str = ""

    def short(self) -> str:
        value = "n/a" if self.value is None or math.isnan(self.value) else f"{self.value:.4g}"
        return f"{self.name} = {value} (must be {self.rule} {self.threshold:g})"

    def describe(self) -> str:
        text = f"{'PASS' if self.passed else 'FAIL'} {self.short()}"
        return f"{text}: {self.note}" if self.note else text


class LabelRecord:
    """Everything one label answered during the analysis, slice-aligned with the others."""

    def __init__(self, label: str):
        self.label = label
        self.probabilities: list[np.ndarray] = []   # per batch, NaN where no usable answer
        self.latencies_ms: list[float] = []          # successful requests only
        self.failed_requests = 0
        self.errors: Counter = Counter()             # short reason -> slices
        self.failed_codes: Counter = Counter()       # status code name -> failed requests
        self.versions: Counter = Counter()           # version that answered -> requests
        self.model_threshold: float | None = None    # the answering model's own, if it has one

    def add(self, batch_size: int, call: Callable[[], object]) -> None:
        started = time.perf_counter()
        try:
            result = call()
        except ServingError as error:
            self.failed_requests += 1
            self.failed_codes[error.code.name] += 1
            self.errors[f"{error.code.name}: {error.details.splitlines()[0][:160]}"] += batch_size
            self.probabilities.append(np.full(batch_size, np.nan))
            return
        self.latencies_ms.append(1000.0 * (time.perf_counter() - started))
        self.versions[result.model_version] += 1
        if result.model_threshold is not None:
            self.model_threshold = result.model_threshold
        probabilities = np.asarray(result.probabilities, dtype=np.float64).reshape(-1)
        if probabilities.shape[0] != batch_size:
            self.errors[f"{probabilities.shape[0]} probabilities for {batch_size} slices"] \
                += batch_size
            self.probabilities.append(np.full(batch_size, np.nan))
            return
        bad = ~np.isfinite(probabilities) | (probabilities < 0) | (probabilities > 1)
        if bad.any():
            self.errors["non-finite or out-of-range probability"] += int(bad.sum())
            probabilities = np.where(bad, np.nan, probabilities)
        self.probabilities.append(probabilities)

    def all_probabilities(self) -> np.ndarray:
        return np.concatenate(self.probabilities) if self.probabilities else np.zeros(0)


@dataclass
class AnalysisReport:
    stable_version: int | None
    canary_version: int | None
    slices: int
    studies: int
    positive_studies: int
    labels: dict[str, dict]                       # label -> metrics
    agreement: dict                               # canary vs stable
    data: dict = field(default_factory=dict)      # DataSummary.to_dict()
    complete: bool = False
    checks: list[Check] = field(default_factory=list)
    decision: str | None = None                   # "promote" | "rollback" | "inconclusive"
    inconclusive_reason: str = ""                 # why, when the decision is "inconclusive"
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        return _json_safe(data)

    def lines(self) -> list[str]:
        """Human-readable summary, one line per fact (used by the CLI and the demo)."""
        out = [f"analysis of {self.slices} slices in {self.studies} studies "
               f"({self.positive_studies} positive): stable v{self.stable_version} vs "
               f"canary v{self.canary_version}" + ("" if self.complete else " (in progress)")]
        for label, m in self.labels.items():
            out.append(f"  {label:<7} error rate {m['error_rate']:.3f} ({m['error_slices']} "
                       f"slices, {m['failed_requests']}/{m['requests']} requests failed)  "
                       f"p50 {_ms(m['latency_p50_ms'])}  p99 {_ms(m['latency_p99_ms'])}  "
                       f"study AUC {_interval(m, 'study_auc')}")
            out.append(f"           at its {m['threshold_source']} threshold "
                       f"{_num(m['threshold'])}: sensitivity {_interval(m, 'sensitivity')}, "
                       f"specificity {_interval(m, 'specificity')} per study"
                       + ("" if m["conclusive"] else f"; {m['caveat']}"))
            for reason, count in m["errors"].items():
                out.append(f"           {count} slice(s): {reason}")
        a = self.agreement
        out.append(f"  agreement with stable {_num(a['agreement'])} over {a['compared_slices']} "
                   f"slices, mean |p_canary - p_stable| {_num(a['mean_abs_difference'])}")
        out.extend(f"  {check.describe()}" for check in self.checks)
        if self.decision:
            out.append(f"  decision: {self.decision}" + (
                f" ({self.inconclusive_reason})" if self.inconclusive_reason else ""))
        return out


# ---------------------------------------------------------------------------- the run
def run_shadow_analysis(client: ModelClient, batches: Iterable[SliceBatch], *,
                        settings: AnalysisSettings = AnalysisSettings(),
                        thresholds: AnalysisThresholds = AnalysisThresholds(),
                        expected_versions: dict[str, int] | None = None,
                        on_progress: Callable[[AnalysisReport], None] | None = None,
                        data_summary: Callable[[], dict] = dict) -> AnalysisReport:
    """Send every batch to both labels; return the report (with checks and decision)."""
    records = {label: LabelRecord(label) for label in (STABLE, CANARY)}
    labels: list[np.ndarray] = []
    study_ids: list[str] = []
    started = last_progress = time.monotonic()
    for index, batch in enumerate(batches):
        if index == 0:
            _warm_up(client, batch, settings.warmup_requests)
        order = (STABLE, CANARY) if index % 2 == 0 else (CANARY, STABLE)
        for label in order:  # shadow: the stable answer is the caller's; canary is recorded
            records[label].add(len(batch.labels), lambda label=label: client.predict_tensors(
                batch.images, label=label))
        labels.append(batch.labels)
        study_ids.extend(batch.study_ids)
        if on_progress is not None and time.monotonic() - last_progress >= settings.progress_every_s:
            last_progress = time.monotonic()
            on_progress(summarize(records, labels, study_ids, thresholds, expected_versions,
                                  data_summary(), time.monotonic() - started))
    report = summarize(records, labels, study_ids, thresholds, expected_versions,
                       data_summary(), time.monotonic() - started)
    report.complete = True
    report.checks = decide(report, thresholds)
    report.decision, report.inconclusive_reason = verdict(report)
    return report


def verdict(report: AnalysisReport) -> tuple[str, str]:
    """(decision, why inconclusive): promote when every check passed; when some failed,
    rollback, unless stable met an outage too: then nothing tells the canary's failures from
    the server's, and the analysis must be run again."""
    if all(check.passed for check in report.checks):
        return "promote", ""
    stable = report.labels[STABLE]
    outages = {code: n for code, n in stable.get("failed_codes", {}).items()
               if code in OUTAGE_CODES}
    if not outages:
        return "rollback", ""
    codes = ", ".join(f"{n} {code}" for code, n in sorted(outages.items()))
    return "inconclusive", (f"stable failed too ({codes} of {stable['requests']} requests): "
                            "an outage, not the canary; analyze again")


def _warm_up(client: ModelClient, batch: SliceBatch, requests: int) -> None:
    """First calls pay graph optimisation and connection set-up; they are not measured."""
    for _ in range(requests):
        for label in (STABLE, CANARY):
            try:
                client.predict_tensors(batch.images, label=label)
            except ServingError:
                pass  # a failing label is measured (and counted) by the real run


def summarize(records: dict[str, LabelRecord], labels: list[np.ndarray], study_ids: list[str],
              thresholds: AnalysisThresholds, expected_versions: dict[str, int] | None,
              data: dict, elapsed_s: float) -> AnalysisReport:
    truth = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    probabilities = {label: r.all_probabilities() for label, r in records.items()}
    both = np.isfinite(probabilities[STABLE]) & np.isfinite(probabilities[CANARY])
    studies = aggregate_by_study(study_ids, np.zeros(len(truth)), truth) if len(truth) \
        else None
    report = AnalysisReport(
        stable_version=(expected_versions or {}).get(STABLE),
        canary_version=(expected_versions or {}).get(CANARY),
        slices=int(len(truth)),
        studies=0 if studies is None else len(studies.study_ids),
        positive_studies=0 if studies is None else int(studies.label.sum()),
        labels={}, agreement={}, data=data, elapsed_s=round(elapsed_s, 3))
    for label, record in records.items():
        report.labels[label] = _label_metrics(record, probabilities[label], both, truth,
                                              study_ids, thresholds.decision_threshold)
    report.agreement = _agreement(probabilities, both,
                                  {label: m["threshold"] for label, m in report.labels.items()})
    return report


def _label_metrics(record: LabelRecord, probabilities: np.ndarray, both: np.ndarray,
                   truth: np.ndarray, study_ids: list[str], override: float | None) -> dict:
    errors = int(np.sum(~np.isfinite(probabilities)))
    latencies = np.asarray(record.latencies_ms)
    kept = np.flatnonzero(both)
    if override is not None:
        threshold, source = override, "operator's"
    elif record.model_threshold is not None:
        threshold, source = record.model_threshold, "model's"
    else:
        threshold, source = DECISION_THRESHOLD, "fallback"
    nan = float("nan")
    study = {"study_auc": nan, "study_auc_ci_low": nan, "study_auc_ci_high": nan,
             "sensitivity": nan, "sensitivity_ci_low": nan, "sensitivity_ci_high": nan,
             "specificity": nan, "specificity_ci_low": nan, "specificity_ci_high": nan,
             "conclusive": False, "caveat": "too small to conclude: no study answered"}
    studies = 0
    if kept.size:
        scores = aggregate_by_study([study_ids[i] for i in kept], probabilities[kept],
                                    truth[kept])
        studies = len(scores.study_ids)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedAUCWarning)
            intervals = bootstrap_study_metrics(scores.mean_probability, scores.label,
                                                threshold, what="study AUC")
        for name, prefix in (("auc", "study_auc"), ("sensitivity", "sensitivity"),
                             ("specificity", "specificity")):
            interval = getattr(intervals, name)
            study.update({prefix: interval.estimate, f"{prefix}_ci_low": interval.low,
                          f"{prefix}_ci_high": interval.high})
        study.update(conclusive=intervals.conclusive, caveat=intervals.caveat)
    return {
        **study,
        "threshold": threshold,
        "threshold_source": source,
        "requests": record.failed_requests + len(latencies),
        "failed_requests": record.failed_requests,
        "slices": int(probabilities.size),
        "error_slices": errors,
        "error_rate": errors / probabilities.size if probabilities.size else 0.0,
        "errors": dict(record.errors.most_common(5)),
        "failed_codes": dict(record.failed_codes),
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else None,
        "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies.size else None,
        "auc_studies": studies,
        "versions": {str(v): n for v, n in sorted(record.versions.items())},
    }


def _agreement(probabilities: dict[str, np.ndarray], both: np.ndarray,
               threshold: dict[str, float]) -> dict:
    """Each label's calls at its own threshold: what a user of that version would be told."""
    stable, canary = probabilities[STABLE][both], probabilities[CANARY][both]
    if not stable.size:
        return {"agreement": float("nan"), "mean_abs_difference": float("nan"),
                "compared_slices": 0}
    return {"agreement": float(np.mean((stable > threshold[STABLE])
                                       == (canary > threshold[CANARY]))),
            "mean_abs_difference": float(np.mean(np.abs(canary - stable))),
            "compared_slices": int(stable.size)}


# ---------------------------------------------------------------------------- decision
def decide(report: AnalysisReport, thresholds: AnalysisThresholds) -> list[Check]:
    stable, canary = report.labels[STABLE], report.labels[CANARY]
    checks = [Check("canary error rate", canary["error_rate"], thresholds.max_error_rate, "<=",
                    canary["error_rate"] <= thresholds.max_error_rate,
                    "; ".join(canary["errors"])[:300])]
    drop = stable["study_auc"] - canary["study_auc"]
    auc_note = (f"stable {_num(stable['study_auc'])}, canary {_num(canary['study_auc'])} over "
                f"{canary['auc_studies']} studies answered by both")
    if math.isnan(drop):
        auc_note += "; undefined (needs studies of both classes answered by both labels)"
    checks.append(Check("study AUC drop", drop, thresholds.max_auc_drop, "<=",
                        not math.isnan(drop) and drop <= thresholds.max_auc_drop, auc_note))
    checks.append(_latency_check(stable["latency_p99_ms"], canary["latency_p99_ms"],
                                 thresholds))
    agreement = report.agreement["agreement"]
    checks.append(Check("agreement with stable", agreement, thresholds.min_agreement, ">=",
                        not math.isnan(agreement) and agreement >= thresholds.min_agreement,
                        f"{report.agreement['compared_slices']} slices compared at "
                        f"p > {_num(stable.get('threshold'))} (stable) and "
                        f"p > {_num(canary.get('threshold'))} (canary)"))
    expected = {STABLE: report.stable_version, CANARY: report.canary_version}
    for label, version in expected.items():
        answered = report.labels[label]["versions"]
        if version is None or not answered:
            continue
        share = answered.get(str(version), 0) / sum(answered.values())
        checks.append(Check(f"{label} answered by version {version}", share, 1.0, ">=",
                            share >= 1.0, "" if share >= 1.0 else
                            f"answers came from versions {answered}: the labels moved during "
                            "the analysis"))
    return checks


def _latency_check(stable_p99: float | None, canary_p99: float | None,
                   thresholds: AnalysisThresholds) -> Check:
    name, limit = "p99 latency ratio", thresholds.max_p99_latency_ratio
    if stable_p99 is None or canary_p99 is None:
        return Check(name, None, limit, "<=", False, "no successful requests to measure")
    ratio = canary_p99 / stable_p99 if stable_p99 > 0 else float("inf")
    passed = canary_p99 <= limit * stable_p99 + thresholds.latency_slack_ms
    return Check(name, ratio, limit, "<=", passed,
                 f"stable {stable_p99:.1f} ms, canary {canary_p99:.1f} ms (slack "
                 f"{thresholds.latency_slack_ms:g} ms)")


def _interval(metrics: dict, name: str) -> str:
    """'0.9000 (95% CI 0.8000-1.0000)' from a label's metrics; n/a when undefined."""
    value, low, high = (metrics.get(k) for k in (name, f"{name}_ci_low", f"{name}_ci_high"))
    if _num(value) == "n/a":
        return "n/a"
    return f"{_num(value)} (95% CI {_num(low)}-{_num(high)})"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def _num(value: float | None) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.4f}"


def _json_safe(value):
    """NaN/inf are not JSON: they become None (shown as n/a)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
