"""EvaluationReport: the run's HTML report (report.py) as a tracked artifact; work in executor.py."""
from __future__ import annotations

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.artifact import Artifact
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.dicom_example_gen.component import RejectLedger
from components.evaluation_report import executor as report_executor


class EvaluationReportArtifact(Artifact):
    """Folder with index.html and its PNG figures."""
    TYPE_NAME = "msmri.EvaluationReport"  # "<namespace>.<Name>": what Kubeflow V2 accepts


class EvaluationReportSpec(types.ComponentSpec):
    """What the run produced upstream, in; the report folder, out."""

    PARAMETERS = {
        report_executor.MODEL_NAME_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {
        report_executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        report_executor.REJECTS_KEY: ChannelParameter(type=RejectLedger),
        report_executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        report_executor.EVALUATION_KEY: ChannelParameter(type=standard_artifacts.ModelEvaluation),
        report_executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing),
        report_executor.PUSHED_MODEL_KEY: ChannelParameter(type=standard_artifacts.PushedModel),
    }
    OUTPUTS = {report_executor.REPORT_KEY: ChannelParameter(type=EvaluationReportArtifact)}


class EvaluationReport(base_component.BaseComponent):
    """Runs after the Pusher, so the report says whether and as which version the model went out."""

    SPEC_CLASS = EvaluationReportSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(report_executor.Executor)

    def __init__(self, *, examples: types.BaseChannel, rejects: types.BaseChannel,
                 model: types.BaseChannel, evaluation: types.BaseChannel,
                 blessing: types.BaseChannel, pushed_model: types.BaseChannel,
                 model_name: str):
        super().__init__(spec=EvaluationReportSpec(
            examples=examples, rejects=rejects, model=model, evaluation=evaluation,
            blessing=blessing, pushed_model=pushed_model, model_name=model_name,
            report=types.Channel(type=EvaluationReportArtifact)))
