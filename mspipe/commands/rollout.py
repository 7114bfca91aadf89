"""`mspipe rollout start|run|status|weight|analyze|promote|rollback`: canary rollout of a
model over every replica of a TF Serving API deployment (the local server or tensorflow/serving).

models.config is the fleet's one source of truth: the tool replaces it atomically, pushes it
to every replica (HandleReloadConfigRequest; with --poll-only the replicas pick it up at their
next --model_config_file_poll_wait_seconds poll) and waits until every replica reports the new
state. Replicas: repeated --server, or one name resolving to several addresses (a headless
Service). The rollout's own state (weight, steps, analysis) lives in
`<models.config>.rollout.json`.

Exit status (mspipe/main.py): 0 done; 1 the step failed; 3 `analyze --auto` or `run`
rolled back; 4 `analyze` inconclusive (an outage hit stable too; nothing changed).
"""
from __future__ import annotations

import argparse
import json
import sys

from mspipe import options
from mspipe.errors import EXIT_INCONCLUSIVE, EXIT_ROLLED_BACK, CommandError, file_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from serving.rollout.settings import (AnalysisSettings, AnalysisThresholds,
                                          RolloutSettings, StepPlan)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--server", required=True, action="append", metavar="HOST:PORT",
                        help="gRPC address of a model server replica; repeat it for each "
                             "replica, or give one name that resolves to every replica "
                             "(a Kubernetes headless Service)")
    common.add_argument("--poll-only", action="store_true",
                        help="only rewrite models.config and wait for every replica to poll "
                             "it (--model_config_file_poll_wait_seconds); default: also push "
                             "it to each replica with HandleReloadConfigRequest")
    common.add_argument("--converge-timeout", type=float,
                        default=RolloutSettings.converge_timeout_s, metavar="SECONDS",
                        help="seconds for every replica to answer a label change "
                             "(default: %(default)s); the replicas that lag are named")
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
    _add_data(start, required=False, what="pre-flight probe slices (the first "
              "16 of the held-out set); without it only the signatures are checked")

    run = sub.add_parser("run", parents=[common], help="stepped release: start (with "
                         "pre-flight) -> shadow -> steps with analysis -> promote or roll "
                         "back; resumes a rollout the tool left unfinished")
    run.add_argument("--version", type=int, required=True, help="the candidate version")
    _add_data(run, required=True, what="the held-out set: pre-flight probe and labelled "
              "analysis between steps")
    plan = run.add_mutually_exclusive_group()
    plan.add_argument("--steps", default="0,10,50,100", metavar="PERCENTS",
                      help="canary weights in %%, 0 = shadow only (default: %(default)s)")
    plan.add_argument("--steps-file", metavar="FILE",
                      help='JSON plan: {"steps": [0, 10, 50, 100], "step_seconds": 30, '
                           '"inconclusive_retries": 3, "retry_wait_seconds": 10}')
    run.add_argument("--step-seconds", type=float, default=StepPlan.step_seconds,
                     help="live traffic at each step before it is judged (default: "
                          "%(default)s; with --steps)")
    run.add_argument("--rest-url", action="append", metavar="URL",
                     help="each replica's REST base URL for the live metrics, in --server "
                          "order (or give --rest-port); without either, no live analysis")
    run.add_argument("--rest-port", type=int, default=None,
                     help="replicas' --rest_api_port: live analysis at "
                          "http://REPLICA-HOST:PORT (the replicas need a "
                          "--monitoring_config_file enabling Prometheus)")
    options.add_settings_options(run, AnalysisSettings)
    options.add_settings_options(run, AnalysisThresholds)

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
    _add_data(analyze, required=True, what="the labelled held-out set")
    analyze.add_argument("--auto", action="store_true",
                         help="promote when every check passes, else roll back")
    options.add_json(analyze, "the report")
    options.add_settings_options(analyze, AnalysisSettings)
    options.add_settings_options(analyze, AnalysisThresholds)


def _add_data(parser: argparse.ArgumentParser, *, required: bool, what: str) -> None:
    parser.add_argument("--data", required=required, metavar="DIR|TFRECORDS",
                        help=f"{what}: eval split TFRecords (file or folder), or a DICOM "
                             "folder with --labels")
    parser.add_argument("--labels", metavar="FILE",
                        help="labels file (study_uid, sclerosis; CSV/XLSX) for a DICOM folder")


def run(args: argparse.Namespace) -> int:
    from serving.api.model_config import ModelConfigError
    from serving.api.errors import ServingError
    from serving.client.model_client import ModelClient
    from serving.rollout.controller import RolloutController, RolloutError
    from serving.rollout.settings import RolloutSettings
    from serving.rollout.data import EvalDataError
    from serving.rollout.state import RolloutStateError

    from serving.rollout.fleet import FleetError, resolve_replicas

    quiet = getattr(args, "json", False)
    log = (lambda message: print(message, file=sys.stderr)) if quiet else print
    try:
        replicas = resolve_replicas(args.server)
        settings = RolloutSettings(model_config=args.model_config, server=replicas[0],
                                   model_name=args.model, load_timeout_s=args.timeout,
                                   replicas=tuple(replicas), push_reload=not args.poll_only,
                                   converge_timeout_s=args.converge_timeout,
                                   tls_ca=args.tls_ca)
        if len(replicas) > 1:
            log(f"{len(replicas)} replicas: {', '.join(replicas)}")
        with RolloutController(settings, log=log) as controller:
            return _ACTIONS[args.action](controller, args, log)
    except ValueError as error:  # a bad --steps / --steps-file
        raise CommandError(str(error)) from error
    except (RolloutError, ServingError, EvalDataError, RolloutStateError, ModelConfigError,
            FleetError, TimeoutError) as error:
        raise CommandError(str(error)) from error
    except OSError as error:  # e.g. the TLS CA file
        raise file_error(error) from error


def _start(controller, args, log) -> int:
    probe = _probe(controller, args) if args.data else None
    print_status(controller.start(args.version, weight=args.weight, probe=probe))
    return 0


def _probe(controller, args):
    from serving.api.errors import ServingError
    from serving.rollout.controller import RolloutError
    from serving.rollout.preflight import probe_batch, stable_image_size

    try:
        image_size = stable_image_size(controller.client)
    except ServingError as error:
        raise RolloutError(f"stable version metadata: {error}") from None
    return probe_batch(args.data, image_size, labels=args.labels)


def _run(controller, args, log) -> int:
    from serving.rollout.controller import RolloutError
    from serving.rollout.flow import LabelledAnalysisCheck
    from serving.rollout.settings import StepPlan
    from serving.rollout.steps import live_check, parse_weights, read_plan, run_steps
    from serving.rollout.settings import AnalysisSettings, AnalysisThresholds

    plan = (read_plan(args.steps_file) if args.steps_file else
            StepPlan(weights=parse_weights(args.steps), step_seconds=args.step_seconds))
    status = controller.status()
    if status.canary_version is None:
        controller.start(args.version, weight=plan.weights[0], probe=_probe(controller, args))
    elif status.canary_version != args.version:
        raise RolloutError(f"a canary is already running (version {status.canary_version}); "
                           "promote or roll it back first")
    else:
        log(f"version {args.version} is already the canary: resuming its rollout")
    thresholds = options.settings_from_args(AnalysisThresholds, args)
    checks = []
    rest_urls = _rest_urls(controller.fleet.replicas, args)
    if rest_urls:   # judged first: the labelled analysis's own requests must not count as live
        checks.append(live_check(rest_urls, controller.settings.model_name, thresholds,
                                 controller.settings.model_config))
    else:
        log("live analysis off (give --rest-url or --rest-port); labelled analysis only")
    checks.append(LabelledAnalysisCheck(
        controller, args.data, labels=args.labels, log=log,
        settings=options.settings_from_args(AnalysisSettings, args), thresholds=thresholds))
    outcome = run_steps(controller, plan, checks, log=log)
    print_status(controller.status())
    return EXIT_ROLLED_BACK if outcome.action == "rolled back" else 0


def _rest_urls(replicas: list[str], args) -> list[str]:
    if args.rest_url:
        if len(args.rest_url) != len(replicas):
            raise ValueError(f"--rest-url given {len(args.rest_url)} times for "
                             f"{len(replicas)} replicas ({', '.join(replicas)})")
        return [url.rstrip("/") for url in args.rest_url]
    if args.rest_port is None:
        return []
    return [f"http://{replica.rpartition(':')[0]}:{args.rest_port}" for replica in replicas]


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


_ACTIONS = {"start": _start, "run": _run, "status": _status, "weight": _weight, "promote": _promote,
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
    for replica, view in sorted(status.replicas.items()):
        print(f"  replica    {replica}: {view}")
    for warning in status.warnings:
        print(f"  warning: {warning}")
