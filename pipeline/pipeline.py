"""The pipeline definition: one function, no runner knowledge (TFX template style)."""
from __future__ import annotations

from tfx import v1 as tfx

from components.atomic_pusher.component import AtomicPusher
from components.dicom_example_gen.component import DicomExampleGen
from components.evaluation.eval_config import build_eval_config
from components.evaluation_report.component import EvaluationReport
from components.validation_gate.component import DataValidationGate
from pipeline.config import PipelineConfig
from schemas import schema_path

TRAINER_RUN_FN = "components.trainer.trainer_module.run_fn"


def create_components(config: PipelineConfig) -> list:
    example_gen = DicomExampleGen(
        input_base=config.data_dir,
        labels_path=config.labels_path,
        image_size=config.image_size,
        orientations=list(config.orientations),
        split_ratios=dict(config.split_ratios),
        salt=config.salt,
    )
    examples = example_gen.outputs["examples"]
    statistics_gen = tfx.components.StatisticsGen(examples=examples)
    schema_importer = tfx.components.ImportSchemaGen(schema_file=schema_path())
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_importer.outputs["schema"])
    validation_gate = DataValidationGate(anomalies=example_validator.outputs["anomalies"])

    trainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        examples=examples,
        schema=schema_importer.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.model.to_dict(),
    )
    trainer.add_upstream_node(validation_gate)  # anomalies stop the run before training

    latest_blessed = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")

    evaluator = tfx.components.Evaluator(
        examples=examples,
        model=trainer.outputs["model"],
        baseline_model=latest_blessed.outputs["model"],
        example_splits=["eval"],
        eval_config=build_eval_config(min_study_auc=config.min_study_auc,
                                      max_auc_drop=config.max_auc_drop),
    )
    pusher = AtomicPusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=config.model_base_path)),
    )
    report = EvaluationReport(
        examples=examples,
        rejects=example_gen.outputs["rejects"],
        model=trainer.outputs["model"],
        evaluation=evaluator.outputs["evaluation"],
        blessing=evaluator.outputs["blessing"],
        pushed_model=pusher.outputs["pushed_model"],
        model_name=config.model_name,
    )
    return [example_gen, statistics_gen, schema_importer, example_validator, validation_gate,
            trainer, latest_blessed, evaluator, pusher, report]


def create_pipeline(config: PipelineConfig, *, metadata_connection_config=None) -> tfx.dsl.Pipeline:
    """The whole DAG. Runners pick the orchestrator, the Beam runner and the metadata store."""
    return tfx.dsl.Pipeline(
        pipeline_name=config.pipeline_name,
        pipeline_root=config.pipeline_root,
        components=create_components(config),
        enable_cache=config.enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(config.beam_args),
    )
