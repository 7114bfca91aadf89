"""Stops the run before training when ExampleValidator found anomalies.

TFX's ExampleValidator records anomalies but never fails; the Trainer would happily train on a
dataset whose images have the wrong size or whose labels are not 0/1. This gate turns the
anomalies into a failure whose message a person can act on.
"""

import os
from typing import Dict, List

from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.standard_artifacts import ExampleAnomalies

_SCHEMA_DIFF_FILE = "SchemaDiff.pb"


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


def read_anomalies(artifact: ExampleAnomalies) -> Dict[str, anomalies_pb2.Anomalies]:
    result = {}
    for split in artifact_utils.decode_split_names(artifact.split_names):
        path = os.path.join(artifact_utils.get_split_uri([artifact], split), _SCHEMA_DIFF_FILE)
        anomalies = anomalies_pb2.Anomalies()
        with open(path, "rb") as handle:
            anomalies.ParseFromString(handle.read())
        result[split] = anomalies
    return result


@tfx.dsl.components.component
def DataValidationGate(anomalies: tfx.dsl.components.InputArtifact[ExampleAnomalies]) -> None:
    """Fails with the list of anomalies, or passes silently when the data matches the schema."""
    problems = describe_anomalies(read_anomalies(anomalies))
    if problems:
        raise DataAnomaliesError(
            "Data validation failed; training was not started. Fix the data or, if the change is "
            "intended, update schemas/schema.pbtxt:\n  " + "\n  ".join(problems))
