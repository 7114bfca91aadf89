"""Settings of the rollout tool and of its canary analysis: light (no gRPC, no numpy), so
`mspipe rollout ... --help` reads the defaults, and each analysis threshold is declared once,
beside its command-line option (serving/api/settings.py)."""
from __future__ import annotations

from dataclasses import dataclass

from components.contract import DECISION_THRESHOLD, DEFAULT_MODEL_NAME
from serving.api.settings import option_field


@dataclass(frozen=True)
class RolloutSettings:
    model_config: str                  # the models.config the server reads
    server: str                        # gRPC HOST:PORT of the model server
    model_name: str = DEFAULT_MODEL_NAME
    load_timeout_s: float = 300.0      # for a new version to become AVAILABLE
    unload_timeout_s: float = 60.0     # for a dropped version to reach END
    poll_interval_s: float = 0.2       # GetModelStatus polling period


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


@dataclass(frozen=True)
class AnalysisSettings:
    batch_size: int = option_field("--batch-size", "slices per Predict request", 16)
    warmup_requests: int = 2            # per label, not measured
    max_slices: int | None = option_field(
        "--max-slices", "stop after this many slices (default: all)", None, type=int)
    progress_every_s: float = 2.0       # how often partial results are reported
