"""What a finished run produced, read back from ML Metadata (not from guesses about paths)."""
from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import ml_metadata as mlmd
from ml_metadata.proto import metadata_store_pb2

from components.dicom_example_gen import properties
from components.dicom_example_gen.component import RejectLedger
from components.evaluation_report.component import EvaluationReportArtifact


@dataclasses.dataclass
class RunSummary:
    run_id: str
    blessed: bool | None
    pushed_version: int | None
    pushed_path: str | None
    model_uri: str | None
    examples_uri: str | None
    rejects_uri: str | None
    report_path: str | None
    examples: dict[str, int]
    rejects: dict[str, int]

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def _custom(artifact: metadata_store_pb2.Artifact, key: str) -> Any:
    if key not in artifact.custom_properties:
        return None
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    if kind == "struct_value":
        from google.protobuf import json_format
        return json_format.MessageToDict(value.struct_value)
    return getattr(value, kind)


def latest_run_outputs(metadata_path: str) -> tuple[str, dict[str, metadata_store_pb2.Artifact]]:
    """Output artifacts of the newest pipeline run, keyed by artifact type name (cached ones too)."""
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = mlmd.MetadataStore(config)
    # One MLMD store per output folder (PipelineConfig.metadata_path), so every run in it is ours.
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise RuntimeError(f"no pipeline run recorded in {metadata_path}")
    run = max(runs, key=lambda context: (context.create_time_since_epoch, context.id))
    executions = store.get_executions_by_context(run.id)
    events = store.get_events_by_execution_ids([execution.id for execution in executions])
    output_ids = [event.artifact_id for event in events
                  if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)]
    artifacts = store.get_artifacts_by_id(output_ids)
    type_names = {t.id: t.name for t in store.get_artifact_types()}
    by_type: dict[str, metadata_store_pb2.Artifact] = {}
    for artifact in sorted(artifacts, key=lambda a: a.id):
        by_type[type_names[artifact.type_id]] = artifact
    return run.name, by_type


def summarize_latest_run(metadata_path: str) -> RunSummary:
    run_id, outputs = latest_run_outputs(metadata_path)
    blessing = outputs.get("ModelBlessing")
    pushed = outputs.get("PushedModel")
    report = outputs.get(EvaluationReportArtifact.TYPE_NAME)
    ledger = outputs.get(RejectLedger.TYPE_NAME)
    examples = outputs.get("Examples")
    pushed_flag = pushed is not None and _custom(pushed, "pushed") == 1
    return RunSummary(
        run_id=run_id,
        blessed=None if blessing is None else _custom(blessing, "blessed") == 1,
        pushed_version=int(_custom(pushed, "pushed_version")) if pushed_flag else None,
        pushed_path=_custom(pushed, "pushed_destination") if pushed_flag else None,
        model_uri=outputs["Model"].uri if "Model" in outputs else None,
        examples_uri=examples.uri if examples is not None else None,
        rejects_uri=ledger.uri if ledger is not None else None,
        report_path=os.path.join(report.uri, "index.html") if report is not None else None,
        examples={} if examples is None else {
            name: size.slices for name, size in properties.read_split_sizes(examples).items()},
        rejects={} if ledger is None else properties.read_reject_counts(ledger),
    )
