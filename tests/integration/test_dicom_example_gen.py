"""DicomExampleGen: the Example codec against TensorFlow, its Beam worker module, and the
component in a real TFX pipeline (LocalDagRunner, Beam DirectRunner) on the synthetic hospital
export. The labels and split logic is unit-tested in tests/unit/test_labels_and_splits.py."""
from __future__ import annotations

import argparse
import collections
import gzip
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from components import features
from components.dicom_example_gen import file_to_examples
from components.dicom.records import decode_example, encode_example
from components.dicom.labels import LabelsError
from components.synthetic import PLANTED_PATIENT_STRINGS, generate_dataset
from support.output_capture import capture_all_output as _capture_all_output
from support.tables import write_csv

IMAGE_SIZE = 64
SALT = "test-salt"
IN_MEMORY = ["--direct_running_mode=in_memory", "--direct_num_workers=1"]
REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ example codec, workers

def test_example_codec_is_byte_identical_to_tensorflow():
    import numpy as np
    import tensorflow as tf

    values = {features.IMAGE: np.arange(4096, dtype=np.uint16).astype(np.uint8).tobytes(),
              features.LABEL: 1, features.STUDY_ID: "ab12", features.SERIES_ID: "",
              features.SCANNER: "ge_signa", features.SLICE_INDEX: -3, features.ORIENTATION: "axial",
              features.ROWS: 748, features.COLS: 2 ** 40}
    expected = tf.train.Example()
    for name, value in values.items():
        feature = expected.features.feature[name]
        if isinstance(value, int):
            feature.int64_list.value.append(value)
        else:
            feature.bytes_list.value.append(value.encode() if isinstance(value, str) else value)
    assert encode_example(values) == expected.SerializeToString(deterministic=True)
    assert decode_example(expected.SerializeToString()) == {
        name: [value.encode() if isinstance(value, str) else value] for name, value in values.items()}


def test_beam_worker_module_does_not_import_tensorflow():
    code = ("import sys, components.dicom_example_gen.file_to_examples; "
            "sys.exit('tensorflow' in sys.modules or 'tfx' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120).returncode == 0


def test_cache_fingerprint_sees_the_whole_tree_but_no_path(tmp_path):
    from components.dicom_example_gen.driver import tree_fingerprint

    series = tmp_path / "data" / "scanner_a" / "1.2.840.99" / "1.2.840.98"
    series.mkdir(parents=True)
    (series / "IM0001").write_bytes(b"x" * 10)
    labels = write_csv(tmp_path / "labels.csv", [["study_uid", "sclerosis"], ["1.2.840.99", 1]])
    before = tree_fingerprint(str(tmp_path / "data"), str(labels))
    (series / "IM0002").write_bytes(b"y" * 10)  # a new slice deep in a series folder
    after = tree_fingerprint(str(tmp_path / "data"), str(labels))
    assert before != after and "files:2,total_bytes:20" in after
    assert "1.2.840" not in after and "scanner_a" not in after


# ------------------------------------------------------------------ the component in TFX

@dataclass(frozen=True)
class PipelineRun:
    out: Path
    examples_uri: str
    ledger_path: str
    mlmd_path: Path
    captured: str


def _run_pipeline(out: Path, data_dir: Path, labels: Path, beam_args: list[str] | None):
    from tfx.orchestration import metadata, pipeline
    from tfx.orchestration.local.local_dag_runner import LocalDagRunner

    from components.dicom_example_gen import DicomExampleGen

    component = DicomExampleGen(input_base=str(data_dir), labels_path=str(labels),
                                image_size=IMAGE_SIZE, salt=SALT)
    LocalDagRunner().run(pipeline.Pipeline(
        pipeline_name="dicom-example-gen-test", pipeline_root=str(out / "root"),
        components=[component], enable_cache=False, beam_pipeline_args=beam_args,
        metadata_connection_config=metadata.sqlite_metadata_connection_config(
            str(out / "metadata.sqlite"))))
    return out / "metadata.sqlite"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("export") / "data")


@pytest.fixture(scope="module")
def pipeline_run(dataset, tmp_path_factory) -> PipelineRun:
    """One run with the default Beam arguments (multi-processing DirectRunner), all output captured."""
    from mspipe.commands.ingest import read_summary
    from tfx.orchestration import metadata

    out = tmp_path_factory.mktemp("run")
    with _capture_all_output(out / "captured.log"):
        mlmd_path = _run_pipeline(out, dataset.out_dir, dataset.labels_csv, beam_args=None)
    summary = read_summary(metadata.sqlite_metadata_connection_config(str(mlmd_path)))
    return PipelineRun(out, summary["output"], summary["ledger"], mlmd_path,
                       (out / "captured.log").read_text(errors="replace"))


def _examples_by_split(examples_uri: str) -> dict[str, list[dict]]:
    from components.dicom.records import decode_example, read_tfrecords, tfrecord_files

    return {split_dir.name[len("Split-"):]: [decode_example(record)
                                             for path in tfrecord_files(split_dir)
                                             for record in read_tfrecords(path)]
            for split_dir in sorted(Path(examples_uri).glob("Split-*"))}


def _value(example: dict, name: str):
    return example[name][0]


def _study_splits(examples_uri: str) -> dict[bytes, set[str]]:
    assignment = collections.defaultdict(set)
    for split, examples in _examples_by_split(examples_uri).items():
        for example in examples:
            assignment[_value(example, features.STUDY_ID)].add(split)
    return dict(assignment)


@pytest.mark.slow
def test_every_study_is_in_exactly_one_split_with_its_label(dataset, pipeline_run):
    by_split = _examples_by_split(pipeline_run.examples_uri)
    assert set(by_split) == {"train", "eval"}
    assignment = _study_splits(pipeline_run.examples_uri)
    assert all(len(splits_of_study) == 1 for splits_of_study in assignment.values())
    expected = {features.hash_uid(uid, SALT).encode(): study for uid, study in dataset.studies.items()}
    assert set(assignment) == set(expected)
    slices = collections.Counter(_value(e, features.STUDY_ID) for es in by_split.values() for e in es)
    assert slices == {study_id: study.axial_slices for study_id, study in expected.items()}
    eval_labels = {_value(e, features.LABEL) for e in by_split["eval"]}
    assert eval_labels == {0, 1}
    for example in by_split["train"] + by_split["eval"]:
        assert set(example) == set(features.ALL_FEATURES)
        assert len(_value(example, features.IMAGE)) == IMAGE_SIZE * IMAGE_SIZE
        assert _value(example, features.LABEL) == expected[_value(example, features.STUDY_ID)].label
        assert _value(example, features.ORIENTATION) == b"axial"
        assert _value(example, features.SCANNER) == expected[_value(example, features.STUDY_ID)].scanner.encode()


@pytest.mark.slow
def test_reject_counts_match_the_planted_defects(dataset, pipeline_run):
    from mspipe.commands.ingest import read_summary
    from components.dicom_example_gen.ledger import count_by_reason, read_ledger
    from tfx.orchestration import metadata

    records = read_ledger(pipeline_run.ledger_path)
    assert count_by_reason(records) == dataset.expected_rejects
    summary = read_summary(metadata.sqlite_metadata_connection_config(str(pipeline_run.mlmd_path)))
    assert summary["rejects"] == dataset.expected_rejects
    assert sum(summary["examples"].values()) == dataset.expected_slices
    file_level = [r for r in records if r.frame_index is None]
    assert {r.reason for r in file_level} >= {"not_dicom", "unlabeled_study", "truncated"}
    assert all(len(r.file_id) == 24 and r.scanner for r in records)


@pytest.mark.slow
def test_no_patient_data_in_outputs_metadata_or_logs(dataset, pipeline_run):
    planted = set(PLANTED_PATIENT_STRINGS) | set(dataset.planted_strings)
    raw_uids = {part for record in dataset.files for part in record.path.split("/")[1:3]}
    assert planted and len(raw_uids) > 20
    blobs = {"captured logs": pipeline_run.captured.encode(),
             "MLMD": pipeline_run.mlmd_path.read_bytes()}
    for path in (pipeline_run.out / "root").rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            blobs[str(path)] = gzip.decompress(data) if path.suffix == ".gz" else data
    # the capture saw the executor's absl INFO line
    assert f"DicomExampleGen kept {dataset.expected_slices} slices" in pipeline_run.captured
    for where, blob in blobs.items():
        for secret in planted | raw_uids:
            assert secret.encode() not in blob, f"{secret!r} leaked into {where}"


@pytest.mark.slow
def test_cli_json_summary_and_deterministic_split(dataset, pipeline_run, tmp_path, capfd):
    """Second run: the CLI, XLSX labels, the in-memory runner. Same studies in the same splits."""
    from mspipe.commands import ingest as cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["--data", str(dataset.out_dir), "--labels", str(dataset.labels_xlsx),
                              "--out", str(tmp_path), "--json", "--image-size", str(IMAGE_SIZE),
                              "--salt", SALT] + [f"--beam-arg={arg}" for arg in IN_MEMORY])
    assert cli.run(args) == 0
    summary = json.loads(capfd.readouterr().out)
    assert summary["rejects"] == dataset.expected_rejects
    assert sum(summary["examples"].values()) == dataset.expected_slices
    assert summary["output"].startswith(str(tmp_path))
    assert _study_splits(summary["output"]) == _study_splits(pipeline_run.examples_uri)


@pytest.mark.slow
@pytest.mark.parametrize("labels_rows, error", [
    (None, "does not exist"),
    ([["StudyInstanceUID", "ms"], ["1.2.3", 1]], "lacks column(s) study_uid, sclerosis"),
    ([["study_uid", "sclerosis"], ["1.2.3", "maybe"]], "'sclerosis' must be 0 or 1"),
])
def test_pipeline_fails_clearly_on_bad_labels(dataset, tmp_path, labels_rows, error):
    labels = tmp_path / "labels.csv"
    if labels_rows is not None:
        write_csv(labels, labels_rows)
    with pytest.raises(LabelsError, match="labels file") as raised:
        _run_pipeline(tmp_path, dataset.out_dir, labels, IN_MEMORY)
    assert error in str(raised.value)


@pytest.mark.slow
def test_pipeline_fails_clearly_without_usable_slices(dataset, tmp_path):
    from components.dicom_example_gen.executor import NoUsableSlicesError

    labels = write_csv(tmp_path / "labels.csv", [["study_uid", "sclerosis"], ["1.2.3.999", 1]])
    with pytest.raises(NoUsableSlicesError, match="no usable slices") as raised:
        _run_pipeline(tmp_path, dataset.out_dir, labels, IN_MEMORY)
    message = str(raised.value)
    assert f"unlabeled_study {dataset.total_files - len(dataset.reject_files('not_dicom'))}" in message
    assert not any(secret in message for secret in dataset.planted_strings)
