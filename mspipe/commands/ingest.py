"""`mspipe ingest`: DicomExampleGen alone, for users who only want the TFRecords.

A one-component TFX pipeline on LocalDagRunner with its MLMD SQLite store under --out, so the
output is an ordinary TFX artifact with lineage, and the same code path as the full pipeline.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Iterator

from mspipe import options
from mspipe.errors import CommandError

PIPELINE_NAME = "mspipe-ingest"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from components.dicom.preprocessing import PreprocessSettings
    from components.dicom_example_gen.splits import DEFAULT_SPLIT_RATIOS
    from components.features import DEFAULT_SALT

    defaults = PreprocessSettings()  # DicomExampleGen's image size and planes

    parser.add_argument("--data", required=True, help="hospital export: scanner/study/series/files")
    parser.add_argument("--labels", required=True, help="CSV or XLSX with study_uid, sclerosis (0/1)")
    parser.add_argument("--out", required=True,
                        help="output folder (pipeline_root/ and metadata.sqlite are created in it)")
    options.add_json(parser, "only the summary")
    options.add_image_size(parser, defaults.image_size)
    parser.add_argument("--orientations", default=",".join(defaults.orientations),
                        help="comma-separated planes to keep: axial, coronal, sagittal, oblique")
    parser.add_argument("--splits", default=",".join(
                            f"{name}={ratio:g}" for name, ratio in DEFAULT_SPLIT_RATIOS.items()),
                        help="split ratios counted in studies, e.g. train=0.7,eval=0.15,test=0.15")
    options.add_salt(parser, DEFAULT_SALT)
    options.add_beam_args(parser, default_runner="DirectRunner over all cores")


def parse_splits(text: str) -> dict[str, float]:
    """'train=0.8,eval=0.2' -> {'train': 0.8, 'eval': 0.2}."""
    ratios: dict[str, float] = {}
    for part in filter(None, (piece.strip() for piece in text.split(","))):
        name, sep, value = part.partition("=")
        try:
            ratios[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise ValueError(f"--splits: expected name=ratio, got {part!r}")
    return ratios


def run(args: argparse.Namespace) -> int:
    from components.dicom_example_gen.executor import INPUT_ERRORS
    from pipeline.interrupted_runs import RunInProgressError

    try:
        with _stdout_to_stderr(args.json):
            summary = ingest(args)
    except (*INPUT_ERRORS, RunInProgressError, ValueError, FileNotFoundError) as error:
        raise CommandError(str(error)) from error
    if args.json:
        print(json.dumps(summary, sort_keys=True))
    else:
        print(format_summary(summary))
    return 0


def ingest(args: argparse.Namespace) -> dict:
    """Runs the one-component pipeline and returns the summary read back from MLMD."""
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from components.dicom_example_gen.component import DicomExampleGen
    from pipeline.interrupted_runs import exclusive_local_run

    component = DicomExampleGen(
        input_base=os.path.abspath(args.data),
        labels_path=os.path.abspath(args.labels),
        image_size=args.image_size,
        orientations=[name.strip() for name in args.orientations.split(",") if name.strip()],
        salt=args.salt,
        split_ratios=parse_splits(args.splits),
    )
    out = os.path.abspath(args.out)
    metadata_path = os.path.join(out, "metadata.sqlite")
    pipeline_root = os.path.join(out, "pipeline_root")
    connection = metadata.sqlite_metadata_connection_config(metadata_path)
    with exclusive_local_run(out, metadata_path, PIPELINE_NAME, pipeline_root):
        LocalDagRunner().run(pipeline.Pipeline(
            pipeline_name=PIPELINE_NAME,
            pipeline_root=pipeline_root,
            components=[component],
            metadata_connection_config=connection,
            beam_pipeline_args=list(args.beam_args) or None,
            enable_cache=False,
        ))
    return read_summary(connection)


def read_summary(connection) -> dict:
    """The latest run's counts, from the artifacts' custom properties in MLMD."""
    from tfx.orchestration import metadata

    from components.dicom_example_gen.component import RejectLedger
    from components.dicom_example_gen import properties
    from components.dicom_example_gen.ledger import LEDGER_FILE_NAME

    with metadata.Metadata(connection) as store:
        examples = max(store.store.get_artifacts_by_type("Examples"), key=lambda a: a.id)
        rejects = max(store.store.get_artifacts_by_type(RejectLedger.TYPE_NAME), key=lambda a: a.id)
    sizes = properties.read_split_sizes(examples)
    return {
        "examples": {name: size.slices for name, size in sizes.items()},
        "studies": {name: size.studies for name, size in sizes.items()},
        "rejects": properties.read_reject_counts(rejects),
        "labelled_studies_without_slices": _int_property(examples,
                                                         properties.LABELLED_WITHOUT_SLICES),
        "output": examples.uri,
        "ledger": os.path.join(rejects.uri, LEDGER_FILE_NAME),
    }


def _int_property(artifact, name: str) -> int:
    return artifact.custom_properties[name].int_value if name in artifact.custom_properties else 0


def format_summary(summary: dict) -> str:
    lines = [f"examples: {summary['output']}"]
    lines += [f"  {name}: {count} slices from {summary['studies'].get(name, 0)} studies"
              for name, count in summary["examples"].items()]
    if summary["labelled_studies_without_slices"]:
        lines.append(f"  warning: {summary['labelled_studies_without_slices']} labelled studies "
                     "gave no usable slice (their salted study_id is in the log)")
    total_rejects = sum(summary["rejects"].values())
    lines.append(f"rejects: {total_rejects} files or frames, ledger {summary['ledger']}")
    lines += [f"  {reason}: {count}" for reason, count in summary["rejects"].items()]
    return "\n".join(lines)


@contextlib.contextmanager
def _stdout_to_stderr(enabled: bool) -> Iterator[None]:
    """With --json, stdout carries only the summary: anything TFX, Beam or a Beam worker
    process prints goes to stderr instead (redirected at the file-descriptor level)."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
