"""DicomExampleGen's executor: plan in the driver process, preprocess in Beam, write and count.

Before Beam starts: read the labels file and list the input files, so a missing labels file
or an empty folder fails in seconds. The Beam graph runs in two passes:
1. Create(file list) -> Reshuffle -> ParDo(file_to_examples): examples keyed by study_id are
   staged, uncompressed, in the execution's temp folder; ledger lines; counts per study.
2. The studies with at least one usable slice get their splits (splits.assign_usable_studies,
   by the component's `split_ratios`, a side input); the staged files are read back and each
   example goes to its study's split: one TFRecord sink per split.
Splits are chosen after reading because a study whose files are all rejected must not take a
split's place (an eval split of such studies would be empty). Staging on disk keeps memory
flat: a side input computed from the same pass would make the runner hold every image.
Afterwards the counts become artifact properties (properties.py); a run without a usable
slice, or with a split no study reached, fails with one line saying how many studies each
split got. It is a plain Beam executor, not TFX's BaseExampleGenExecutor: that one splits by
hashing each record, this one splits by study.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Iterator, List

import apache_beam as beam
from absl import logging
from tfx import types
from tfx.components.example_gen import write_split
from tfx.components.util import examples_utils
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor
from tfx.dsl.io import fileio
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils, standard_component_specs

from components.dicom_example_gen import file_to_examples as fte
from components.dicom_example_gen import discovery, gzip_sink, ledger, properties, splits
from components.dicom.labels import LabelsError, read_labels
from components.features import resolve_salt

LABELS_PATH_KEY = "labels_path"
IMAGE_SIZE_KEY = "image_size"
ORIENTATIONS_KEY = "orientations"
SALT_KEY = "salt"
SPLIT_RATIOS_KEY = "split_ratios"
REJECTS_KEY = "rejects"
_COUNTS_FILE_NAME = "counts.jsonl"
_MAX_STUDIES_LISTED = 20

# DirectRunner defaults when the pipeline gives no Beam arguments at all (user arguments are
# passed through untouched): one worker process per core. Measured with bench/ingest.py on the
# 2-core dev machine (shared, so +-15 %), 2,000 slices at 512x512: multi_processing 55 s with
# 1.6 cores busy, multi_threading 57 s and in_memory 62 s, both stuck near 1.3 cores because
# numpy/pydicom hold the GIL. Worker processes cost ~5-10 s of start-up and ~0.5 GB, but they
# are the only mode that scales with cores: 52 slices/s past start-up vs 27 for a plain loop.
DEFAULT_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")


class NoUsableSlicesError(RuntimeError):
    """Every file was rejected or unlabelled: there is nothing to train on."""


class DataFolderError(ValueError):
    """The data folder given is missing or is not a folder."""


# What a run's inputs can be wrong about; commands turn these into one line, not a traceback.
INPUT_ERRORS: tuple[type[Exception], ...] = (LabelsError, NoUsableSlicesError, DataFolderError,
                                             splits.EmptySplitError)


@dataclass(frozen=True)
class IngestPlan:
    """Decided before Beam: settings for the workers, the split names, and the file list."""

    settings: fte.IngestSettings
    split_ratios: dict[str, float]
    relative_paths: tuple[str, ...]
    skipped: tuple[discovery.Skipped, ...] = ()  # entries not read: ledger rows, no worker

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(self.split_ratios)

    @property
    def labelled_studies(self) -> int:
        return len(self.settings.study_labels)

    def assign(self, usable_studies: Iterable[str]) -> dict[str, str]:
        """study_id -> split for the studies that gave usable slices (the same in Beam and
        in the summary: deterministic)."""
        return splits.assign_usable_studies(self.settings.study_labels, usable_studies,
                                            self.split_ratios)


@dataclass(frozen=True)
class IngestSummary:
    """What the run produced, read back from the counts file after Beam finished."""

    sizes: dict[str, properties.SplitSize]
    rejects: dict[str, int]
    labelled_studies_without_slices: tuple[str, ...]  # salted study ids
    assignment: dict[str, str]  # study_id -> split, studies with usable slices only

    @property
    def total_examples(self) -> int:
        return sum(size.slices for size in self.sizes.values())


def list_input_files(input_base: str, labels_path: str = "") -> list[str]:
    """The files to read, relative and '/'-separated, sorted (discovery.list_tree's files)."""
    return [found.relative_path for found in discovery.list_tree(input_base, labels_path).files]


def make_plan(exec_properties: Dict[str, Any]) -> IngestPlan:
    """Validates inputs (splits are decided after reading); raises ValueError naming what is
    wrong."""
    input_base = exec_properties[standard_component_specs.INPUT_BASE_KEY]
    labels_path = exec_properties[LABELS_PATH_KEY]
    salt = resolve_salt(exec_properties[SALT_KEY])
    ratios = splits.ratios_from_json(exec_properties[SPLIT_RATIOS_KEY])
    study_labels = read_labels(labels_path, salt, fileio)  # fileio: gs:// and friends
    if not fileio.isdir(input_base):
        raise DataFolderError(f"data folder {input_base} does not exist or is not a folder")
    listing = discovery.list_tree(input_base, labels_path)
    relative_paths = [found.relative_path for found in listing.files]
    if listing.skipped:
        logging.warning("DicomExampleGen: %d entries of the data folder are not read (%s); "
                        "each is a ledger row", len(listing.skipped),
                        _format_counts(listing.skipped_counts()))
    if not relative_paths:
        skipped = (f" ({len(listing.skipped)} entries skipped: "
                   f"{_format_counts(listing.skipped_counts())})" if listing.skipped else "")
        raise NoUsableSlicesError(f"data folder {input_base} has no readable files inside "
                                  f"folders{skipped}; expected the layout "
                                  "scanner/study/series/<DICOM files>")
    settings = fte.IngestSettings(
        input_base=input_base,
        image_size=int(exec_properties[IMAGE_SIZE_KEY]),
        orientations=tuple(json.loads(exec_properties[ORIENTATIONS_KEY])),
        salt=salt,
        study_labels=dict(study_labels.labels),
    )
    return IngestPlan(settings, ratios, tuple(relative_paths), listing.skipped)


@dataclass(frozen=True)
class IngestOutputs:
    examples: Dict[str, beam.PCollection]  # split name -> serialized tf.Example
    ledger_lines: beam.PCollection          # JSON lines
    counts: beam.PCollection                # (key, count), see file_to_examples.FileOutcome


def expand_ingest(pipeline: beam.Pipeline, plan: IngestPlan, staging_prefix: str) -> IngestOutputs:
    """The Beam graph (module docstring). Reshuffle spreads files over workers (Create alone
    keeps one bundle). `staging_prefix`: where pass 1 stages examples (a temp folder).

    Entries the listing skipped become ledger lines and counts here, in the driver process:
    they cost no reading, and their paths never reach a worker.
    """
    tagged = (pipeline
              | "ListFiles" >> beam.Create(plan.relative_paths)
              | "SpreadFiles" >> beam.Reshuffle()
              | "Preprocess" >> beam.ParDo(fte.FileToExamplesDoFn(plan.settings)).with_outputs(
                  fte.EXAMPLES_TAG, fte.LEDGER_TAG, fte.COUNTS_TAG))
    skipped = [fte.skipped_outcome(entry, plan.settings) for entry in plan.skipped]
    ledger_lines = ((tagged[fte.LEDGER_TAG],
                     pipeline | "SkippedLedger" >> beam.Create(
                         [record.to_json() for outcome in skipped for record in outcome.rejects]))
                    | "AllLedgerLines" >> beam.Flatten())
    counts = ((tagged[fte.COUNTS_TAG],
               pipeline | "SkippedCounts" >> beam.Create(
                   [item for outcome in skipped for item in outcome.counts().items()]))
              | "AllCounts" >> beam.Flatten()
              | "SumCounts" >> beam.CombinePerKey(sum))
    assignment = (counts
                  | "UsableStudies" >> beam.FlatMapTuple(
                      lambda key, _: [key[len(fte.STUDY_COUNT_PREFIX):]]
                      if key.startswith(fte.STUDY_COUNT_PREFIX) else [])
                  | "AllUsableStudies" >> beam.combiners.ToList()
                  | "AssignSplits" >> beam.Map(plan.assign))
    routed = (tagged[fte.EXAMPLES_TAG]
              | "StageExamples" >> beam.io.WriteToTFRecord(staging_prefix,
                                                           compression_type="uncompressed")
              | "ReadStaged" >> beam.io.ReadAllFromTFRecord(compression_type="uncompressed")
              | "RouteToSplits" >> beam.ParDo(_RouteToSplit(),
                                              beam.pvalue.AsSingleton(assignment)
                                              ).with_outputs(*plan.split_names))
    return IngestOutputs({name: routed[name] for name in plan.split_names}, ledger_lines, counts)


class _RouteToSplit(beam.DoFn):
    """A staged (keyed) example -> the serialized example, tagged with its study's split."""

    def process(self, record: bytes, assignment: Dict[str, str]
                ) -> Iterator[beam.pvalue.TaggedOutput]:
        study_id, example = fte.split_keyed_example(record)
        yield beam.pvalue.TaggedOutput(assignment[study_id], example)


class Executor(BaseBeamExecutor):
    """Study-split DICOM ingestion; see the module docstring."""

    def _make_beam_pipeline(self) -> beam.Pipeline:
        if not self._beam_pipeline_args and self._make_beam_pipeline_fn is None:
            self._beam_pipeline_args = list(DEFAULT_BEAM_ARGS)
        return super()._make_beam_pipeline()

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        """Writes the splits, the ledger and the counts; fails when no slice was usable.

        Splits are written without WriteSplit's Reshuffle: on the DirectRunner a shuffle holds
        every 256 KiB image in memory at once, so peak memory would grow with the dataset.
        Files are already in random order after the file-list Reshuffle. Gzip is ISA-L's
        deflate at level 1 (gzip_sink.py): Beam's zlib at level 6 cost more than decoding and
        preprocessing a slice.
        """
        self._log_startup(input_dict, output_dict, exec_properties)
        plan = make_plan(exec_properties)
        examples = artifact_utils.get_single_instance(output_dict[standard_component_specs.EXAMPLES_KEY])
        rejects = artifact_utils.get_single_instance(output_dict[REJECTS_KEY])
        examples.split_names = artifact_utils.encode_split_names(list(plan.split_names))
        counts_prefix = os.path.join(self._get_tmp_dir(), "dicom_example_gen_counts")
        staging_prefix = os.path.join(self._get_tmp_dir(), "staged_examples", "examples")
        logging.info("DicomExampleGen: %d files, %d labelled studies, splits %s",
                     len(plan.relative_paths), plan.labelled_studies, ", ".join(plan.split_names))
        with self._make_beam_pipeline() as pipeline:
            outputs = expand_ingest(pipeline, plan, staging_prefix)
            for name, split in outputs.examples.items():
                _ = split | f"WriteSplit[{name}]" >> gzip_sink.write_gzip_tfrecords(
                    os.path.join(artifact_utils.get_split_uri([examples], name),
                                 write_split.DEFAULT_TF_RECORD_FILE_NAME))
            _ = outputs.ledger_lines | "WriteLedger" >> _write_single_text_file(
                os.path.join(rejects.uri, ledger.LEDGER_FILE_NAME))
            _ = (outputs.counts
                 | "CountsToJson" >> beam.MapTuple(lambda key, count: json.dumps([key, count]))
                 | "WriteCounts" >> _write_single_text_file(counts_prefix))
        summary = _read_summary(counts_prefix, plan)
        _record_properties(examples, rejects, summary)
        _log_summary(summary)
        if summary.total_examples == 0:
            raise NoUsableSlicesError(
                f"no usable slices: all {len(plan.relative_paths)} files were rejected "
                f"({_format_counts(summary.rejects) or 'no reasons recorded'}); see the ledger "
                f"{os.path.join(rejects.uri, ledger.LEDGER_FILE_NAME)}")
        splits.require_every_split(summary.assignment, plan.split_ratios, plan.labelled_studies)


def _write_single_text_file(path: str) -> beam.PTransform:
    """One file at exactly `path` (empty when nothing was rejected), not sharded."""
    return beam.io.WriteToText(path, num_shards=1, shard_name_template="")


def _read_summary(counts_path: str, plan: IngestPlan) -> IngestSummary:
    with fileio.open(counts_path, "r") as handle:
        counts = dict(json.loads(line) for line in handle if line.strip())
    study_slices = {key[len(fte.STUDY_COUNT_PREFIX):]: value for key, value in counts.items()
                    if key.startswith(fte.STUDY_COUNT_PREFIX)}
    assignment = plan.assign(study_slices)
    sizes = {name: [0, 0, 0] for name in plan.split_names}  # slices, studies, positive studies
    for study, split in assignment.items():
        sizes[split][0] += study_slices[study]
        sizes[split][1] += 1
        sizes[split][2] += int(plan.settings.study_labels[study] == 1)
    return IngestSummary(
        sizes={name: properties.SplitSize(*sizes[name]) for name in plan.split_names},
        rejects=dict(sorted((key[len(fte.REJECTS_COUNT_PREFIX):], value)
                            for key, value in counts.items()
                            if key.startswith(fte.REJECTS_COUNT_PREFIX))),
        labelled_studies_without_slices=tuple(sorted(set(plan.settings.study_labels)
                                                     - set(study_slices))),
        assignment=assignment,
    )


def _record_properties(examples: types.Artifact, rejects: types.Artifact,
                       summary: IngestSummary) -> None:
    examples_utils.set_payload_format(examples, example_gen_pb2.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, write_split.to_file_format_str(
        example_gen_pb2.FORMAT_TFRECORDS_GZIP))
    properties.record_split_sizes(examples, summary.sizes,
                                  len(summary.labelled_studies_without_slices))
    properties.record_reject_counts(rejects, summary.rejects)


def _log_summary(summary: IngestSummary) -> None:
    logging.info("DicomExampleGen kept %d slices (%s) from studies (%s); rejected %s",
                 summary.total_examples,
                 _format_counts({name: size.slices for name, size in summary.sizes.items()}),
                 _format_counts({name: size.studies for name, size in summary.sizes.items()}),
                 _format_counts(summary.rejects) or "nothing")
    missing = summary.labelled_studies_without_slices
    if missing:
        shown = ", ".join(missing[:_MAX_STUDIES_LISTED]) + (" ..." if len(missing) > _MAX_STUDIES_LISTED else "")
        logging.warning("DicomExampleGen: %d labelled studies gave no usable slice "
                        "(salted study_id): %s", len(missing), shown)


def _format_counts(counts: Dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in counts.items())
