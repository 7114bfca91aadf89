"""Live analysis of a canary step from the replicas' Prometheus metrics.

What the replicas can tell. TF Serving 2.16 (and the local server, which exports the same
series and must not invent others) counts requests per model and status,
`:tensorflow:serving:request_count{model_name,status}`, and times the successful ones,
`:tensorflow:serving:request_latency{model_name,API,entrypoint}` (microseconds, buckets
10 * 1.8^i): neither has a version label (servables/tensorflow/util.cc), so error rate and
latency per version cannot be read off one series. The split between versions is made by the
client (serving/rollout/traffic.py: a share `weight` of studies goes to `canary`, one request
per study, and a failed canary request is asked again of `stable`).

So the estimate is made from windows, all replicas summed (each replica's counters are read at
`begin()` and at `judge()`; the window is the difference):
- baseline: a window at weight 0 (the shadow step) is stable alone. It gives stable's error
  rate e_s and latency distribution; `LiveAnalysis.baseline` (JSON-safe) can be stored and
  given back to a new LiveAnalysis, so a tool that restarts mid-rollout keeps it. The baseline
  window must not overlap the labelled shadow analysis (analysis.py), whose requests to
  `canary` the counters would book as stable's.
- step at weight w: N requests, E errors. Canary errors x and canary requests C solve
  E = x + (N - C) e_s and C = w (N - x) (a failed canary request is retried on stable, so it
  adds a request). Canary error rate x / C, compared with e_s: the excess must stay within
  `live_max_error_excess`. (A client that does not retry makes C a little smaller than
  estimated, which overstates the canary's errors: the cautious side.)
- latency: canary p50 <= ratio * stable p50 + slack holds exactly when at most half of the
  canary's requests are slower than that bound T. The share of the window slower than T minus
  what stable alone puts there (baseline share times stable's requests) estimates the canary
  requests slower than T. Same for p99 (at most 1 %), judged only over
  `live_min_p99_requests` canary requests: a 1 % tail needs that many to mean anything.

Inconclusive (retry the step; never a rollback), with the reason:
- a replica unreachable at the start or the end of the window, or restarted within it
  (its counters went back): its requests are unknown, and an outage may have hit stable too;
- errors of an outage kind (UNAVAILABLE, DEADLINE_EXCEEDED, ...: serving/api/errors.py
  OUTAGE_CODES) above the baseline's rate, or more errors than the canary's share of requests
  can explain: stable failed too;
  (a replica that served more since its restart than before it is not seen as restarted:
  TF Serving exports no start time);
- fewer than `live_min_requests` canary requests in the step (or stable ones in the baseline);
- no baseline yet, when the errors or latencies would need one to be told apart.

Limits, said plainly: the estimate is statistical (the canary's share of requests follows the
study hash, not the weight exactly; latency comes from histogram buckets 1.8x wide, read with
linear interpolation); a canary that answers NaN with status OK is invisible here (the labelled
shadow analysis catches it); traffic that names a version number instead of a label is counted
as the label it resolves to would be, i.e. not at all; replicas are read over HTTP (the REST
port with --monitoring_config_file), so a scrape that cannot reach a replica makes the step
inconclusive even when only the metrics endpoint is down.
"""
from __future__ import annotations

import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from serving.api.errors import OUTAGE_CODES
from serving.rollout.checks import CheckResult
from serving.rollout.settings import AnalysisThresholds
from serving.rollout.state import RolloutStateError, read_model_state, state_path_for
from serving.server.metrics import DEFAULT_PATH

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"


class MetricsUnavailable(RuntimeError):
    """A replica's metrics page could not be read (the message says which and why)."""


def metrics_url(replica: str, path: str = DEFAULT_PATH) -> str:
    """A replica given as HOST:REST_PORT, as its REST base URL (http://HOST:8501), or as the
    full URL of its metrics page (a path other than the default one)."""
    if "://" not in replica:
        return f"http://{replica}{path}"
    if urllib.parse.urlsplit(replica).path in ("", "/"):
        return replica.rstrip("/") + path
    return replica


def fetch_page(url: str, timeout_s: float = 2.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as reply:
            return reply.read().decode("utf-8")
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        raise MetricsUnavailable(f"{url}: {reason}") from None


# ---------------------------------------------------------------------------- counts
@dataclass(frozen=True)
class Counts:
    """One model's request counters: by status, and the successful requests' latency as
    (upper bound in microseconds, cumulative count) pairs, +Inf last. On one replica these
    are totals since it started; the difference of two is a window."""
    by_status: dict[str, float] = field(default_factory=dict)
    latency: tuple[tuple[float, float], ...] = ()

    @property
    def requests(self) -> float:
        return sum(self.by_status.values())

    @property
    def errors(self) -> float:
        return sum(n for status, n in self.by_status.items() if status != "OK")

    def errors_of(self, codes: frozenset[str]) -> float:
        return sum(n for status, n in self.by_status.items() if status in codes)

    def minus(self, earlier: "Counts") -> "Counts | None":
        """The window since `earlier`; None when a counter went back (a restart)."""
        by_status = {status: n - earlier.by_status.get(status, 0.0)
                     for status, n in self.by_status.items()}
        if any(n < 0 for n in by_status.values()) or set(earlier.by_status) - set(by_status):
            return None
        before = dict(earlier.latency)
        if set(before) - {le for le, _ in self.latency}:
            return None
        latency = tuple((le, n - before.get(le, 0.0)) for le, n in self.latency)
        if any(n < 0 for _, n in latency):
            return None
        return Counts(by_status, latency)

    def plus(self, other: "Counts") -> "Counts":
        by_status = dict(self.by_status)
        for status, n in other.by_status.items():
            by_status[status] = by_status.get(status, 0.0) + n
        merged = dict(self.latency)
        for le, n in other.latency:
            merged[le] = merged.get(le, 0.0) + n
        return Counts(by_status, tuple(sorted(merged.items())))

    def share_slower_than(self, bound_us: float) -> float:
        """Share of the timed (successful) requests slower than bound_us (interpolated)."""
        total = self.latency[-1][1] if self.latency else 0.0
        return (total - _cumulative_at(self.latency, bound_us)) / total if total else 0.0

    def quantile_us(self, q: float) -> float | None:
        """As Prometheus' histogram_quantile: linear within the bucket."""
        total = self.latency[-1][1] if self.latency else 0.0
        if not total:
            return None
        rank, lower, below = q * total, 0.0, 0.0
        for le, cumulative in self.latency:
            if cumulative >= rank:
                if le == float("inf"):
                    return lower
                inside = cumulative - below
                return lower + (le - lower) * ((rank - below) / inside if inside else 0.0)
            lower, below = le, cumulative
        return lower

    def to_dict(self) -> dict:
        return {"by_status": dict(self.by_status),
                "latency": [["+Inf" if le == float("inf") else le, n] for le, n in self.latency]}

    @classmethod
    def from_dict(cls, data: dict) -> "Counts":
        return cls(dict(data["by_status"]), tuple((float(le), float(n))
                                                  for le, n in data["latency"]))


def _cumulative_at(latency: tuple[tuple[float, float], ...], bound: float) -> float:
    lower, below = 0.0, 0.0
    for le, cumulative in latency:
        if bound < le:
            if le == float("inf"):
                return below
            return below + (cumulative - below) * (bound - lower) / (le - lower)
        lower, below = le, cumulative
    return below


def parse_counts(text: str, model_name: str) -> Counts:
    """`model_name`'s request counts and latency histogram from a metrics page, summed over
    API and entrypoint (and over a status label on the histogram, keeping status OK, should a
    server add one as later TF Serving releases do)."""
    by_status: dict[str, float] = {}
    latency: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name == REQUEST_COUNT:
            for sample in family.samples:
                if sample.labels.get("model_name") == model_name and \
                        not sample.name.endswith("_created"):
                    status = sample.labels.get("status", "")
                    by_status[status] = by_status.get(status, 0.0) + sample.value
        elif family.name == REQUEST_LATENCY:
            for sample in family.samples:
                labels = sample.labels
                if sample.name.endswith("_bucket") and labels.get("model_name") == model_name \
                        and labels.get("status", "OK") == "OK":
                    le = float(labels["le"])
                    latency[le] = latency.get(le, 0.0) + sample.value
    return Counts(by_status, tuple(sorted(latency.items())))


# ---------------------------------------------------------------------------- analysis
class StepJudgement(NamedTuple):
    verdict: str
    reasons: list[str]
    too_few: bool = False   # inconclusive for want of requests: the window keeps growing


class LiveAnalysis:
    """begin() at the start of a step, judge() at its end; one instance per rollout.

    The step's canary weight is given to begin() or judge(), or read at begin() from the
    rollout state beside `model_config` (where the router reads it: traffic.py). judge()
    starts the next window (a judge() again without begin() looks at the traffic since the
    last one), except when it lacked requests: then the window goes on growing."""

    name = "live analysis"

    def __init__(self, replicas: Sequence[str], model_name: str,
                 thresholds: AnalysisThresholds | None = None, *,
                 model_config: str | os.PathLike | None = None,
                 baseline: dict | None = None,
                 fetch: Callable[[str], str] = fetch_page):
        if not replicas:
            raise ValueError("live analysis needs at least one replica's metrics address")
        self.urls = {replica: metrics_url(replica) for replica in replicas}
        self.model_name = model_name
        self.thresholds = thresholds or AnalysisThresholds()
        self.model_config = model_config
        self.baseline: dict | None = baseline  # Counts.to_dict() of a weight-0 window
        self._fetch = fetch
        self._start: dict[str, Counts | str] | None = None
        self._weight: float | None = None

    def _read(self) -> dict[str, Counts | str]:
        """Each replica's totals, or the reason they could not be read."""
        found: dict[str, Counts | str] = {}
        for replica, url in self.urls.items():
            try:
                found[replica] = parse_counts(self._fetch(url), self.model_name)
            except MetricsUnavailable as error:
                found[replica] = str(error)
            except ValueError as error:  # not a Prometheus page
                found[replica] = f"{url}: unreadable metrics page ({error})"
        return found

    def begin(self, canary_weight: float | None = None) -> None:
        """Snapshot every replica's counters: the step's window starts now."""
        self._start = self._read()
        self._weight = canary_weight if canary_weight is not None else self._state_weight()

    def _state_weight(self) -> float | None:
        if self.model_config is None:
            return None
        try:
            state = read_model_state(state_path_for(self.model_config), self.model_name)
        except RolloutStateError:
            return None  # judge() says the weight is unknown
        return state.weight if state.active else 0.0

    def judge(self, stable_version: int, canary_version: int,
              canary_weight: float | None = None) -> CheckResult:
        """The step's verdict from the window since begin(). `canary_weight` is the step's
        share of studies routed to the canary (default: the one given to begin()); 0 makes
        this window stable's baseline."""
        if self._start is None:
            raise RuntimeError("LiveAnalysis.judge() before begin()")
        weight = self._weight if canary_weight is None else canary_weight
        if weight is None:  # a wiring bug, not bad input
            raise RuntimeError("live analysis needs the step's canary weight: give it to "
                               "begin() or judge(), or give LiveAnalysis the model_config "
                               "whose rollout state holds it")
        if not 0.0 <= weight <= 1.0:
            raise ValueError(f"canary weight must be within [0, 1], got {weight}")
        end = self._read()
        window, problems, per_replica = self._window(end)
        what = f"stable v{stable_version} vs canary v{canary_version} at weight {weight:.0%}"
        if problems:
            judgement = StepJudgement(INCONCLUSIVE, [f"{what}: replica outage, retry the step",
                                                     *problems])
        elif weight == 0.0:
            judgement = self._judge_baseline(window, what)
        else:
            judgement = judge_step(window, weight, self._baseline_counts(), self.thresholds)
            judgement.reasons[0] = f"{what}: {judgement.reasons[0]}"
        if not judgement.too_few:
            self._start = end
        return CheckResult(self.name, judgement.verdict, (*judgement.reasons, *per_replica))

    def _window(self, end: dict[str, Counts | str]
                ) -> tuple[Counts, list[str], list[str]]:
        total, problems, per_replica = Counts(), [], []
        for replica in self.urls:
            first, last = self._start.get(replica), end.get(replica)
            if isinstance(first, str):
                problems.append(f"replica {replica} unreachable at the step's start: {first}")
            if isinstance(last, str):
                problems.append(f"replica {replica} unreachable at the step's end: {last}")
            if isinstance(first, str) or isinstance(last, str):
                continue
            delta = last.minus(first)
            if delta is None:
                problems.append(f"replica {replica} restarted during the step (its counters "
                                "went back): its requests are unknown")
                continue
            per_replica.append(f"replica {replica}: {delta.requests:.0f} requests, "
                               f"{delta.errors:.0f} failed{_statuses(delta)}")
            total = total.plus(delta)
        return total, problems, per_replica

    def _judge_baseline(self, window: Counts, what: str) -> StepJudgement:
        minimum = self.thresholds.live_min_requests
        summary = (f"{window.requests:.0f} requests, error rate {_rate(window)}, "
                   f"p50 {_ms(window.quantile_us(0.5))}, p99 {_ms(window.quantile_us(0.99))}")
        if window.requests < minimum:
            return StepJudgement(INCONCLUSIVE, [f"{what}: baseline window too small: "
                                                f"{summary} (needs {minimum})"], too_few=True)
        outages = window.errors_of(OUTAGE_CODES)
        if outages:
            return StepJudgement(INCONCLUSIVE, [
                f"{what}: stable-only window met {outages:.0f} outage error(s)"
                f"{_statuses(window)}; not kept as baseline, retry"])
        self.baseline = window.to_dict()
        return StepJudgement(PASS, [f"{what}: stable-only baseline kept: {summary}"])

    def _baseline_counts(self) -> Counts | None:
        return None if self.baseline is None else Counts.from_dict(self.baseline)


def judge_step(window: Counts, weight: float, baseline: Counts | None,
               thresholds: AnalysisThresholds) -> StepJudgement:
    """The verdict on a step window at canary weight 0 < weight <= 1; pure."""
    N, E = window.requests, window.errors
    stable_rate = baseline.errors / baseline.requests if baseline and baseline.requests else 0.0
    canary_errors = max(0.0, (E - N * stable_rate * (1 - weight)) / (1 + weight * stable_rate))
    canary_requests = weight * (N - canary_errors)
    summary = (f"{N:.0f} requests, {E:.0f} failed{_statuses(window)}; canary ~"
               f"{canary_requests:.0f} requests, ~{canary_errors:.0f} failed")
    outage_rate = baseline.errors_of(OUTAGE_CODES) / baseline.requests \
        if baseline and baseline.requests else 0.0
    outages = window.errors_of(OUTAGE_CODES)
    if outages > outage_rate * N and outages > 0:
        return StepJudgement(INCONCLUSIVE, [f"outage: {outages:.0f} request(s) failed with "
                              f"{'/'.join(sorted(OUTAGE_CODES & set(window.by_status)))}; "
                              f"stable may have failed too, retry the step ({summary})"])
    spread = 3.0 * (canary_requests * (1 - weight)) ** 0.5  # the study hash's binomial noise
    if canary_errors > canary_requests + spread:
        return StepJudgement(INCONCLUSIVE, [
            f"more failures than the canary's share of requests can explain: stable failed "
            f"too, retry the step ({summary})"])
    if canary_requests < thresholds.live_min_requests:
        return StepJudgement(INCONCLUSIVE, [f"too few canary requests: {summary} (needs "
                                            f"{thresholds.live_min_requests})"], too_few=True)
    checks = [_error_check(canary_errors / canary_requests, stable_rate, baseline,
                           thresholds)]
    timed_canary = max(0.0, canary_requests - canary_errors)
    for q, ratio, needed in ((0.5, thresholds.live_max_p50_latency_ratio,
                              thresholds.live_min_requests),
                             (0.99, thresholds.live_max_p99_latency_ratio,
                              thresholds.live_min_p99_requests)):
        checks.append(_latency_check(window, baseline, timed_canary, q, ratio, needed,
                                     thresholds.latency_slack_ms))
    verdicts = [verdict for verdict, _ in checks]
    verdict = FAIL if FAIL in verdicts else INCONCLUSIVE if INCONCLUSIVE in verdicts else PASS
    return StepJudgement(verdict, [summary, *(reason for _, reason in checks)])


def _error_check(canary_rate: float, stable_rate: float, baseline: Counts | None,
                 thresholds: AnalysisThresholds) -> tuple[str, str]:
    excess, limit = canary_rate - stable_rate, thresholds.live_max_error_excess
    text = (f"canary error rate ~{canary_rate:.3f} vs stable {stable_rate:.3f}: excess "
            f"{excess:.3f} (must be <= {limit:g})")
    if excess <= limit:
        return PASS, f"PASS {text}"
    if baseline is None:  # without stable's own rate, these errors may be stable's
        return INCONCLUSIVE, f"INCONCLUSIVE {text}; no weight-0 baseline to tell stable's " \
                             "errors apart"
    return FAIL, f"FAIL {text}"


def _latency_check(window: Counts, baseline: Counts | None, timed_canary: float, q: float,
                   ratio: float, needed: int, slack_ms: float) -> tuple[str, str]:
    name = f"canary p{q * 100:.0f} latency"
    if baseline is None or baseline.quantile_us(q) is None:
        return INCONCLUSIVE, f"INCONCLUSIVE {name}: no weight-0 baseline of stable's latency"
    window_timed = window.latency[-1][1] if window.latency else 0.0
    if timed_canary < needed:
        return PASS, (f"not judged: {name} needs {needed} successful canary requests, "
                      f"~{timed_canary:.0f} in the step")
    stable_us = baseline.quantile_us(q)
    bound_us = ratio * stable_us + 1000.0 * slack_ms
    slower = window.share_slower_than(bound_us) * window_timed
    stable_slower = baseline.share_slower_than(bound_us) * max(0.0, window_timed - timed_canary)
    share = max(0.0, slower - stable_slower) / timed_canary
    allowed = 1.0 - q
    text = (f"{name}: ~{share:.1%} of canary requests slower than {_ms(bound_us)} "
            f"({ratio:g} x stable's {_ms(stable_us)} + {slack_ms:g} ms; must be <= "
            f"{allowed:.0%})")
    return (PASS, f"PASS {text}") if share <= allowed else (FAIL, f"FAIL {text}")


def _statuses(counts: Counts) -> str:
    failed = {s: n for s, n in counts.by_status.items() if s != "OK" and n}
    return " (" + ", ".join(f"{s} {n:.0f}" for s, n in sorted(failed.items())) + ")" \
        if failed else ""


def _rate(counts: Counts) -> str:
    return f"{counts.errors / counts.requests:.3f}" if counts.requests else "n/a"


def _ms(microseconds: float | None) -> str:
    return "n/a" if microseconds is None else f"{microseconds / 1000:.1f} ms"
