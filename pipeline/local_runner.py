"""Runs the pipeline here: LocalDagRunner, Beam DirectRunner over all cores, MLMD in SQLite."""
from __future__ import annotations

import os

from tfx import v1 as tfx

from pipeline.config import PipelineConfig
from pipeline.pipeline import create_pipeline
from pipeline.progress import component_progress
from pipeline.run_summary import RunSummary, summarize_latest_run


def run_local(config: PipelineConfig, *, show_progress: bool = True) -> RunSummary:
    os.makedirs(config.output_dir, exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    pipeline = create_pipeline(config, metadata_connection_config=metadata)
    if show_progress:
        with component_progress(total=len(pipeline.components)):
            tfx.orchestration.LocalDagRunner().run(pipeline)
    else:
        tfx.orchestration.LocalDagRunner().run(pipeline)
    return summarize_latest_run(config.metadata_path)
