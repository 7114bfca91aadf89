"""The slice classifier: the seed's CNN with its bugs fixed, and its settings.

Architecture (the seed's final model, kept on purpose so results stay comparable):
Rescaling(1/255) -> [Conv3x3(w) -> MaxPool3] x len(widths) -> Flatten -> Dense(dense_units)
-> Dropout -> Dense(1) logit. Fixes over the seed: one logit instead of `Dense(2, sigmoid)`
trained `from_logits=True` and served through softmax (which bounded its output to
[0.27, 0.73]); the 0..255 -> 0..1 rescale lives inside the graph, so the server and the client
send raw uint8 and cannot disagree about scaling.

Flatten vs. global average pooling at 512x512: the Flatten head adds 41472 x 128 = 5.3 M
weights (21 MiB; 5.40 M in all vs 0.11 M with GAP) but <1 % of the FLOPs, which the convolutions
dominate. Measured on the (shared, loaded) 2-core box: ~90 CPU ms per training image with GAP,
~95-100 with Flatten. Not worth departing from the seed, so `head="flatten"` is the default;
`head="gap"` makes the model independent of the image size and far smaller, for experiments.

Keras flavour: TFX 1.16 and TFMA 0.47 are built on tf_keras (Keras 2); TF 2.16's `tf.keras`
is Keras 3, whose SavedModel story differs. Everything here uses `tf_keras`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import tf_keras as keras

from components.features import DEFAULT_IMAGE_SIZE

HEADS = ("flatten", "gap")


def keep_autograph_out_of_tf_keras() -> None:
    """Tells AutoGraph not to transpile tf_keras's own code, as it never transpiled `keras`.

    TF's AutoGraph skips modules named `keras.*` but not `tf_keras.*` (the same Keras 2 code
    under its new name), so without this rule the first fit/evaluate/predict of every process
    re-transpiles ~1,500 tf_keras functions: measured 15-25 s on 2 cores, before any math.
    Restores TF <= 2.15 behaviour; our own tf.functions are still converted.
    """
    from tensorflow.python.autograph.core import config as autograph_config

    rules = autograph_config.CONVERSION_RULES
    if not any(isinstance(rule, autograph_config.DoNotConvert) and rule.matches("tf_keras")
               for rule in rules):
        autograph_config.CONVERSION_RULES = (autograph_config.DoNotConvert("tf_keras"),) + rules


keep_autograph_out_of_tf_keras()


@dataclass(frozen=True)
class ModelConfig:
    """Every hyperparameter of the model and its training, in one place.

    `steps_per_epoch=None` means one full pass over the train split per epoch; TFX's
    `TrainArgs.num_steps`, when given, overrides it (see trainer_module.resolve_schedule).
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    widths: tuple[int, ...] = (32, 64, 128)
    dense_units: int = 128
    dropout: float = 0.5
    activation: str = "elu"  # the seed switched relu -> elu for its final model
    head: str = "flatten"
    learning_rate: float = 1e-3
    batch_size: int = 16
    epochs: int = 1
    steps_per_epoch: int | None = None
    shuffle_buffer_size: int = 1024
    class_balance: bool = True
    seed: int = 42

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
        """JSON-friendly form (for logs and the model's metadata)."""
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
    if config.learning_rate <= 0:
        raise ValueError(f"ModelConfig.learning_rate must be > 0, got {config.learning_rate}")
    side = config.image_size
    for _ in config.widths:
        side = (side - 2) // 3  # valid 3x3 convolution, then 3x3 max pooling
    if side < 1:
        raise ValueError(
            f"ModelConfig: image_size {config.image_size} is too small for "
            f"{len(config.widths)} conv/pool blocks (each needs 3x the side of the next)")


def build_model(config: ModelConfig) -> keras.Model:
    """Returns the compiled classifier: uint8 [N, S, S, 1] -> logit float32 [N, 1]."""
    size = config.image_size
    image = keras.Input(shape=(size, size, 1), dtype="uint8", name="image")
    x = keras.layers.Rescaling(1.0 / 255.0, name="rescale")(image)
    for block, width in enumerate(config.widths, start=1):
        x = keras.layers.Conv2D(width, 3, activation=config.activation, name=f"conv{block}")(x)
        x = keras.layers.MaxPooling2D(3, name=f"pool{block}")(x)
    if config.head == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(config.dense_units, activation=config.activation, name="dense")(x)
    x = keras.layers.Dropout(config.dropout, seed=config.seed, name="dropout")(x)
    logit = keras.layers.Dense(1, name="logit")(x)
    model = keras.Model(inputs=image, outputs=logit, name="ms_slice_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.AUC(from_logits=True, name="auc")],
    )
    return model
