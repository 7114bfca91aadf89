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

import tf_keras as keras

from components.trainer.config import ModelConfig


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
