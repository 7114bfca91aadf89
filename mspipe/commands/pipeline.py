"""`mspipe pipeline run|compile`: the whole TFX pipeline from the command line."""
from __future__ import annotations

import argparse
import sys

from mspipe import options
from mspipe.errors import EXIT_USAGE, CommandError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.config import PipelineConfig  # loads the DICOM library: not at `mspipe --help`

    defaults = PipelineConfig(data_dir="", labels_path="", output_dir="")  # read for defaults only
    model = defaults.model
    sub = parser.add_subparsers(dest="action", required=True)
    for action, help_text in (("run", "run locally (LocalDagRunner, Beam DirectRunner, MLMD SQLite)"),
                              ("compile", "write a Kubeflow V2 / Vertex pipeline spec")):
        p = sub.add_parser(action, help=help_text, description=help_text)
        p.add_argument("--data", required=True, help="hospital export: <scanner>/<study>/<series>/*.dcm")
        p.add_argument("--labels", required=True, help="labels.csv or labels.xlsx (study_uid, sclerosis)")
        p.add_argument("--out", default="pipeline_out", help="pipeline root, MLMD and report (default: %(default)s)")
        p.add_argument("--serving-dir", default="", help="serving base dir (default: OUT/serving)")
        p.add_argument("--model-name", default=defaults.model_name)
        options.add_image_size(p, model.image_size)
        p.add_argument("--widths", default=",".join(map(str, model.widths)),
                       help="conv widths, comma separated")
        p.add_argument("--epochs", type=int, default=model.epochs)
        p.add_argument("--batch-size", type=int, default=model.batch_size)
        p.add_argument("--seed", type=int, default=model.seed)
        p.add_argument("--min-study-auc", type=float, default=defaults.min_study_auc)
        options.add_salt(p, defaults.salt)
        options.add_beam_args(p, default_runner="DirectRunner over all cores")
        p.add_argument("--no-cache", action="store_true", help="re-run components even if cached")
        if action == "run":
            options.add_json(p, "the run summary")
        else:
            p.add_argument("--kubeflow-v2", required=True, metavar="OUT.json")
            p.add_argument("--image", default=None, help="container image holding this package")


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    from components.trainer.config import ModelConfig
    from pipeline.config import DEFAULT_BEAM_ARGS, PipelineConfig

    try:
        widths = tuple(int(w) for w in args.widths.split(","))
    except ValueError:
        raise CommandError(f"--widths must be comma-separated integers, got {args.widths!r}",
                           EXIT_USAGE) from None
    try:
        model = ModelConfig(image_size=args.image_size, widths=widths,
                            epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    except ValueError as error:  # a setting the model cannot take is a usage error
        raise CommandError(str(error), EXIT_USAGE) from None
    return PipelineConfig(
        data_dir=args.data, labels_path=args.labels, output_dir=args.out,
        serving_dir=args.serving_dir, model_name=args.model_name, model=model,
        min_study_auc=args.min_study_auc,
        beam_args=tuple(args.beam_args) if args.beam_args else DEFAULT_BEAM_ARGS,
        salt=args.salt, enable_cache=not args.no_cache)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.action == "compile":
        from pipeline.kubeflow_runner import DEFAULT_IMAGE, compile_kubeflow_v2
        path = compile_kubeflow_v2(config, args.kubeflow_v2, image=args.image or DEFAULT_IMAGE)
        print(f"Kubeflow V2 pipeline spec written to {path}")
        return 0
    from components.dicom_example_gen.executor import INPUT_ERRORS
    from pipeline.interrupted_runs import RunInProgressError
    from pipeline.local_runner import run_local

    try:
        summary = run_local(config)
    except (*INPUT_ERRORS, RunInProgressError) as error:  # the data or labels given: one line, as `mspipe ingest`
        raise CommandError(str(error)) from error
    if args.json:
        print(summary.to_json())
        return 0
    print_summary(summary, config)
    return 0


def print_summary(summary, config: PipelineConfig, stream=sys.stdout) -> None:
    verdict = {True: "BLESSED", False: "NOT blessed", None: "not evaluated"}[summary.blessed]
    print(f"Examples per split: {summary.examples}", file=stream)
    print(f"Rejected files/frames by reason: {summary.rejects}", file=stream)
    print(f"Evaluator verdict: {verdict}", file=stream)
    if summary.pushed_version is not None:
        print(f"Model pushed: {config.model_name} version {summary.pushed_version} "
              f"-> {summary.pushed_path}", file=stream)
    else:
        print("Model NOT pushed (the Evaluator did not bless it; see the report).", file=stream)
    if summary.report_path:
        print(f"Report: {summary.report_path}", file=stream)
