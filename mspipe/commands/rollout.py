"""`mspipe rollout start|status|weight|analyze|promote|rollback`: canary rollout of a model.

Drives any TF Serving API server (the local one or tensorflow/serving) through
HandleReloadConfigRequest, keeping models.config on disk in step; the rollout's own state
(weight, analysis) lives in `<models.config>.rollout.json`.

Exit status (mspipe/main.py): 0 done; 1 the step failed; 3 `analyze --auto` rolled back;
4 `analyze` inconclusive (an outage hit stable too; nothing changed).
"""
from __future__ import annotations

import argparse
import json
import sys

from mspipe import options
from mspipe.errors import EXIT_INCONCLUSIVE, EXIT_ROLLED_BACK, CommandError, file_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from serving.rollout.settings import AnalysisSettings, AnalysisThresholds, RolloutSettings

    common = argparse.ArgumentParser(add_help=False)
    options.add_server_address(common)
    options.add_model_config(common, required=True,
                             help="the models.config the server reads (kept in sync)")
    options.add_model_name(common)
    options.add_timeout(common, RolloutSettings.load_timeout_s,
                        "to wait for a version to load")
    options.add_tls_ca(common)
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    start = sub.add_parser("start", parents=[common], help="load VERSION beside stable and "
                           "label it canary")
    start.add_argument("--version", type=int, required=True, help="the candidate version")
    start.add_argument("--weight", type=float, default=0.1,
                       help="share of studies routed to the canary (default 0.1)")

    status = sub.add_parser("status", parents=[common],
                            help="versions, labels, weight and the analysis so far")
    options.add_json(status)

    weight = sub.add_parser("weight", parents=[common], help="change the canary's share")
    weight.add_argument("weight", type=float, help="share of studies in [0, 1]")

    sub.add_parser("promote", parents=[common], help="stable -> canary's version; unload "
                   "the old one")
    sub.add_parser("rollback", parents=[common], help="drop canary, unload its version")

    analyze = sub.add_parser("analyze", parents=[common], help="shadow-compare canary with "
                             "stable on a labelled held-out set")
    analyze.add_argument("--data", required=True, metavar="DIR|TFRECORDS",
                         help="eval split TFRecords (file or folder), or a DICOM folder "
                              "with --labels")
    analyze.add_argument("--labels", metavar="FILE",
                         help="labels file (study_uid, sclerosis; CSV/XLSX) for a DICOM folder")
    analyze.add_argument("--auto", action="store_true",
                         help="promote when every check passes, else roll back")
    options.add_json(analyze, "the report")
    options.add_settings_options(analyze, AnalysisSettings)
    options.add_settings_options(analyze, AnalysisThresholds)


def run(args: argparse.Namespace) -> int:
    from serving.api.model_config import ModelConfigError
    from serving.api.errors import ServingError
    from serving.client.model_client import ModelClient
    from serving.rollout.controller import RolloutController, RolloutError
    from serving.rollout.settings import RolloutSettings
    from serving.rollout.data import EvalDataError
    from serving.rollout.state import RolloutStateError

    settings = RolloutSettings(model_config=args.model_config, server=args.server,
                               model_name=args.model, load_timeout_s=args.timeout)
    quiet = getattr(args, "json", False)
    log = (lambda message: print(message, file=sys.stderr)) if quiet else print
    try:
        with ModelClient(args.server, args.model, tls_ca=args.tls_ca) as client:
            controller = RolloutController(settings, client, log=log)
            return _ACTIONS[args.action](controller, args, log)
    except (RolloutError, ServingError, EvalDataError, RolloutStateError, ModelConfigError,
            TimeoutError) as error:
        raise CommandError(str(error)) from error
    except OSError as error:  # e.g. the TLS CA file
        raise file_error(error) from error


def _start(controller, args, log) -> int:
    print_status(controller.start(args.version, weight=args.weight))
    return 0


def _status(controller, args, log) -> int:
    status = controller.status()
    if args.json:
        json.dump(status.to_dict(), sys.stdout, indent=2, default=str)
        print()
    else:
        print_status(status)
    return 0


def _weight(controller, args, log) -> int:
    print_status(controller.set_weight(args.weight))
    return 0


def _promote(controller, args, log) -> int:
    print_status(controller.promote(reason="manual"))
    return 0


def _rollback(controller, args, log) -> int:
    print_status(controller.rollback(reason="manual"))
    return 0


def _analyze(controller, args, log) -> int:
    from serving.rollout.flow import analyze_canary
    from serving.rollout.settings import AnalysisSettings, AnalysisThresholds

    thresholds = options.settings_from_args(AnalysisThresholds, args)
    settings = options.settings_from_args(AnalysisSettings, args)
    outcome = analyze_canary(controller, args.data, labels=args.labels, auto=args.auto,
                             settings=settings, thresholds=thresholds, log=log)
    if args.json:
        json.dump({**outcome.report.to_dict(), "action": outcome.action}, sys.stdout,
                  indent=2, default=str)
        print()
    elif outcome.report.decision == "inconclusive":
        print(f"verdict: inconclusive, nothing changed ({outcome.report.inconclusive_reason})")
    elif not args.auto:
        verdict = "promote" if outcome.report.decision == "promote" else "roll back"
        print(f"verdict: {verdict} (run `mspipe rollout promote` or `rollback`, or analyze "
              "with --auto)")
    if outcome.report.decision == "inconclusive":
        return EXIT_INCONCLUSIVE
    return EXIT_ROLLED_BACK if outcome.action == "rolled back" else 0


_ACTIONS = {"start": _start, "status": _status, "weight": _weight, "promote": _promote,
            "rollback": _rollback, "analyze": _analyze}


def print_status(status) -> None:
    rollout = status.rollout
    print(f"model {status.model_name} ({status.model_config})")
    states = ", ".join(f"{v} {s}" for v, s in sorted(status.version_states.items())) or "n/a"
    print(f"  versions   {status.versions or 'n/a'}  (server: {states})")
    labels = ", ".join(f"{label} -> {version}" for label, version in
                       sorted(status.labels.items())) or "none"
    served = ", ".join(f"{label} -> {version}" for label, version in
                       sorted(status.served_labels.items())) or "n/a"
    print(f"  labels     {labels}  (server answers: {served})")
    if status.canary_version is not None:
        print(f"  canary     version {status.canary_version} at weight {rollout.weight:.2f} "
              f"since {rollout.started_at or 'n/a'}")
    else:
        print("  canary     none")
    analysis = rollout.analysis
    if analysis:
        state = "complete" if analysis.get("complete") else "in progress"
        canary = analysis.get("labels", {}).get("canary", {})
        print(f"  analysis   {state}: {analysis.get('slices', 0)} slices, "
              f"{analysis.get('studies', 0)} studies; canary error rate "
              f"{canary.get('error_rate', 'n/a')}; decision {analysis.get('decision') or 'n/a'}"
              + (f" ({analysis['inconclusive_reason']})"
                 if analysis.get("inconclusive_reason") else ""))
        for check in analysis.get("checks", []):
            value = "n/a" if check.get("value") is None else f"{check['value']:.4g}"
            print(f"             {'PASS' if check['passed'] else 'FAIL'} {check['name']} = "
                  f"{value} (must be {check['rule']} {check['threshold']:g})")
    if rollout.history:
        last = rollout.history[-1]
        details = ", ".join(f"{k}={v}" for k, v in last.items() if k not in ("at", "event"))
        print(f"  last event {last['event']} at {last['at']}" + (f" ({details})" if details
                                                                  else ""))
    for warning in status.warnings:
        print(f"  warning: {warning}")
