"""Compiles the same pipeline to a Kubeflow Pipelines V2 / Vertex AI Pipelines JSON spec.

Scale-out Beam runners (Flink, Spark, Dataflow) need no code here: their flags travel in
PipelineConfig.beam_args (`mspipe pipeline run --beam-arg=...`), which every Beam-based
component receives unchanged.
"""
from __future__ import annotations

import os

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline

DEFAULT_IMAGE = "gcr.io/your-project/ms-mri-pipeline:latest"


def compile_kubeflow_v2(config: PipelineConfig, output_file: str, *, image: str = DEFAULT_IMAGE) -> str:
    """Writes the pipeline spec; the image must contain this package (see README)."""
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=os.path.dirname(os.path.abspath(output_file)),
        output_filename=os.path.basename(output_file),
    )
    runner.run(create_pipeline(config), write_out=True)
    return output_file
