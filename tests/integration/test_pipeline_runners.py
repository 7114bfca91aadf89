"""Runners and orchestration glue: Kubeflow V2 compile, Beam portability, the data gate, progress."""
from __future__ import annotations

import io
import json
import logging

import pytest

from components.trainer.config import ModelConfig
from pipeline.config import PipelineConfig


def cloud_config() -> PipelineConfig:
    return PipelineConfig(data_dir="gs://bucket/export", labels_path="gs://bucket/labels.csv",
                          output_dir="gs://bucket/run", model=ModelConfig(image_size=64),
                          beam_args=("--runner=DataflowRunner", "--project=p", "--region=r"))


def test_kubeflow_v2_spec_holds_every_component(tmp_path):
    from pipeline.kubeflow_runner import compile_kubeflow_v2
    from pipeline.pipeline import create_pipeline

    path = compile_kubeflow_v2(cloud_config(), str(tmp_path / "spec.json"), image="example/ms:1")
    spec = json.loads(open(path).read())
    pipeline_spec = spec.get("pipelineSpec", spec)
    tasks = pipeline_spec["root"]["dag"]["tasks"]
    expected = {component.id for component in create_pipeline(cloud_config()).components}
    # The resolver compiles into tasks named after it (one per resolved channel).
    missing = {node for node in expected if not any(task.startswith(node) for task in tasks)}
    assert not missing, missing
    executors = json.dumps(pipeline_spec["deploymentSpec"])
    assert "example/ms:1" in executors
    assert "--runner=DataflowRunner" in executors  # Beam args reach the Beam components
    # The Trainer waits for the data gate, so anomalies stop the run before training.
    assert "DataValidationGate" in tasks["Trainer"].get("dependentTasks", [])


def test_beam_work_runs_on_the_portable_runner(tmp_path, capfd):
    """DicomExampleGen through Beam's portable job API (the path Flink and Spark take)."""
    from components.synthetic import generate_dataset
    from mspipe.main import main

    data = tmp_path / "export"
    manifest = generate_dataset(data, studies=4, seed=2, slices_per_series=2)
    main(["ingest", "--data", str(data), "--labels", str(data / "labels.csv"),
          "--out", str(tmp_path / "out"), "--image-size", "32", "--json",
          "--beam-arg=--runner=PortableRunner", "--beam-arg=--job_endpoint=embed",
          "--beam-arg=--environment_type=LOOPBACK"])
    out = capfd.readouterr().out
    summary = json.loads(out[out.index("{"):out.rindex("}") + 1])
    assert sum(summary["examples"].values()) == manifest.expected_slices
    assert summary["rejects"] == manifest.expected_rejects


def test_gate_turns_anomalies_into_a_readable_failure():
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import statistics_pb2

    from components.validation_gate.executor import describe_anomalies
    from schemas import schema_path

    schema = tfdv.load_schema_text(schema_path())
    stats = statistics_pb2.DatasetFeatureStatisticsList()
    dataset = stats.datasets.add(num_examples=10)
    label = dataset.features.add()
    label.path.step.append("label")
    label.type = statistics_pb2.FeatureNameStatistics.INT
    label.num_stats.common_stats.num_non_missing = 10
    label.num_stats.common_stats.min_num_values = 1
    label.num_stats.common_stats.max_num_values = 1
    label.num_stats.min, label.num_stats.max = 0, 3
    anomalies = tfdv.validate_statistics(stats, schema)
    lines = describe_anomalies({"train": anomalies})
    assert any("'label'" in line for line in lines), lines
    assert any("'image'" in line for line in lines), lines  # required feature missing
    assert all(line.startswith("split 'train'") for line in lines)


def test_gate_executor_reads_the_anomalies_artifact_and_fails_on_anomalies(tmp_path):
    from tensorflow_metadata.proto.v0 import anomalies_pb2
    from tfx.types import artifact_utils, standard_artifacts

    from components.validation_gate.executor import DataAnomaliesError, Executor

    def run_gate(anomalies: anomalies_pb2.Anomalies) -> None:
        artifact = standard_artifacts.ExampleAnomalies()
        artifact.uri = str(tmp_path / "anomalies")
        artifact.split_names = artifact_utils.encode_split_names(["train"])
        (tmp_path / "anomalies" / "Split-train").mkdir(parents=True, exist_ok=True)
        (tmp_path / "anomalies" / "Split-train" / "SchemaDiff.pb").write_bytes(
            anomalies.SerializeToString())
        Executor().Do({"anomalies": [artifact]}, {}, {})

    run_gate(anomalies_pb2.Anomalies())  # clean data: passes silently
    bad = anomalies_pb2.Anomalies()
    bad.anomaly_info["label"].description = "values outside 0..1"
    with pytest.raises(DataAnomaliesError, match="split 'train', feature 'label': values outside"):
        run_gate(bad)


def test_progress_lines_name_each_component():
    from absl import logging as absl_logging

    from pipeline.progress import component_progress

    stream = io.StringIO()
    with component_progress(total=2, stream=stream):
        absl_logging.info("Component %s is running.", "Trainer")
        absl_logging.set_verbosity(absl_logging.FATAL)  # what TF's SavedModel export does
        absl_logging.set_verbosity(absl_logging.INFO)
        absl_logging.info("Component %s is finished.", "Trainer")
        absl_logging.info("Skipping component %s.", "Pusher")
    with component_progress(total=1, stream=stream):
        absl_logging.info("Component %s is running.", "StatisticsGen")
        absl_logging.info("A cached execution %d is used.", 7)
        absl_logging.info("Component %s is finished.", "StatisticsGen")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[1/2] Trainer ..."
    assert lines[1].startswith("[1/2] Trainer done (") and lines[1].endswith(" s)")
    assert lines[2] == "[2/2] Pusher skipped"
    assert lines[4].startswith("[1/1] StatisticsGen done (cached")
    assert logging.getLogger("absl").propagate


@pytest.mark.parametrize("case", ["missing labels", "missing data folder"])
def test_pipeline_run_names_bad_inputs_in_one_line(case, tmp_path, capsys):
    """Like `mspipe ingest`: exit 1 and `mspipe pipeline run: error: ...`, no traceback."""
    from mspipe.main import main

    data, labels = tmp_path / "export", tmp_path / "labels.csv"
    if case == "missing labels":
        data.mkdir()
    else:
        labels.write_text("study_uid,sclerosis\n1.2.3,1\n", encoding="utf-8")
    code = main(["pipeline", "run", "--data", str(data), "--labels", str(labels),
                 "--out", str(tmp_path / "out"), "--beam-arg=--direct_running_mode=in_memory"])
    err = capsys.readouterr().err
    assert code == 1
    wanted = "labels file" if case == "missing labels" else "data folder"
    (line,) = [line for line in err.splitlines() if line.startswith("mspipe pipeline run: error:")]
    assert wanted in line and "does not exist" in line
    assert "Traceback" not in err
