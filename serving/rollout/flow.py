"""The canary flows built from the parts: analyze (and optionally decide), and the demo.

`analyze_canary` checks that a canary is live, reads the held-out set at the input size the
stable version declares, runs the shadow analysis while storing partial results in the
rollout state (so `mspipe rollout status` shows what it has seen so far), stores the final
report, and with `auto=True` promotes or rolls back, giving the failed checks as the reason.

`run_canary_demo` is what `make demo` calls after the pipeline pushed a new version: the
stepped release (serving/rollout/steps.py) over the demo's replicas, printing each step and
each replica's convergence as it happens.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from serving.api.errors import ServingError
from serving.rollout.analysis import AnalysisReport, run_shadow_analysis, verdict
from serving.rollout.checks import CheckResult
from serving.rollout.controller import CANARY, STABLE, RolloutController, RolloutError
from serving.rollout.data import batched, open_eval_data
from serving.rollout.settings import AnalysisSettings, AnalysisThresholds, RolloutSettings
from serving.rollout.steps import StepOutcome


@dataclass(frozen=True)
class AnalysisOutcome:
    report: AnalysisReport
    action: str | None      # "promoted" | "rolled back" | "inconclusive" | None (auto off)


def analyze_canary(controller: RolloutController, data: str | os.PathLike, *,
                   labels: str | os.PathLike | None = None, auto: bool = False,
                   settings: AnalysisSettings = AnalysisSettings(),
                   thresholds: AnalysisThresholds = AnalysisThresholds(),
                   log: Callable[[str], None] = lambda message: None) -> AnalysisOutcome:
    status = controller.status()
    if status.canary_version is None:
        raise RolloutError("no canary is running: start one with `mspipe rollout start`")
    client = controller.client
    try:
        image_size = client.metadata(label=STABLE).image_size
    except ServingError as error:
        raise RolloutError(f"stable version metadata: {error}") from None
    expected = {STABLE: status.labels[STABLE], CANARY: status.canary_version}
    slices, summary = open_eval_data(data, image_size, labels=labels)
    log(f"shadow analysis: stable v{expected[STABLE]} vs canary v{expected[CANARY]}, "
        f"{summary.source} input at {image_size}x{image_size}")

    def progress(partial: AnalysisReport) -> None:
        controller.record_analysis(partial.to_dict())
        log(f"  ... {partial.slices} slices, canary errors "
            f"{partial.labels[CANARY]['error_slices']}")

    report = run_shadow_analysis(
        client, batched(slices, settings.batch_size, summary, settings.max_slices),
        settings=settings, thresholds=thresholds, expected_versions=expected,
        on_progress=progress, data_summary=summary.to_dict)
    if analysis_verdict(report).verdict == "inconclusive":
        report.decision = "inconclusive"  # an outage: never a rollback (nor a promote)
    controller.record_analysis(report.to_dict())
    if report.slices == 0:  # a wrong folder or labels file must not decide anything
        raise RolloutError(f"{data}: the held-out set gave no usable labelled slice "
                           f"(skipped: {report.data.get('skipped') or 'none'}); nothing "
                           "was decided")
    for line in report.lines():
        log(line)
    if not auto:
        return AnalysisOutcome(report, None)
    return AnalysisOutcome(report, _act(controller, report, log))


def analysis_verdict(report: AnalysisReport, name: str = "labelled analysis") -> CheckResult:
    """The report as a step check's verdict. Stable failing too means an outage (a replica or
    the network down), which says nothing about the canary: inconclusive, never fail."""
    decision, why = verdict(report)
    if decision == "inconclusive":   # stable hit by an outage too
        return CheckResult(name, "inconclusive", (why,))
    failed = tuple(check.short() for check in report.checks if not check.passed)
    return CheckResult(name, "fail" if failed else "pass", failed)


def _act(controller: RolloutController, report: AnalysisReport,
         log: Callable[[str], None]) -> str:
    if report.decision == "inconclusive":  # an outage: nothing is changed, the canary stays
        log(f"inconclusive, canary version {report.canary_version} kept: "
            f"{report.inconclusive_reason}")
        return "inconclusive"
    failed = [check.short() for check in report.checks if not check.passed]
    if not failed:
        log(f"every check passed: promoting version {report.canary_version}")
        controller.promote(reason="analysis: every check passed")
        return "promoted"
    reason = "; ".join(failed)
    log(f"rolling back version {report.canary_version}: {reason}")
    controller.rollback(reason=f"analysis: {reason}"[:500])
    return "rolled back"


class LabelledAnalysisCheck:
    """The shadow analysis on labelled held-out data (serving/rollout/flow.py), as a step
    check: failed checks -> fail; an outage of stable too, or no usable data -> inconclusive."""
    name = "labelled analysis"

    def __init__(self, controller: RolloutController, data: str | os.PathLike, *,
                 labels: str | os.PathLike | None = None, settings=None, thresholds=None,
                 log: Callable[[str], None] = lambda message: None):
        self.controller, self.data, self.labels = controller, data, labels
        self.settings, self.thresholds, self.log = settings, thresholds, log

    def begin(self) -> None:
        """Nothing to snapshot: the shadow analysis sends its own requests."""

    def judge(self, stable_version: int, canary_version: int) -> CheckResult:
        options = {k: v for k, v in (("settings", self.settings),
                                     ("thresholds", self.thresholds)) if v is not None}
        try:
            outcome = analyze_canary(self.controller, self.data, labels=self.labels,
                                     log=self.log, **options)
        except (RolloutError, ServingError) as error:
            return CheckResult(self.name, "inconclusive", (str(error),))
        return analysis_verdict(outcome.report, self.name)


def run_canary_demo(server_target: str | Sequence[str], model_config_path: str | os.PathLike,
                    model_name: str, new_version: int,
                    eval_tfrecords_dir: str | os.PathLike, print_fn: Callable[[str], None] = print,
                    *, weights: tuple[float, ...] = (0.0, 0.5, 1.0), step_seconds: float = 1.0,
                    thresholds: AnalysisThresholds = AnalysisThresholds(),
                    settings: AnalysisSettings = AnalysisSettings()) -> StepOutcome:
    """Stepped release of `new_version` over every replica in `server_target`: pre-flight on
    a probe of the eval TFRecords -> shadow (weight 0) -> the weights, with the labelled
    analysis between steps -> promote or roll back. Every step, and each replica's
    convergence, is printed as it happens; returns the last checks and the action."""
    from serving.rollout.preflight import probe_batch, stable_image_size
    from serving.rollout.settings import StepPlan
    from serving.rollout.steps import run_steps

    replicas = [server_target] if isinstance(server_target, str) else list(server_target)
    rollout_settings = RolloutSettings(model_config=os.fspath(model_config_path),
                                       server=replicas[0], model_name=model_name,
                                       replicas=tuple(replicas))
    log = lambda message: print_fn(f"[rollout] {message}")  # noqa: E731
    plan = StepPlan(weights=weights, step_seconds=step_seconds)
    with RolloutController(rollout_settings, log=log) as controller:
        print_fn(f"[rollout] starting canary: version {new_version} on {len(replicas)} "
                 f"replica(s), steps {' -> '.join(f'{w:.0%}' for w in weights)}")
        image_size = stable_image_size(controller.client)
        controller.start(new_version, weight=weights[0],
                         probe=probe_batch(eval_tfrecords_dir, image_size))
        check = LabelledAnalysisCheck(controller, eval_tfrecords_dir, settings=settings,
                                      thresholds=thresholds, log=log)
        outcome = run_steps(controller, plan, [check], log=log)
        final = controller.status()
        print_fn(f"[rollout] {outcome.action}: labels now {final.labels}, "
                 f"versions {final.versions}")
        for replica, view in sorted(final.replicas.items()):
            print_fn(f"[rollout]   replica {replica}: {view}")
        return outcome
