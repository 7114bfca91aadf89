"""Writes the HTML evaluation report (components/evaluation_report/report.py) as a tracked pipeline artifact."""

import os
from typing import Optional

from tfx import v1 as tfx
from tfx.types import artifact_utils
from tfx.types.artifact import Artifact
from tfx.types.standard_artifacts import Examples, Model, ModelBlessing, ModelEvaluation, PushedModel
from tfx.utils import path_utils

from components.dicom_example_gen.component import RejectLedger


class EvaluationReportArtifact(Artifact):
    """Folder with index.html and its PNG figures."""
    TYPE_NAME = "msmri.EvaluationReport"  # "<namespace>.<Name>": what Kubeflow V2 accepts


def _custom_int(artifact: Artifact, key: str) -> Optional[int]:
    return artifact.get_int_custom_property(key) if artifact.has_custom_property(key) else None


@tfx.dsl.components.component
def EvaluationReport(
    examples: tfx.dsl.components.InputArtifact[Examples],
    rejects: tfx.dsl.components.InputArtifact[RejectLedger],
    model: tfx.dsl.components.InputArtifact[Model],
    evaluation: tfx.dsl.components.InputArtifact[ModelEvaluation],
    blessing: tfx.dsl.components.InputArtifact[ModelBlessing],
    pushed_model: tfx.dsl.components.InputArtifact[PushedModel],
    report: tfx.dsl.components.OutputArtifact[EvaluationReportArtifact],
    model_name: tfx.dsl.components.Parameter[str],
    decision_threshold: tfx.dsl.components.Parameter[float] = 0.5,
) -> None:
    from components.evaluation_report.report import write_report  # matplotlib only when the component runs

    pushed = _custom_int(pushed_model, "pushed") == 1
    version = pushed_model.get_string_custom_property("pushed_version") if pushed else None
    path = write_report(
        report.uri,
        evaluation_uri=evaluation.uri,
        model_dir=path_utils.serving_model_path(model.uri),
        eval_examples_uri=artifact_utils.get_split_uri([examples], "eval"),
        rejects_uri=rejects.uri,
        blessed=_custom_int(blessing, "blessed") == 1,
        pushed_version=int(version) if version else None,
        model_name=model_name,
        threshold=decision_threshold,
    )
    print(f"Evaluation report written: {os.path.join(report.uri, os.path.basename(path))}")
