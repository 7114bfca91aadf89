"""`mspipe` command line: one dispatcher over the thin adapters in mspipe/commands/.

Each command module exposes `add_arguments(parser)` and `run(args) -> int`. Command modules
import nothing heavy at module level (TensorFlow, TFX and Beam only inside `run`), and only the
command named on the command line declares its options, because declaring them reads defaults
from settings dataclasses whose modules may load gRPC or NumPy: so `mspipe --help` is instant
and the client commands (predict, rollout, web) never load TensorFlow. Shared options are
declared once, in mspipe/options.py.

Exit status and errors, the same for every command (constants in mspipe/errors.py):
  0  done.
  1  the operation failed: one line `mspipe <command>: error: <reason>` on stderr, no
     traceback (commands raise `CommandError` for the failures they expect; anything else is
     a bug and keeps its traceback).
  2  usage error: argparse's own (usage, then `mspipe <command>: error: <reason>`), and
     arguments that cannot be acted on: options that conflict, an --out that is not empty,
     inputs in which nothing could be used (`mspipe predict` when every file was rejected).
  3  `mspipe rollout analyze --auto` rolled the canary back.
  4  `mspipe rollout analyze` was inconclusive: an outage hit stable too; nothing changed,
     run it again.
Messages name options, configuration files, counts and salted hashes, never patient data
(raw UIDs, names, the paths of input images).
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from types import ModuleType

from mspipe.commands import demo, ingest, pipeline, predict, rollout, serve, synth, web
from mspipe.errors import CommandError

COMMANDS: dict[str, tuple[ModuleType, str]] = {
    "synth": (synth, "generate a synthetic hospital DICOM dataset"),
    "ingest": (ingest, "DICOM folders -> TFRecords (DicomExampleGen alone)"),
    "pipeline": (pipeline, "run or compile the whole TFX pipeline"),
    "serve": (serve, "TF-Serving-compatible local model server"),
    "predict": (predict, "predict .dcm/.jpg/.png files through gRPC"),
    "rollout": (rollout, "canary rollout: start, status, analyze, promote, rollback"),
    "web": (web, "web page for clinicians (talks to the model server)"),
    "demo": (demo, "synthetic data -> pipeline -> server -> client, end to end"),
}


def build_parser(argv: list[str]) -> argparse.ArgumentParser:
    """All commands, with the options of the one `argv` names (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="mspipe", description="Multiple-sclerosis prediction from brain-MRI DICOM "
        "studies: synthetic data, TFX pipeline, TF-Serving-compatible model server, client, "
        "canaries, web page.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = argv[0] if argv else None
    for name, (module, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        command_parser.set_defaults(run=module.run)
        if name == named:
            module.add_arguments(command_parser)
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
    try:
        return int(args.run(args) or 0)
    except CommandError as error:
        print(f"{_command_name(args)}: error: {error}", file=sys.stderr)
        return error.exit_code


def _command_name(args: argparse.Namespace) -> str:
    """`mspipe rollout start`, as argparse names the (sub)command in its own errors."""
    action = getattr(args, "action", None)  # pipeline's and rollout's sub-commands
    return " ".join(filter(None, ("mspipe", args.command, action)))


if __name__ == "__main__":
    sys.exit(main())
