"""`mspipe pipeline run|compile`: the whole TFX pipeline from the command line."""
from __future__ import annotations

import argparse
import sys

from components.trainer.config import ModelConfig
from pipeline.config import DEFAULT_BEAM_ARGS, PipelineConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
        p.add_argument("--image-size", type=int, default=model.image_size)
        p.add_argument("--widths", default=",".join(map(str, model.widths)),
                       help="conv widths, comma separated")
        p.add_argument("--epochs", type=int, default=model.epochs)
        p.add_argument("--batch-size", type=int, default=model.batch_size)
        p.add_argument("--seed", type=int, default=model.seed)
        p.add_argument("--min-study-auc", type=float, default=defaults.min_study_auc)
        p.add_argument("--salt", default=None, help="salt of the study/series hashes, secret per site: "
                       "file:PATH or env:NAME keep it out of metadata and logs")
        p.add_argument("--beam-arg", action="append", default=None, dest="beam_args",
                       help="Beam pipeline argument, repeatable (e.g. --beam-arg=--runner=FlinkRunner)")
        p.add_argument("--no-cache", action="store_true", help="re-run components even if cached")
        if action == "run":
            p.add_argument("--json", action="store_true", help="print the run summary as JSON")
        else:
            p.add_argument("--kubeflow-v2", required=True, metavar="OUT.json")
            p.add_argument("--image", default=None, help="container image holding this package")


def config_from_args(args: argparse.Namespace) -> PipelineConfig:
    extra = {"salt": args.salt} if args.salt else {}
    model = ModelConfig(image_size=args.image_size, widths=tuple(int(w) for w in args.widths.split(",")),
                        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed)
    return PipelineConfig(
        data_dir=args.data, labels_path=args.labels, output_dir=args.out,
        serving_dir=args.serving_dir, model_name=args.model_name, model=model,
        min_study_auc=args.min_study_auc,
        beam_args=tuple(args.beam_args) if args.beam_args else DEFAULT_BEAM_ARGS,
        enable_cache=not args.no_cache, **extra)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if args.action == "compile":
        from pipeline.kubeflow_runner import DEFAULT_IMAGE, compile_kubeflow_v2
        path = compile_kubeflow_v2(config, args.kubeflow_v2, image=args.image or DEFAULT_IMAGE)
        print(f"Kubeflow V2 pipeline spec written to {path}")
        return 0
    from pipeline.local_runner import run_local
    summary = run_local(config)
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
