"""Live analysis (serving/rollout/live.py) on recorded metric pages, and the labelled
analysis's outage rule (analysis.verdict): pure, no server.

Pages are written by the local server's own exporter (serving/server/metrics.py, TF Serving's
series and format) after recording the requests a fleet would have served, plus one page
copied in TF Serving's text format; a replica that is down raises what fetching it raises."""
from __future__ import annotations

import json

import grpc
import numpy as np
import pytest

from serving.api.errors import ServingError
from serving.client.model_client import PredictResult
from serving.rollout.analysis import (CANARY, STABLE, AnalysisReport, Check, LabelRecord,
                                      verdict)
from serving.rollout.live import (LiveAnalysis, MetricsUnavailable, metrics_url, parse_counts)
from serving.rollout.settings import AnalysisThresholds
from serving.rollout.state import update_model_state
from serving.server.metrics import ServerMetrics

MODEL = "ms"
THRESHOLDS = AnalysisThresholds(live_min_requests=20, live_min_p99_requests=200)

TF_SERVING_PAGE = """\
# TYPE :tensorflow:serving:request_count counter
:tensorflow:serving:request_count{model_name="ms",status="OK"} 120
:tensorflow:serving:request_count{model_name="ms",status="INVALID_ARGUMENT"} 3
:tensorflow:serving:request_count{model_name="other",status="OK"} 999
# TYPE :tensorflow:serving:request_latency histogram
:tensorflow:serving:request_latency_bucket{model_name="ms",API="Predict",entrypoint="GRPC",status="OK",le="1000"} 100
:tensorflow:serving:request_latency_bucket{model_name="ms",API="Predict",entrypoint="GRPC",status="OK",le="+Inf"} 110
:tensorflow:serving:request_latency_sum{model_name="ms",API="Predict",entrypoint="GRPC",status="OK"} 90000
:tensorflow:serving:request_latency_count{model_name="ms",API="Predict",entrypoint="GRPC",status="OK"} 110
:tensorflow:serving:request_latency_bucket{model_name="ms",API="predict",entrypoint="REST",status="OK",le="1000"} 5
:tensorflow:serving:request_latency_bucket{model_name="ms",API="predict",entrypoint="REST",status="OK",le="+Inf"} 10
:tensorflow:serving:request_latency_bucket{model_name="ms",API="Predict",entrypoint="GRPC",status="INVALID_ARGUMENT",le="1000"} 3
:tensorflow:serving:request_latency_bucket{model_name="ms",API="Predict",entrypoint="GRPC",status="INVALID_ARGUMENT",le="+Inf"} 3
# TYPE :tensorflow:cc:saved_model:load_attempt_count counter
:tensorflow:cc:saved_model:load_attempt_count{model_path="/models/ms/3",status="success"} 1
"""


class Fleet:
    """Replicas as their metrics exporters; traffic is recorded as each would count it."""

    def __init__(self, names=("r1:8501", "r2:8501")):
        self.metrics = {name: ServerMetrics() for name in names}
        self.down: set[str] = set()
        self._next = 0

    def fetch(self, url: str) -> str:
        for name, metrics in self.metrics.items():
            if url == metrics_url(name):
                if name in self.down:
                    raise MetricsUnavailable(f"{url}: [Errno 111] Connection refused")
                return metrics.page()
        raise AssertionError(url)

    def _request(self, status: str, latency_ms: float) -> None:
        """One gRPC Predict, round-robin over the replicas."""
        names = list(self.metrics)
        metrics = self.metrics[names[self._next % len(names)]]
        self._next += 1
        metrics.request_count.labels(MODEL, status).inc()
        if status == "OK":
            metrics.request_latency.labels(MODEL, "Predict", "GRPC").observe(latency_ms * 1000)

    def studies(self, count: int, weight: float, *, canary_status: str = "OK",
                canary_ms: float = 10.0, stable_status: str = "OK",
                stable_ms: float = 10.0) -> None:
        """`count` studies, a share `weight` to the canary (as the router's hash would), a
        failed canary request asked again of stable (traffic.py's fallback)."""
        for index in range(count):
            to_canary = (index * weight) % 1.0 + weight >= 1.0 - 1e-9 and weight > 0
            if to_canary:
                self._request(canary_status, canary_ms)
                if canary_status == "OK":
                    continue
            self._request(stable_status, stable_ms)

    def restart(self, name: str) -> None:
        self.metrics[name] = ServerMetrics()


def live(fleet: Fleet, **thresholds) -> LiveAnalysis:
    settings = AnalysisThresholds(**{**THRESHOLDS.__dict__, **thresholds})
    return LiveAnalysis(list(fleet.metrics), MODEL, settings, fetch=fleet.fetch)


def with_baseline(fleet: Fleet, analysis: LiveAnalysis, studies: int = 200):
    analysis.begin(canary_weight=0.0)
    fleet.studies(studies, 0.0)
    result = analysis.judge(1, 2)
    assert result.verdict == "pass", result
    assert "baseline kept" in result.reasons[0]
    return analysis


def test_parse_counts_reads_one_model_of_a_tf_serving_page():
    counts = parse_counts(TF_SERVING_PAGE, MODEL)
    assert counts.by_status == {"OK": 120, "INVALID_ARGUMENT": 3}
    assert (counts.requests, counts.errors) == (123, 3)
    # GRPC and REST summed, the failed requests' histogram (status label) left out
    assert counts.latency == ((1000.0, 105.0), (float("inf"), 120.0))
    assert parse_counts(TF_SERVING_PAGE, "absent").requests == 0


def test_histogram_quantile_and_tail_share():
    counts = parse_counts(TF_SERVING_PAGE, MODEL)
    assert counts.quantile_us(0.5) == pytest.approx(1000 * 60 / 105)
    assert counts.quantile_us(0.99) == 1000.0  # in +Inf: the last finite bound, as Prometheus
    assert counts.share_slower_than(1000.0) == pytest.approx(15 / 120)
    assert counts.share_slower_than(500.0) == pytest.approx((120 - 52.5) / 120)


def test_healthy_canary_passes_each_step():
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    for weight in (0.1, 0.5, 1.0):
        analysis.begin(canary_weight=weight)
        fleet.studies(400, weight)
        result = analysis.judge(1, 2)
        assert result.verdict == "pass", result
        assert result.name == "live analysis"
        assert any(reason.startswith("PASS canary error rate") for reason in result.reasons)
        assert any(reason.startswith("replica r2:8501: ") for reason in result.reasons)


def test_failing_canary_fails_on_error_excess():
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    analysis.begin(canary_weight=0.1)
    fleet.studies(400, 0.1, canary_status="INVALID_ARGUMENT")
    result = analysis.judge(1, 2)
    assert result.verdict == "fail", result
    failed = [reason for reason in result.reasons if reason.startswith("FAIL")]
    assert len(failed) == 1 and "canary error rate ~1.000" in failed[0], result


def test_slow_canary_fails_on_latency():
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    analysis.begin(canary_weight=0.5)
    fleet.studies(400, 0.5, canary_ms=200.0)
    result = analysis.judge(1, 2)
    assert result.verdict == "fail", result
    assert any(r.startswith("FAIL canary p50 latency") for r in result.reasons), result
    assert any(r.startswith("FAIL canary p99 latency") for r in result.reasons), result


def test_outage_that_hits_stable_is_inconclusive_never_fail():
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    analysis.begin(canary_weight=0.1)
    fleet.studies(400, 0.1, canary_status="UNAVAILABLE", stable_status="UNAVAILABLE")
    result = analysis.judge(1, 2)
    assert result.verdict == "inconclusive", result
    assert "outage" in result.reasons[0] and "UNAVAILABLE" in result.reasons[0]


def test_errors_beyond_the_canary_share_are_stable_failing_too():
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    analysis.begin(canary_weight=0.1)
    fleet.studies(400, 0.1, canary_status="INTERNAL", stable_status="INTERNAL")
    result = analysis.judge(1, 2)
    assert result.verdict == "inconclusive", result
    assert "stable failed too" in result.reasons[0]


@pytest.mark.parametrize("when", ["start", "end"])
def test_unreachable_replica_is_inconclusive_and_named(when):
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    if when == "start":
        fleet.down.add("r2:8501")
    analysis.begin(canary_weight=0.1)
    fleet.down.discard("r2:8501") if when == "start" else fleet.down.add("r2:8501")
    fleet.studies(400, 0.1, canary_status="INVALID_ARGUMENT")
    result = analysis.judge(1, 2)
    assert result.verdict == "inconclusive", result
    assert f"replica r2:8501 unreachable at the step's {when}" in result.reasons[1]
    assert "Connection refused" in result.reasons[1]


def test_restarted_replica_is_inconclusive():
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    analysis.begin(canary_weight=0.1)
    fleet.restart("r1:8501")
    fleet.studies(40, 0.1)
    result = analysis.judge(1, 2)
    assert result.verdict == "inconclusive", result
    assert "replica r1:8501 restarted during the step" in result.reasons[1]


def test_too_few_requests_is_inconclusive():
    fleet = Fleet()
    analysis = with_baseline(fleet, live(fleet))
    analysis.begin(canary_weight=0.1)
    fleet.studies(100, 0.1)  # ~10 canary requests, 20 needed
    result = analysis.judge(1, 2)
    assert result.verdict == "inconclusive" and "too few canary requests" in result.reasons[0]
    small = live(fleet)
    small.begin(canary_weight=0.0)
    fleet.studies(5, 0.0)
    assert small.judge(1, 2).verdict == "inconclusive"
    assert small.baseline is None


def test_without_baseline_latency_cannot_be_judged():
    fleet = Fleet()
    analysis = live(fleet)
    analysis.begin(canary_weight=0.5)
    fleet.studies(400, 0.5)
    result = analysis.judge(1, 2)
    assert result.verdict == "inconclusive", result
    assert any("no weight-0 baseline" in reason for reason in result.reasons)


def test_baseline_survives_a_new_instance():
    fleet = Fleet()
    first = with_baseline(fleet, live(fleet))
    stored = json.loads(json.dumps(first.baseline))  # e.g. in the rollout state file
    resumed = LiveAnalysis(list(fleet.metrics), MODEL, THRESHOLDS, baseline=stored,
                           fetch=fleet.fetch)
    resumed.begin()
    fleet.studies(400, 0.5, canary_ms=200.0)
    assert resumed.judge(1, 2, canary_weight=0.5).verdict == "fail"
    with pytest.raises(RuntimeError, match="canary weight"):
        resumed.begin()
        resumed.judge(1, 2)


# ------------------------------------------------------------------ labelled analysis
def report_of(stable_error: ServingError | None, canary_error: ServingError | None,
              requests: int = 4) -> AnalysisReport:
    """A finished shadow analysis whose requests failed so, and whose error check failed
    when any did (the AUC is left out: it needs scikit-learn, seconds to import)."""
    records = {STABLE: LabelRecord(STABLE), CANARY: LabelRecord(CANARY)}
    for label, error, version in ((STABLE, stable_error, 1), (CANARY, canary_error, 2)):
        def call(error=error, version=version):
            if error is not None:
                raise error
            return PredictResult(np.array([0.2, 0.6], np.float32), None, MODEL, version,
                                 "serving_default")
        for _ in range(requests):
            records[label].add(2, call)
    labels = {label: {"requests": requests, "failed_codes": dict(record.failed_codes)}
              for label, record in records.items()}
    canary_failed = records[CANARY].failed_requests
    check = Check("canary error rate", canary_failed / requests, 0.0, "<=", not canary_failed)
    return AnalysisReport(1, 2, 2 * requests, 1, 0, labels, {}, checks=[check])


def test_server_down_during_analysis_is_inconclusive_not_rollback():
    down = ServingError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    report = report_of(down, down)
    assert report.labels[STABLE]["failed_codes"] == {"UNAVAILABLE": 4}
    decision, reason = verdict(report)
    assert decision == "inconclusive"
    assert "stable failed too (4 UNAVAILABLE of 4 requests)" in reason


def test_canary_only_failures_still_roll_back():
    bad = ServingError(grpc.StatusCode.INVALID_ARGUMENT, "input 'pixels' missing")
    assert verdict(report_of(None, bad)) == ("rollback", "")
    down = ServingError(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    assert verdict(report_of(None, down)) == ("rollback", "")  # stable answered: not an outage
    assert verdict(report_of(None, None)) == ("promote", "")


def test_replica_addresses_and_default_thresholds():
    page = "/monitoring/prometheus/metrics"
    assert metrics_url("10.0.0.7:8501") == f"http://10.0.0.7:8501{page}"
    assert metrics_url("http://10.0.0.7:8501/") == f"http://10.0.0.7:8501{page}"
    assert metrics_url("https://r1.svc/custom/path") == "https://r1.svc/custom/path"
    assert LiveAnalysis(["r1:8501"], MODEL, None).thresholds == AnalysisThresholds()


def test_weight_is_read_from_the_rollout_state_and_judge_starts_the_next_window(tmp_path):
    config = tmp_path / "models.config"

    def set_weight(weight):
        def change(state):
            state.stable_version, state.canary_version, state.weight = 1, 2, weight
        update_model_state(config, MODEL, change)

    fleet = Fleet()
    analysis = LiveAnalysis(list(fleet.metrics), MODEL, THRESHOLDS, model_config=config,
                            fetch=fleet.fetch)
    set_weight(0.0)
    analysis.begin()
    fleet.studies(200, 0.0)
    assert analysis.judge(1, 2).reasons[0].startswith("stable v1 vs canary v2 at weight 0%")
    set_weight(0.5)
    analysis.begin()
    fleet.studies(30, 0.5)
    first = analysis.judge(1, 2)  # ~15 canary requests: too few, the window goes on
    assert first.verdict == "inconclusive" and "at weight 50%" in first.reasons[0]
    fleet.studies(400, 0.5, canary_status="INVALID_ARGUMENT")
    assert analysis.judge(1, 2).verdict == "fail"
    fleet.studies(400, 0.5)  # judged again without begin(): only the traffic since
    assert analysis.judge(1, 2).verdict == "pass"
