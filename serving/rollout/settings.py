"""Settings of the rollout tool and of its canary analysis: light (no gRPC, no numpy), so
`mspipe rollout ... --help` reads the defaults, and each analysis threshold is declared once,
beside its command-line option (serving/api/settings.py)."""
from __future__ import annotations

from dataclasses import dataclass

from components.contract import DECISION_THRESHOLD, DEFAULT_MODEL_NAME
from serving.api.settings import option_field


@dataclass(frozen=True)
class RolloutSettings:
    model_config: str                  # the models.config every replica reads
    server: str                        # gRPC HOST:PORT of the model server (first replica)
    model_name: str = DEFAULT_MODEL_NAME
    load_timeout_s: float = 300.0      # for a new version to become AVAILABLE everywhere
    unload_timeout_s: float = 60.0     # for a dropped version to reach END
    poll_interval_s: float = 0.2       # GetModelStatus polling period
    replicas: tuple[str, ...] = ()     # every replica's gRPC address (default: `server`)
    push_reload: bool = True           # also HandleReloadConfigRequest (else: replicas poll)
    converge_timeout_s: float = 120.0  # for every replica to answer the new labels
    tls_ca: str | None = None

    @property
    def replica_addresses(self) -> list[str]:
        return list(self.replicas) or [self.server]


@dataclass(frozen=True)
class AnalysisThresholds:
    """When a canary is 'no worse' than stable; every bound is inclusive."""
    max_auc_drop: float = option_field(
        "--max-auc-drop", "stable minus canary study AUC", 0.02)
    max_error_rate: float = option_field(
        "--max-error-rate", "canary's share of slices without a usable answer, NaN included",
        0.0)
    max_p99_latency_ratio: float = option_field(
        "--max-p99-latency-ratio", "canary p99 <= ratio * stable p99 + slack", 1.5)
    latency_slack_ms: float = option_field(
        "--latency-slack-ms", "p99 difference always tolerated, in ms (jitter, not a "
        "regression)", 5.0)
    min_agreement: float = option_field(
        "--min-agreement", "share of slices whose thresholded call agrees with stable", 0.9)
    decision_threshold: float | None = option_field(
        "--decision-threshold", "a slice or study is called positive when p > this (default: "
        "each version's own operating threshold, from its Predict replies; "
        f"{DECISION_THRESHOLD:g} for models exported without one)", None, type=float)
    # Live analysis (serving/rollout/live.py): the replicas' Prometheus counters over one step.
    live_max_error_excess: float = option_field(
        "--live-max-error-excess", "live traffic: canary error rate minus stable's, estimated "
        "from the step's request counts and weight", 0.01)
    live_max_p50_latency_ratio: float = option_field(
        "--live-max-p50-latency-ratio", "live traffic: canary p50 <= ratio * stable p50 + "
        "slack (stable's from the weight-0 baseline step)", 1.5)
    live_max_p99_latency_ratio: float = option_field(
        "--live-max-p99-latency-ratio", "live traffic: canary p99 <= ratio * stable p99 + "
        "slack", 2.0)
    live_min_requests: int = option_field(
        "--live-min-requests", "live traffic: fewer requests (to the canary in a step, to "
        "stable in the baseline) make the step inconclusive", 20)
    live_min_p99_requests: int = option_field(
        "--live-min-p99-requests", "live traffic: canary requests needed to judge its p99 "
        "(below, p99 is reported, not judged)", 200)


@dataclass(frozen=True)
class AnalysisSettings:
    batch_size: int = option_field("--batch-size", "slices per Predict request", 16)
    warmup_requests: int = 2            # per label, not measured
    max_slices: int | None = option_field(
        "--max-slices", "stop after this many slices (default: all)", None, type=int)
    progress_every_s: float = 2.0       # how often partial results are reported


@dataclass(frozen=True)
class StepPlan:
    weights: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0)  # canary share at each step; 0 = shadow
    step_seconds: float = 30.0          # live traffic at each step before it is judged
    inconclusive_retries: int = 3       # judge again this often before stopping undecided
    retry_wait_seconds: float = 10.0

    def __post_init__(self) -> None:
        weights = tuple(float(w) for w in self.weights)
        if not weights:
            raise ValueError("steps: give at least one step")
        if any(not 0.0 <= w <= 1.0 for w in weights):
            raise ValueError(f"steps: every weight must be within 0..100 %, got "
                             f"{[w * 100 for w in weights]}")
        if list(weights) != sorted(weights):
            raise ValueError(f"steps: weights must not decrease (a study routed to the canary "
                             f"stays there), got {[w * 100 for w in weights]}")
        if self.step_seconds < 0 or self.retry_wait_seconds < 0 or self.inconclusive_retries < 0:
            raise ValueError("steps: step_seconds, retry_wait_seconds and inconclusive_retries "
                             "must not be negative")
        object.__setattr__(self, "weights", weights)
