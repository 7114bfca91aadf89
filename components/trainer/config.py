"""ModelConfig: every hyperparameter of the slice classifier and its training.

Apart from model.py on purpose: this module is pure (no TensorFlow, no Keras), so the pipeline
settings (pipeline/config.py) and the CLI can compose and validate a ModelConfig, and read its
defaults, without loading TensorFlow. The defaults are the ones `mspipe pipeline run` trains
with; the pipeline passes every field to the Trainer as `custom_config`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.contract import DECISION_THRESHOLD
from components.dicom.metrics import THRESHOLD_RULES
from components.features import DEFAULT_IMAGE_SIZE

HEADS = ("flatten", "gap")


@dataclass(frozen=True)
class ModelConfig:
    """Every hyperparameter of the model and its training, in one place.

    `steps_per_epoch=None` means one full pass over the train split per epoch; TFX's
    `TrainArgs.num_steps`, when given, overrides it (see training.resolve_schedule).

    The operating threshold (study probability > threshold = MS) is chosen after training on
    `threshold_validation_fraction` of the TRAIN studies, held out of fitting (by study,
    stratified by label, deterministic), by `threshold_rule`: "youden" (max sensitivity +
    specificity - 1) or "min_sensitivity" (best specificity with sensitivity >=
    `threshold_min_sensitivity`); see components.dicom.metrics.choose_threshold. The eval
    split is never used. `threshold_validation_fraction=0` trains on every train study and
    exports the fixed `contract.DECISION_THRESHOLD` instead (rule "fixed").

    `flip_left_right` mirrors training slices at random (augmentation); evaluation, the
    threshold's validation studies and serving always see the slice as it is.
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    widths: tuple[int, ...] = (32, 64, 128)
    dense_units: int = 128
    dropout: float = 0.5
    activation: str = "elu"  # the seed switched relu -> elu for its final model
    head: str = "flatten"
    learning_rate: float = 1e-3
    batch_size: int = 16
    epochs: int = 10
    steps_per_epoch: int | None = None
    shuffle_buffer_size: int = 1024
    class_balance: bool = True
    # training only: each slice mirrored left-right with probability 1/2, drawn anew each epoch
    # (seeded: the same seed gives the same flips). Brains are near-symmetric and MS lesions
    # have no side; on the synthetic MNI data it lifted held-out study AUC from 0.93 (min 0.63
    # over 6 splits) to 1.00 (min 1.00) at equal epochs (notes: tests/support/pipeline_fixtures.py)
    flip_left_right: bool = True
    seed: int = 42
    threshold_rule: str = "youden"
    threshold_min_sensitivity: float = 0.9
    threshold_validation_fraction: float = 0.25
    fixed_threshold: float = DECISION_THRESHOLD

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        _check_config(self)

    @classmethod
    def from_custom_config(cls, custom_config: Mapping[str, Any] | None) -> "ModelConfig":
        """Builds a config from TFX's `custom_config`; unknown keys are an error (typos)."""
        values = dict(custom_config or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"Trainer custom_config has unknown keys {unknown}; known keys: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form: the Trainer's `custom_config`, logs and the model's metadata."""
        values = dataclasses.asdict(self)
        values["widths"] = list(self.widths)
        return values


def _check_config(config: ModelConfig) -> None:
    """Rejects settings that would only fail deep inside Keras with an obscure message."""
    if config.image_size < 8:
        raise ValueError(f"ModelConfig.image_size must be >= 8, got {config.image_size}")
    if not config.widths or any(w < 1 for w in config.widths):
        raise ValueError(f"ModelConfig.widths must be positive integers, got {config.widths}")
    if config.head not in HEADS:
        raise ValueError(f"ModelConfig.head must be one of {HEADS}, got {config.head!r}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"ModelConfig.dropout must be in [0, 1), got {config.dropout}")
    for name in ("batch_size", "epochs", "dense_units", "shuffle_buffer_size"):
        if getattr(config, name) < 1:
            raise ValueError(f"ModelConfig.{name} must be >= 1, got {getattr(config, name)}")
    if config.steps_per_epoch is not None and config.steps_per_epoch < 1:
        raise ValueError(f"ModelConfig.steps_per_epoch must be >= 1 or None, "
                         f"got {config.steps_per_epoch}")
    if config.threshold_rule not in THRESHOLD_RULES:
        raise ValueError(f"ModelConfig.threshold_rule must be one of {THRESHOLD_RULES}, "
                         f"got {config.threshold_rule!r}")
    if not 0.0 < config.threshold_min_sensitivity <= 1.0:
        raise ValueError(f"ModelConfig.threshold_min_sensitivity must be in (0, 1], "
                         f"got {config.threshold_min_sensitivity}")
    if not 0.0 <= config.threshold_validation_fraction < 1.0:
        raise ValueError(f"ModelConfig.threshold_validation_fraction must be in [0, 1), "
                         f"got {config.threshold_validation_fraction}")
    if not 0.0 < config.fixed_threshold < 1.0:
        raise ValueError(f"ModelConfig.fixed_threshold must be in (0, 1), "
                         f"got {config.fixed_threshold}")
    if config.learning_rate <= 0:
        raise ValueError(f"ModelConfig.learning_rate must be > 0, got {config.learning_rate}")
    side = config.image_size
    for _ in config.widths:
        side = (side - 2) // 3  # valid 3x3 convolution, then 3x3 max pooling
    if side < 1:
        raise ValueError(
            f"ModelConfig: image_size {config.image_size} is too small for "
            f"{len(config.widths)} conv/pool blocks (each needs 3x the side of the next)")
