"""`mspipe` command line: one dispatcher, each subcommand lives beside the code it runs.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`, and keeps
heavy imports (TensorFlow, TFX, Beam) inside `run` so `mspipe --help` stays instant.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings

# command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("mspipe.commands.synth", "generate a synthetic hospital DICOM dataset"),
    "ingest": ("mspipe.commands.ingest", "DICOM folders -> TFRecords (DicomExampleGen alone)"),
    "pipeline": ("mspipe.commands.pipeline", "run or compile the whole TFX pipeline"),
    "serve": ("mspipe.commands.serve", "TF-Serving-compatible local model server"),
    "predict": ("mspipe.commands.predict", "predict .dcm/.jpg/.png files through gRPC"),
    "rollout": ("mspipe.commands.rollout", "canary rollout: start, status, analyze, promote, rollback"),
    "web": ("mspipe.commands.web", "web page for clinicians (talks to the model server)"),
    "demo": ("mspipe.demo", "synthetic data -> pipeline -> server -> client, end to end"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mspipe", description="Multiple-sclerosis prediction from brain-MRI DICOM studies: "
        "synthetic data, TFX pipeline, TF-Serving-compatible model server, client, canaries, web page.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = argv[0] if argv and not argv[0].startswith("-") else None
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == wanted:  # import only the module of the command being run
            module = importlib.import_module(module_name)
            module.add_arguments(command_parser)
            command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # google-cloud-aiplatform (pulled in by TFX's Vertex support) warns about Python 3.10 on
    # every import; those lines bury the messages users need to see.
    warnings.filterwarnings("ignore", category=FutureWarning)
    # TensorFlow's C++ INFO/WARNING lines (CUDA probing, end-of-sequence notes) say nothing a
    # user can act on; errors still show. An explicit setting in the environment wins.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(argv).parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
