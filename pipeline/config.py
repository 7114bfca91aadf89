"""One settings object for a pipeline run; runners and the CLI build it, nothing else reads env.

It composes the settings of what it runs instead of re-declaring them: `model` is the Trainer's
ModelConfig (its defaults are the training defaults), the data settings default to
DicomExampleGen's, the model name to the serving contract's. Every import here is TF-free, so
the CLI reads these defaults without loading TensorFlow.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Sequence

from components.contract import DEFAULT_MODEL_NAME
from components.dicom_example_gen.splits import DEFAULT_SPLIT_RATIOS
from components.dicom.preprocessing import PreprocessSettings
from components.evaluation import MAX_AUC_DROP, MIN_STUDY_AUC
from components.features import DEFAULT_SALT
from components.trainer.config import ModelConfig

# DirectRunner over every core, in worker processes (no Prism: it downloads a binary).
DEFAULT_BEAM_ARGS = ("--direct_running_mode=multi_processing", "--direct_num_workers=0")


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Everything a run depends on. Paths are plain strings so any filesystem TFX knows works."""

    data_dir: str
    labels_path: str
    output_dir: str                       # holds pipeline root, MLMD sqlite and the report
    serving_dir: str = ""                 # base of <model_name>/<version>/; default output_dir/serving
    pipeline_name: str = "ms-mri"
    model_name: str = DEFAULT_MODEL_NAME
    # Data (DicomExampleGen); the image size is the model's, see `image_size`.
    orientations: Sequence[str] = PreprocessSettings.orientations
    split_ratios: tuple[tuple[str, float], ...] = tuple(DEFAULT_SPLIT_RATIOS.items())
    salt: str = DEFAULT_SALT
    # Model and training; the model's operating threshold is chosen by the Trainer by
    # model.threshold_rule on held-out train studies (ModelConfig) and travels in the SavedModel
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    # Blessing: study-level AUC must reach this and not drop below the last blessed model's
    # by more than max_auc_drop.
    min_study_auc: float = MIN_STUDY_AUC
    max_auc_drop: float = MAX_AUC_DROP
    # Orchestration
    beam_args: Sequence[str] = DEFAULT_BEAM_ARGS
    enable_cache: bool = True

    @property
    def image_size(self) -> int:
        """The one image side: DicomExampleGen writes images of it, the model takes them."""
        return self.model.image_size

    @property
    def pipeline_root(self) -> str:
        return os.path.join(self.output_dir, "pipeline_root")

    @property
    def metadata_path(self) -> str:
        return os.path.join(self.output_dir, "metadata.sqlite")

    @property
    def model_base_path(self) -> str:
        """TF Serving's base_path for this model: versions are integer subfolders."""
        serving_dir = self.serving_dir or os.path.join(self.output_dir, "serving")
        return os.path.join(serving_dir, self.model_name)

    def with_model(self, **changes: Any) -> PipelineConfig:
        """The same run with other training settings, e.g. `config.with_model(seed=7)`."""
        return dataclasses.replace(self, model=dataclasses.replace(self.model, **changes))
