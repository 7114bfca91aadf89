"""`mspipe predict PATH... --server HOST:PORT`: probabilities for .dcm/.jpg/.png files and folders.

Slices are grouped into studies by their StudyInstanceUID (JPEG/PNG by the folder given), and each
study gets the study-level probability (mean over its slices). Works
against the local server and the real tensorflow/serving alike. Exit status (mspipe/main.py):
0 when at least one slice was scored, 1 when the server failed, 2 when every input was rejected.
"""
from __future__ import annotations

import argparse
import json
import sys

from mspipe import options
from mspipe.errors import EXIT_USAGE, CommandError, file_error


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from serving.client.settings import ClientSettings

    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="DICOM (multi-frame: one result per frame), JPEG or PNG files, "
                             "or folders; studies are grouped by StudyInstanceUID")
    options.add_server_address(parser)
    options.add_model_name(parser)
    options.add_version_choice(parser, exact_version=True)
    options.add_json(parser)
    options.add_tls_ca(parser)
    options.add_timeout(parser, ClientSettings().timeout_s, "per request")
    options.add_routing_model_config(parser)


def run(args: argparse.Namespace) -> int:
    from serving.api.errors import ServingError
    from serving.client.model_client import ModelClient
    from serving.client.predict import predict_paths

    routed = args.model_config and args.label is None and args.version is None
    try:
        with ModelClient(args.server, args.model, timeout_s=args.timeout,
                         tls_ca=args.tls_ca) as client:
            if routed:
                reports = _predict_routed(client, args.paths, args.model_config)
            else:
                reports = [predict_paths(client, args.paths, label=args.label,
                                         version=args.version)]
    except ServingError as error:
        raise CommandError(f"model server {args.server}: {error}") from error
    except OSError as error:  # e.g. the TLS CA file
        raise file_error(error) from error
    if args.json:
        documents = [report.to_dict() for report in reports]
        json.dump(documents if routed else documents[0], sys.stdout, indent=2)
        print()
    else:
        for report in reports:
            print_report(report)
    if not any(report.slices for report in reports):
        raise CommandError("no input could be scored: every file was rejected", EXIT_USAGE)
    return 0


def _predict_routed(client, paths: list[str], model_config: str) -> list:
    """One report per study, each routed stable/canary by the rollout's weight."""
    from serving.client.predict import predict_routed
    from serving.rollout.traffic import CanaryRouter

    return predict_routed(client, paths, CanaryRouter.from_rollout_state(client, model_config))


def print_report(report) -> None:
    print(f"model {report.model_name} version {report.model_version} "
          f"(input {report.image_size}x{report.image_size})")
    if report.threshold is not None:
        print(f"decision threshold {report.threshold:.4f}: "
              + ("the model's own, chosen on validation studies of its training data "
                 "(sensitivity and specificity on eval: see its evaluation report)"
                 if report.threshold_source == "model" else
                 "the fixed fallback: this model was exported without a chosen threshold"))
    frames_per_path: dict[str, int] = {}
    for slice_ in report.slices:
        frames_per_path[slice_.path] = frames_per_path.get(slice_.path, 0) + 1
    for slice_ in report.slices:
        frame = f" frame {slice_.frame_index}" if frames_per_path[slice_.path] > 1 else ""
        print(f"  {slice_.probability:.4f}  {slice_.path}{frame}")
    for study in report.studies:
        value = "   n/a" if study.probability is None else f"{study.probability:.4f}"
        call = "" if study.above_threshold is None else (
            ", above threshold: MS-like" if study.above_threshold else ", below threshold")
        print(f"study {value}  {study.path or study.study}  ({study.slice_count} slices, "
              f"{study.rejected_count} rejected{call})")
    for rejection in report.rejections:
        frame = "" if rejection.frame_index is None else f" frame {rejection.frame_index}"
        print(f"  rejected {rejection.path}{frame}: {rejection.reason}: {rejection.detail}",
              file=sys.stderr)
