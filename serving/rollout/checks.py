"""What every check between two rollout steps answers, and the interface the step loop calls.

A check compares the canary with stable over one step and says `pass`, `fail` or
`inconclusive`:
- `fail` rolls the canary back, with the check's reasons as the rollback reason;
- `inconclusive` never rolls back: the step loop waits and asks again (an outage that also
  hits stable, too little traffic to judge), and gives up without deciding after its retries;
- `pass` from every check moves the rollout to the next step.

Two kinds plug into the step loop (serving/rollout/steps.py) through `StepCheck`:
- the labelled shadow analysis on held-out data (serving/rollout/analysis.py, wrapped in
  steps.py), and
- the live analysis of each replica's Prometheus metrics for the traffic of the current step
  (`serving.rollout.live.LiveAnalysis`). Its `replicas` are the replicas' **REST base URLs**,
  e.g. `http://10.0.0.7:8501` (TF Serving's --rest_api_port, where
  `/monitoring/prometheus/metrics` is served): one per gRPC replica the rollout tool resolved,
  in the same order. `begin()` snapshots the replicas' counters at the start of a step,
  `judge(stable_version, canary_version)` compares what happened since.

Light on purpose (no gRPC, no numpy): the CLI imports it to build its checks.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

Verdict = Literal["pass", "fail", "inconclusive"]
VERDICTS: tuple[str, ...] = ("pass", "fail", "inconclusive")


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict over one step, with the reasons a person reads (each one line)."""
    name: str
    verdict: Verdict
    reasons: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"check {self.name!r}: verdict must be one of {VERDICTS}, "
                             f"got {self.verdict!r}")
        object.__setattr__(self, "reasons", tuple(str(reason) for reason in self.reasons))

    def line(self) -> str:
        return f"{self.name}: {self.verdict}" + (f" ({'; '.join(self.reasons)})"
                                                 if self.reasons else "")

    def to_dict(self) -> dict:
        return {"name": self.name, "verdict": self.verdict, "reasons": list(self.reasons)}


@runtime_checkable
class StepCheck(Protocol):
    """What the step loop calls: `begin()` when a step's traffic starts, `judge()` after."""

    def begin(self) -> None: ...

    def judge(self, stable_version: int, canary_version: int) -> CheckResult: ...


def combined_verdict(results: list[CheckResult]) -> Verdict:
    """Any fail -> fail; else any inconclusive -> inconclusive; else pass (no check: pass)."""
    verdicts = {result.verdict for result in results}
    if "fail" in verdicts:
        return "fail"
    return "inconclusive" if "inconclusive" in verdicts else "pass"
