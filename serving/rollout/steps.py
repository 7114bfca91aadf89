"""Stepped release, as Argo Rollouts and Flagger do: shadow (weight 0) -> analysis -> 10 % ->
analysis -> 50 % -> ... -> promote, with every check judged between steps.

The plan (`StepPlan`) comes from flags (`--steps 0,10,50,100 --step-seconds 30`) or a JSON
file (`{"steps": [0, 10, 50, 100], "step_seconds": 30, "inconclusive_retries": 3,
"retry_wait_seconds": 10}`). The weights are the canary's share of studies, which the
client-side router reads from the rollout state (serving/rollout/traffic.py).

Each step: set the weight, `begin()` every check, let the step's traffic run for
`step_seconds`, then `judge()` every check (serving/rollout/checks.py):
- any `fail` rolls back with the failing checks' reasons;
- `inconclusive` (an outage that hits stable too, too little data) waits `retry_wait_seconds`
  and judges again, never rolls back; after `inconclusive_retries` the run stops undecided,
  the canary stays at its weight, and running the same command again resumes;
- all `pass`: the next step; after the last one, promote.

The plan and the step reached are kept in the rollout state (models.config.rollout.json), so a
crashed or interrupted tool resumes at the step it was in (judging it again from its start).

The checks: the labelled shadow analysis on held-out data (flow.LabelledAnalysisCheck), and the
live analysis of the replicas' metrics (`serving/rollout/live.py`), when the replicas' REST
ports are given (`live_check`).
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from serving.rollout.checks import CheckResult, StepCheck, combined_verdict
from serving.rollout.controller import RolloutController, RolloutError
from serving.rollout.settings import AnalysisThresholds, StepPlan
from serving.rollout.state import ModelRollout, read_model_state, update_model_state


def parse_weights(text: str) -> tuple[float, ...]:
    """'0,10,50,100' (percent) -> (0.0, 0.1, 0.5, 1.0)."""
    try:
        return tuple(float(part) / 100.0 for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(f"--steps {text!r}: expected percentages such as 0,10,50,100") from None


def read_plan(path: str | os.PathLike) -> StepPlan:
    """A StepPlan from a JSON file; errors name the file and the field."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ValueError(f"{path}: cannot read: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict) or not isinstance(document.get("steps"), list):
        raise ValueError(f"{path}: field 'steps' must be a list of percentages")
    known = {"steps", "step_seconds", "inconclusive_retries", "retry_wait_seconds"}
    if set(document) - known:
        raise ValueError(f"{path}: unknown field(s) {sorted(set(document) - known)}")
    try:
        return StepPlan(weights=tuple(float(w) / 100.0 for w in document["steps"]),
                        **{k: document[k] for k in known - {"steps"} if k in document})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path}: {error}") from None


# ------------------------------------------------------------------------------ the checks
def live_check(rest_urls: Sequence[str], model_name: str, thresholds: AnalysisThresholds,
               model_config: str | os.PathLike) -> StepCheck:
    """The live analysis of the replicas' Prometheus metrics (serving/rollout/live.py).
    `rest_urls`: each replica's REST base URL (serving/rollout/checks.py); the step's weight
    is read from the rollout state beside `model_config`."""
    from serving.rollout.live import LiveAnalysis
    return LiveAnalysis(list(rest_urls), model_name, thresholds, model_config=model_config)


# ------------------------------------------------------------------------------ the loop
@dataclass(frozen=True)
class StepOutcome:
    action: str                 # "promoted" | "rolled back"
    results: tuple[CheckResult, ...]


def run_steps(controller: RolloutController, plan: StepPlan, checks: Sequence[StepCheck], *,
              log: Callable[[str], None] = lambda message: None,
              sleep: Callable[[float], None] = time.sleep) -> StepOutcome:
    """Walk the running canary through the plan (resuming at the step the state recorded);
    promote after the last step, roll back on a failed check. RolloutError when a step stays
    inconclusive: nothing decided, the canary stays, the same call resumes."""
    settings = controller.settings
    state = read_model_state(controller.state_path, settings.model_name)
    if not state.active:
        raise RolloutError("no canary is running: start one first")
    stable, canary = state.stable_version, state.canary_version
    if state.steps:
        weights = tuple(state.steps)
        if weights != plan.weights:
            log(f"resuming with the rollout's recorded steps {_percent(weights)} (the plan "
                f"given now, {_percent(plan.weights)}, applies to the next rollout)")
    else:
        weights = plan.weights
        _update(controller, lambda s: setattr(s, "steps", list(weights)))
    first = min(state.step, len(weights))
    if first:
        log(f"resuming at step {first + 1} of {len(weights)}")
    results: tuple[CheckResult, ...] = ()
    for index in range(first, len(weights)):
        weight = weights[index]
        controller.set_weight(weight)
        _update(controller, lambda s, index=index: _enter_step(s, index))
        log(f"step {index + 1}/{len(weights)}: canary version {canary} at weight {weight:.0%}"
            + (" (shadow only)" if weight == 0 else ""))
        for check in checks:
            check.begin()
        sleep(plan.step_seconds)
        results = _judge(controller, plan, checks, stable, canary, log, sleep)
        if combined_verdict(list(results)) == "fail":
            reason = "; ".join(f"{r.name}: {', '.join(r.reasons)}" for r in results
                               if r.verdict == "fail")
            log(f"step {index + 1} failed: rolling back version {canary}: {reason}")
            controller.rollback(reason=f"step {index + 1} ({weight:.0%}): {reason}"[:500])
            return StepOutcome("rolled back", results)
        _update(controller, lambda s, index=index: setattr(s, "step", index + 1))
    log(f"every step passed: promoting version {canary}")
    controller.promote(reason=f"every step passed ({_percent(weights)})")
    return StepOutcome("promoted", results)


def _judge(controller, plan, checks, stable, canary, log, sleep) -> tuple[CheckResult, ...]:
    for attempt in range(plan.inconclusive_retries + 1):
        results = tuple(check.judge(stable, canary) for check in checks)
        for result in results:
            log(f"  {result.line()}")
        _update(controller, lambda s: s.add_event(
            "step_checks", step=s.step + 1, checks=[r.to_dict() for r in results]))
        if combined_verdict(list(results)) != "inconclusive":
            return results
        if attempt < plan.inconclusive_retries:
            log(f"  inconclusive: judging again in {plan.retry_wait_seconds:g} s")
            sleep(plan.retry_wait_seconds)
    raise RolloutError(f"the checks stayed inconclusive after {plan.inconclusive_retries + 1} "
                       "tries: nothing decided, the canary keeps its weight; run the same "
                       "command again to resume this step")


def _enter_step(state: ModelRollout, index: int) -> None:
    state.step = index
    state.add_event("step", step=index + 1, weight=state.weight)


def _update(controller: RolloutController, change: Callable[[ModelRollout], None]) -> None:
    update_model_state(controller.settings.model_config, controller.settings.model_name, change)


def _percent(weights: Sequence[float]) -> str:
    return " -> ".join(f"{w * 100:g} %" for w in weights)
