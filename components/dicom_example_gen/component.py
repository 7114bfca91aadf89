"""DicomExampleGen: hospital DICOM folders + a labels file -> study-split TFRecords + a rejects ledger.

An ExampleGen (the same `examples` output, so StatisticsGen and the Trainer consume it
unchanged; the same `input_base` / `input_config`, so TFX's file-based driver resolves it)
with the few parameters DICOM needs, an explicit `split_ratios`, and a second output, the
rejects ledger. The work is in executor.py; the DICOM -> tensor code is
components/dicom/preprocessing.py, shared with the serving client.
"""
from __future__ import annotations

import json
from typing import Optional, Sequence

from tfx import types
from tfx.components.example_gen import utils as example_gen_utils
from tfx.dsl.components.base import base_beam_component, executor_spec
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter

from components.dicom_example_gen import splits
from components.dicom_example_gen.driver import DicomDriver
from components.dicom_example_gen.executor import (
    IMAGE_SIZE_KEY, LABELS_PATH_KEY, ORIENTATIONS_KEY, REJECTS_KEY, SALT_KEY, SPLIT_RATIOS_KEY,
    Executor)
from components.features import DEFAULT_IMAGE_SIZE, DEFAULT_SALT
from components.dicom.preprocessing import PreprocessSettings


class RejectLedger(types.Artifact):
    """The files and frames DicomExampleGen skipped, one JSON line each (see ledger.py).

    Custom properties: `rejects_<reason>` (count per reason) and `rejects_total`.
    """

    TYPE_NAME = "msmri.DicomRejectLedger"  # "<namespace>.<Name>": what Kubeflow V2 accepts


class DicomExampleGenSpec(types.ComponentSpec):
    """The input folder (as file-based ExampleGens take it) plus what DICOM ingestion needs."""

    PARAMETERS = {
        standard_component_specs.INPUT_BASE_KEY: ExecutionParameter(type=str),
        # Read by TFX's file-based driver (span/version); DicomExampleGen reads the whole tree.
        standard_component_specs.INPUT_CONFIG_KEY: ExecutionParameter(type=example_gen_pb2.Input),
        SPLIT_RATIOS_KEY: ExecutionParameter(type=str),  # JSON, e.g. {"train": 0.8, "eval": 0.2}
        LABELS_PATH_KEY: ExecutionParameter(type=str),
        IMAGE_SIZE_KEY: ExecutionParameter(type=int),
        ORIENTATIONS_KEY: ExecutionParameter(type=str),  # JSON list, e.g. ["axial"]
        SALT_KEY: ExecutionParameter(type=str),
    }
    INPUTS = {}
    OUTPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        REJECTS_KEY: ChannelParameter(type=RejectLedger),
    }


class DicomExampleGen(base_beam_component.BaseBeamComponent):
    """Reads `input_base` (scanner/study/series/files) and writes gzipped tf.Example TFRecords.

    Splits are by study, stratified by label, with ratios counted in studies. Beam arguments
    come from the pipeline or `.with_beam_pipeline_args(...)` and are passed through unchanged;
    without any, the DirectRunner uses every core (see executor.DEFAULT_BEAM_ARGS).
    """

    SPEC_CLASS = DicomExampleGenSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(Executor)
    DRIVER_CLASS = DicomDriver

    def __init__(
        self,
        input_base: str,
        labels_path: str,
        image_size: int = DEFAULT_IMAGE_SIZE,
        orientations: Sequence[str] = ("axial",),
        salt: str = DEFAULT_SALT,
        split_ratios: Optional[splits.SplitRatios] = None,
    ):
        """Args:
          input_base: the hospital export folder (any filesystem TFX reads: local, gs://, ...).
          labels_path: CSV or XLSX with columns study_uid, sclerosis (0/1).
          image_size: side of the square uint8 output image (512 in production).
          orientations: planes to keep, among axial, coronal, sagittal, oblique.
          salt: key of the study/series/file hashes; keep it per deployment.
          split_ratios: e.g. {"train": 0.8, "eval": 0.2}, or (name, ratio) pairs, optionally
            with "test"; relative weights, counted in studies. Default: splits.DEFAULT_SPLIT_RATIOS.
        """
        settings = PreprocessSettings(image_size=image_size, orientations=tuple(orientations))
        if not labels_path:
            raise ValueError("labels_path is required (CSV or XLSX with study_uid, sclerosis)")
        spec = DicomExampleGenSpec(
            input_base=input_base,
            input_config=example_gen_utils.make_default_input_config(),
            split_ratios=splits.ratios_to_json(split_ratios or splits.DEFAULT_SPLIT_RATIOS),
            labels_path=labels_path,
            image_size=settings.image_size,
            orientations=json.dumps(list(settings.orientations)),
            salt=salt,
            examples=types.Channel(type=standard_artifacts.Examples),
            rejects=types.Channel(type=RejectLedger),
        )
        super().__init__(spec=spec)
