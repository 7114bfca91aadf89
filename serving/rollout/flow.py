"""The canary flows built from the parts: analyze (and optionally decide), and the demo.

`analyze_canary` checks that a canary is live, reads the held-out set at the input size the
stable version declares, runs the shadow analysis while storing partial results in the
rollout state (so `mspipe rollout status` shows what it has seen so far), stores the final
report, and with `auto=True` promotes or rolls back, giving the failed checks as the reason.

`run_canary_demo` is what `make demo` calls after the pipeline pushed a new version:
start -> analyze (auto) -> promote or roll back, printing each step as it happens.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from serving.api.errors import ServingError
from serving.client.model_client import ModelClient
from serving.rollout.analysis import AnalysisReport, run_shadow_analysis
from serving.rollout.controller import CANARY, STABLE, RolloutController, RolloutError
from serving.rollout.data import batched, open_eval_data
from serving.rollout.settings import AnalysisSettings, AnalysisThresholds, RolloutSettings


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


def run_canary_demo(server_target: str, model_config_path: str | os.PathLike,
                    model_name: str, new_version: int,
                    eval_tfrecords_dir: str | os.PathLike, print_fn: Callable[[str], None] = print,
                    *, weight: float = 0.1,
                    thresholds: AnalysisThresholds = AnalysisThresholds(),
                    settings: AnalysisSettings = AnalysisSettings()) -> AnalysisOutcome:
    """start canary `new_version` -> shadow analysis on the eval TFRecords -> promote or
    roll back. Every step is printed as it happens; returns the analysis and the action."""
    rollout_settings = RolloutSettings(model_config=os.fspath(model_config_path),
                                       server=server_target, model_name=model_name)
    with ModelClient(server_target, model_name) as client:
        controller = RolloutController(rollout_settings, client,
                                       log=lambda message: print_fn(f"[rollout] {message}"))
        print_fn(f"[rollout] starting canary: version {new_version} at weight {weight:.0%}")
        controller.start(new_version, weight=weight)
        outcome = analyze_canary(controller, eval_tfrecords_dir, auto=True, settings=settings,
                                 thresholds=thresholds,
                                 log=lambda message: print_fn(f"[rollout] {message}"))
        final = controller.status()
        print_fn(f"[rollout] {outcome.action}: labels now {final.labels}, "
                 f"versions {final.versions}")
        return outcome
