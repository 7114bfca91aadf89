"""Runs the pipeline here: LocalDagRunner, Beam DirectRunner over all cores, MLMD in SQLite."""
from __future__ import annotations

import contextlib
import os
import warnings

from tfx import v1 as tfx

from components.dicom.metrics import UndefinedAUCWarning
from pipeline.config import PipelineConfig
from pipeline.interrupted_runs import exclusive_local_run
from pipeline.pipeline import create_pipeline
from pipeline.progress import component_progress
from pipeline.run_summary import RunSummary, summarize_latest_run


def run_local(config: PipelineConfig, *, show_progress: bool = True) -> RunSummary:
    os.makedirs(config.output_dir, exist_ok=True)
    metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(config.metadata_path)
    pipeline = create_pipeline(config, metadata_connection_config=metadata)
    progress = (component_progress(total=len(pipeline.components)) if show_progress
                else contextlib.nullcontext())
    with exclusive_local_run(config.output_dir, config.metadata_path, config.pipeline_name,
                             config.pipeline_root), progress, warnings.catch_warnings():
        # Per-scanner slices with one class have no AUC (the report shows n/a); TFMA's numpy
        # divisions by zero say the same for its ratios. Neither is news at run time.
        warnings.filterwarnings("ignore", category=UndefinedAUCWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning,
                                module=r"tensorflow_model_analysis\.")
        tfx.orchestration.LocalDagRunner().run(pipeline)
    return summarize_latest_run(config.metadata_path)
