"""The model's serving contract: the names every SavedModel we export answers to.

The Trainer exports these signatures (components/trainer/export.py), TFMA calls one of them
(components/evaluation/eval_config.py), the report scores with another, and the model server,
the gRPC client, the web page and the CLI send requests that name them. They are defined once,
here, so a rename is one edit and a mismatch cannot slip in between exporter and callers:

* `serving_default`: `image` uint8 [None, S, S, 1] -> `probability`, `logit`,
  `decision_threshold` float32 [None].
  Also the name TF Serving falls back to when a request names no signature, which is why the
  uint8 image path (what our clients send) carries it.
* `serving_float`: `image` float32 [None, S, S, 1] (0..255) -> the same outputs; a NaN or
  infinite pixel is an error (INVALID_ARGUMENT through a server), never a probability.
* `serving_examples`: `examples` string [None] (serialized tf.Example) -> the same outputs.
* `serving_explain`: `image` uint8 [None, S, S, 1] -> `probability`, `logit` float32 [None] and
  `heatmap` float32 [None, S, S, 1]: where the model looked (Grad-CAM on the last convolution,
  computed in the graph, resampled to the input's pixels, each map scaled to [0, 1]). A
  signature of its own so TF Serving serves it as is, and so the plain prediction path does not
  pay for the gradient.

Pure on purpose (no TensorFlow, no project imports): thin clients import it.

components/features.py stays a separate module: it is the TFRecord contract (feature keys
between DicomExampleGen, the schema, the Trainer and TFMA, plus the UID hashing), which changes
for other reasons than the serving signatures. The two meet in one place only: the
`serving_examples` signature parses `features.IMAGE` out of each tf.Example.
"""
from __future__ import annotations

DEFAULT_MODEL_NAME = "ms_mri"  # the served model's name (models.config, requests, base path)

SERVING_DEFAULT = "serving_default"
SERVING_FLOAT = "serving_float"
SERVING_EXAMPLES = "serving_examples"
SERVING_EXPLAIN = "serving_explain"

IMAGE_INPUT = "image"        # input of serving_default and serving_float
EXAMPLES_INPUT = "examples"  # input of serving_examples
PROBABILITY = "probability"  # P(MS) per image: the prediction TFMA and the report read
LOGIT = "logit"
HEATMAP = "heatmap"          # serving_explain's Grad-CAM map, float32 [N, S, S, 1] in [0, 1]
# The model's operating threshold, chosen by the Trainer on validation studies of the train
# split and stored in the SavedModel as a constant output of every signature, one value per
# image (so TF Serving's batching can split it like any output). A study is called MS when its
# probability is above it. Why an output: real TF Serving's GetModelMetadata returns the
# SignatureDefs only (names, dtypes, shapes, no values), so the metadata shows that a model
# has one (`decision_threshold` among serving_default's outputs) and every Predict reply
# carries the value of the version that answered (right under canaries too).
THRESHOLD_OUTPUT = "decision_threshold"
# How it was chosen (rule, validation studies), JSON inside the SavedModel folder; servers do
# not load assets.extra/ except TF Serving's warmup file, so only the report reads it.
THRESHOLD_RECORD = "assets.extra/threshold.json"

# The fallback for models exported without a THRESHOLD_OUTPUT (older versions): the report's
# confusion counts, the canary analysis's agreement and the web page's verdict use it then.
DECISION_THRESHOLD = 0.5
