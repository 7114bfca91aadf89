"""One settings object for a pipeline run; runners and the CLI build it, nothing else reads env."""
from __future__ import annotations

import dataclasses
import os
from typing import Sequence

from components.features import DEFAULT_IMAGE_SIZE, DEFAULT_SALT

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
    model_name: str = "ms_mri"
    # Data
    image_size: int = DEFAULT_IMAGE_SIZE
    orientations: Sequence[str] = ("axial",)
    split_ratios: tuple[tuple[str, float], ...] = (("train", 0.7), ("eval", 0.3))
    salt: str = DEFAULT_SALT
    # Model and training
    widths: Sequence[int] = (32, 64, 128)
    dense_units: int = 128
    dropout: float = 0.5
    learning_rate: float = 1e-3
    batch_size: int = 16
    epochs: int = 10
    seed: int = 42
    # Blessing: study-level AUC must reach this and not drop below the last blessed model's
    # by more than max_auc_drop.
    min_study_auc: float = 0.8
    max_auc_drop: float = 0.02
    decision_threshold: float = 0.5
    # Orchestration
    beam_args: Sequence[str] = DEFAULT_BEAM_ARGS
    enable_cache: bool = True

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

    def trainer_custom_config(self) -> dict:
        return {
            "image_size": self.image_size,
            "widths": list(self.widths),
            "dense_units": self.dense_units,
            "dropout": self.dropout,
            "learning_rate": self.learning_rate,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "seed": self.seed,
        }
