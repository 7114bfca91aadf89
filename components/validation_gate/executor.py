"""Stops the run before training when ExampleValidator found anomalies.

TFX's ExampleValidator records anomalies but never fails; the Trainer would happily train on a
dataset whose images have the wrong size or whose labels are not 0/1. This executor turns the
anomalies into a failure whose message a person can act on. The anomalies are read through
TFX's filesystem layer (fileio), so a pipeline root on gs:// works as a local one does.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME as SCHEMA_DIFF_FILE
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils, standard_component_specs
from tfx.utils import io_utils


class DataAnomaliesError(RuntimeError):
    """The examples do not match schemas/schema.pbtxt."""


def describe_anomalies(anomalies_by_split: Dict[str, anomalies_pb2.Anomalies]) -> List[str]:
    """One readable line per anomalous feature: split, feature, what is wrong."""
    lines = []
    for split, anomalies in sorted(anomalies_by_split.items()):
        for feature, info in sorted(anomalies.anomaly_info.items()):
            reasons = "; ".join(reason.description or reason.short_description
                                for reason in info.reason) or info.description
            lines.append(f"split '{split}', feature '{feature}': {reasons}")
        if anomalies.HasField("dataset_anomaly_info"):
            reasons = "; ".join(r.description for r in anomalies.dataset_anomaly_info.reason)
            lines.append(f"split '{split}', whole dataset: {reasons}")
    return lines


def read_anomalies(artifact: types.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
    """Split name -> the Anomalies ExampleValidator wrote for it."""
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), SCHEMA_DIFF_FILE)
        result[split] = anomalies_pb2.Anomalies.FromString(io_utils.read_bytes_file(path))
    return result


class Executor(base_executor.BaseExecutor):
    """Fails with the list of anomalies, or passes silently when the data matches the schema."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        anomalies = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.ANOMALIES_KEY])
        problems = describe_anomalies(read_anomalies(anomalies))
        if problems:
            raise DataAnomaliesError(
                "Data validation failed; training was not started. Fix the data or, if the change "
                "is intended, update schemas/schema.pbtxt:\n  " + "\n  ".join(problems))
