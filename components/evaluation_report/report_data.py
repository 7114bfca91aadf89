"""What the evaluation report shows, read from the pipeline's artifacts (no HTML, no plots).

What was already recorded is read, not recomputed: TFMA's metrics and blessing checks from
the Evaluator's output (tfma.load_metrics / load_validation_result), split sizes and reject
counts from DicomExampleGen's artifact properties (components/dicom_example_gen/properties.py).
What no component records is computed here: per-slice predictions of the candidate
SavedModel's `serving_default` signature (the one the model server and the client call) over
the eval TFRecords, for the figures, the per-scanner table and the thresholded rates, so they
show what a user of the served model would get.
"""
from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from components import contract, features
from components.dicom import records
from components.dicom.metrics import StudyScores, UndefinedAUCWarning, aggregate_by_study, roc_auc


@dataclass(frozen=True)
class SlicePredictions:
    """One row per eval slice. Study ids are salted hashes, used for grouping only."""

    study_id: np.ndarray     # str
    scanner: np.ndarray      # str
    label: np.ndarray        # int64, 0/1
    probability: np.ndarray  # float64
    model_threshold: float | None = None  # the model's contract.THRESHOLD_OUTPUT, if it has one

    def __len__(self) -> int:
        return len(self.label)

    def where(self, mask: np.ndarray) -> "SlicePredictions":
        return SlicePredictions(self.study_id[mask], self.scanner[mask], self.label[mask],
                                self.probability[mask], self.model_threshold)

    def by_study(self) -> StudyScores:
        return aggregate_by_study(self.study_id, self.probability, self.label)


@dataclass(frozen=True)
class ThresholdCheck:
    """One blessing rule as TFMA applied it to the candidate."""

    metric: str          # TFMA metric name, e.g. study_auc
    kind: str            # "value" (absolute bound) or "change" (vs the last blessed model)
    rule: str            # human-readable, e.g. ">= 0.800"
    value: float | None  # the candidate's value (or candidate - baseline for "change")
    passed: bool


@dataclass(frozen=True)
class TfmaSummary:
    # {slice label: {(metric name, model name, is_diff): value}}; slice label "" = overall.
    metrics: dict[str, dict[tuple[str, str, bool], float]]
    candidate_name: str          # "" without a baseline, "candidate" with one
    has_baseline: bool
    validation_ok: bool | None   # None: the Evaluator ran without thresholds
    checks: list[ThresholdCheck] = field(default_factory=list)

    def overall(self, name: str, *, model: str | None = None, diff: bool = False) -> float | None:
        model = self.candidate_name if model is None else model
        return self.metrics.get("", {}).get((name, model, diff))


def auc_or_nan(scores: np.ndarray, labels: np.ndarray) -> float:
    """AUC for a table cell: NaN (shown as n/a) where one class is missing is expected there."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedAUCWarning)
        return roc_auc(scores, labels)


# --- eval TFRecords and the SavedModel --------------------------------------------------------

def load_serving_fn(model_dir: str, image_size: int | None = None):
    """`serving_default` of the SavedModel and the image side length its input expects."""
    import tensorflow as tf
    loaded = tf.saved_model.load(model_dir)
    if contract.SERVING_DEFAULT not in loaded.signatures:
        raise ValueError(f"{model_dir}: SavedModel has no '{contract.SERVING_DEFAULT}' "
                         f"signature (has {sorted(loaded.signatures)})")
    serving_fn = loaded.signatures[contract.SERVING_DEFAULT]
    image_spec = serving_fn.structured_input_signature[1].get(contract.IMAGE_INPUT)
    if image_spec is None or image_spec.shape.rank != 4 or image_spec.shape[1] is None:
        raise ValueError(f"{model_dir}: {contract.SERVING_DEFAULT} must take "
                         f"'{contract.IMAGE_INPUT}' uint8 [None, H, W, 1], found {image_spec}")
    signature_size = int(image_spec.shape[1])
    if image_size is not None and image_size != signature_size:
        raise ValueError(f"{model_dir}: model expects {signature_size}px images, "
                         f"report was asked for {image_size}px")
    return loaded, serving_fn, signature_size


def _examples(split_dir: str) -> Iterator[tuple[str, dict]]:
    """(file name, decoded example) of every record in the split, via the one record reader."""
    for path in records.tfrecord_files(split_dir):
        try:
            for record in records.read_tfrecords(path):
                yield path.name, records.decode_example(record)
        except records.RecordError as error:
            raise ValueError(f"{path.name} in {split_dir}: cannot read examples: {error}") from None


def _one(example: dict, name: str, where: str):
    values = example.get(name, [])
    if len(values) != 1:
        raise ValueError(f"{where}: feature '{name}' must hold one value, found {len(values)}")
    return values[0]


def _image(example: dict, image_size: int, where: str) -> np.ndarray:
    raw = _one(example, features.IMAGE, where)
    if len(raw) != image_size * image_size:
        raise ValueError(f"{where}: feature '{features.IMAGE}' holds {len(raw)} bytes per "
                         f"example; the model expects {image_size}x{image_size}x1 = "
                         f"{image_size * image_size}")
    return np.frombuffer(raw, dtype=np.uint8).reshape(image_size, image_size, 1)


def predict_split(model_dir: str, split_dir: str, *, image_size: int | None = None,
                  batch_size: int = 64) -> SlicePredictions:
    """Candidate probabilities for every slice of one split, in batches."""
    import tensorflow as tf
    loaded, serving_fn, size = load_serving_fn(model_dir, image_size)
    columns: dict[str, list] = {"study_id": [], "scanner": [], "label": [], "probability": [],
                                "threshold": []}
    images: list[np.ndarray] = []

    def run_batch() -> None:
        outputs = serving_fn(**{contract.IMAGE_INPUT: tf.constant(np.stack(images))})
        columns["probability"] += outputs[contract.PROBABILITY].numpy().reshape(-1).tolist()
        if contract.THRESHOLD_OUTPUT in outputs:
            columns["threshold"] += outputs[contract.THRESHOLD_OUTPUT].numpy().reshape(-1).tolist()
        images.clear()

    for file_name, example in _examples(split_dir):
        columns["study_id"].append(_one(example, features.STUDY_ID, file_name).decode())
        columns["scanner"].append(_one(example, features.SCANNER, file_name).decode())
        columns["label"].append(int(_one(example, features.LABEL, file_name)))
        images.append(_image(example, size, file_name))
        if len(images) == batch_size:
            run_batch()
    if images:
        run_batch()
    del loaded  # kept alive until here: the signature's variables belong to it
    return SlicePredictions(
        study_id=np.array(columns["study_id"], dtype=object),
        scanner=np.array(columns["scanner"], dtype=object),
        label=np.array(columns["label"], dtype=np.int64),
        probability=np.array(columns["probability"], dtype=np.float64),
        model_threshold=float(columns["threshold"][0]) if columns["threshold"] else None)


def threshold_record(model_dir: str) -> dict | None:
    """How the Trainer chose the model's threshold (rule, validation studies), if recorded."""
    path = os.path.join(model_dir, contract.THRESHOLD_RECORD)
    if not os.path.exists(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# --- TFMA output -----------------------------------------------------------------------------

def _slice_label(slice_key) -> str:
    return ", ".join(f"{k.column}={k.bytes_value.decode() if k.HasField('bytes_value') else ''}"
                     f"{k.int64_value if k.HasField('int64_value') else ''}"
                     f"{k.float_value if k.HasField('float_value') else ''}"
                     for k in slice_key.single_slice_keys)


def _threshold_rule(threshold) -> tuple[str, str]:
    """("value" | "change", the rule in words) for a TFMA Generic*Threshold."""
    from tensorflow_model_analysis.proto import config_pb2
    if isinstance(threshold, config_pb2.GenericValueThreshold):
        parts = []
        if threshold.HasField("lower_bound"):
            parts.append(f">= {threshold.lower_bound.value:.3f}")
        if threshold.HasField("upper_bound"):
            parts.append(f"<= {threshold.upper_bound.value:.3f}")
        return "value", " and ".join(parts) or "any value"
    sign = ">=" if threshold.direction == config_pb2.MetricDirection.HIGHER_IS_BETTER else "<="
    parts = []
    if threshold.HasField("absolute"):
        parts.append(f"candidate - last blessed {sign} {threshold.absolute.value + 0.0:.3f}")
    if threshold.HasField("relative"):
        parts.append(f"(candidate - last blessed) / last blessed {sign} "
                     f"{threshold.relative.value + 0.0:.3f}")
    return "change", " and ".join(parts) or "any change"


def load_tfma_summary(evaluation_uri: str) -> TfmaSummary:
    """Metrics per data slice and the blessing checks, as the Evaluator wrote them."""
    import tensorflow_model_analysis as tfma
    from tensorflow_model_analysis.writers import eval_config_writer

    eval_config, _, _, _ = eval_config_writer.load_eval_run(evaluation_uri)
    if eval_config is None:
        raise FileNotFoundError(f"{evaluation_uri}: no TFMA eval_config.json (not an "
                                "Evaluator output folder?)")
    has_baseline = any(spec.is_baseline for spec in eval_config.model_specs)
    candidate = next((s.name for s in eval_config.model_specs if not s.is_baseline), "")
    metrics: dict[str, dict] = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        metrics[_slice_label(metrics_for_slice.slice_key)] = {
            (kv.key.name, kv.key.model_name, kv.key.is_diff): kv.value.double_value.value
            for kv in metrics_for_slice.metric_keys_and_values
            if kv.value.HasField("double_value")}
    thresholds = tfma.metrics.metric_thresholds_from_metrics_specs(
        eval_config.metrics_specs, eval_config=eval_config)
    if not thresholds:
        return TfmaSummary(metrics, candidate, has_baseline, None)
    validation = tfma.load_validation_result(evaluation_uri)
    failed = {(f.metric_key.name, f.metric_key.is_diff,
               f.metric_threshold.SerializeToString(deterministic=True))
              for s in validation.metric_validations_per_slice for f in s.failures}
    checks = []
    for key, slice_thresholds in sorted(thresholds.items(), key=lambda kv: str(kv[0])):
        if key.model_name != candidate:
            continue
        for _, threshold in slice_thresholds:
            kind, rule = _threshold_rule(threshold)
            wrapped = tfma.MetricThreshold(**({"value_threshold": threshold} if kind == "value"
                                              else {"change_threshold": threshold}))
            passed = (key.name, key.is_diff, wrapped.SerializeToString(deterministic=True)
                      ) not in failed
            value = metrics.get("", {}).get((key.name, key.model_name, key.is_diff))
            checks.append(ThresholdCheck(key.name, kind, rule, value, passed))
    return TfmaSummary(metrics, candidate, has_baseline, validation.validation_ok, checks)
