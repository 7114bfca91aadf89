"""What the evaluation report shows, read from the pipeline's artifacts (no HTML, no plots).

Predictions come from the candidate SavedModel's `serving_default` signature (the one the
model server and the client call) over the eval TFRecords, so the figures show what a user
of the served model would get. The blessing details come from TFMA's own output, so the
report states exactly which threshold decided.
"""
from __future__ import annotations

import glob
import math
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from components import contract, features
from components.dicom.metrics import StudyScores, UndefinedAUCWarning, aggregate_by_study, roc_auc

GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class SlicePredictions:
    """One row per eval slice. Study ids are salted hashes, used for grouping only."""

    study_id: np.ndarray     # str
    scanner: np.ndarray      # str
    label: np.ndarray        # int64, 0/1
    probability: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.label)

    def where(self, mask: np.ndarray) -> "SlicePredictions":
        return SlicePredictions(self.study_id[mask], self.scanner[mask], self.label[mask],
                                self.probability[mask])

    def by_study(self) -> StudyScores:
        return aggregate_by_study(self.study_id, self.probability, self.label)


@dataclass(frozen=True)
class SplitSize:
    slices: int
    studies: int
    positive_studies: int  # label 1 (MS)


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


# --- TFRecords and the SavedModel ------------------------------------------------------------

def tfrecord_files(split_dir: str) -> list[str]:
    files = sorted(p for p in glob.glob(os.path.join(split_dir, "*")) if os.path.isfile(p))
    if not files:
        raise FileNotFoundError(f"{split_dir}: no TFRecord files in this split folder")
    return files


def _compression(path: str) -> str:
    """ExampleGen writes gzip; detect by content so renamed or plain files also work."""
    with open(path, "rb") as handle:
        return "GZIP" if handle.read(2) == GZIP_MAGIC else ""


def _records(path: str, batch_size: int):
    import tensorflow as tf
    return tf.data.TFRecordDataset(path, compression_type=_compression(path)).batch(batch_size)


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


def _parse_batch(serialized, with_image: bool):
    import tensorflow as tf
    spec = {features.LABEL: tf.io.FixedLenFeature([], tf.int64),
            features.STUDY_ID: tf.io.FixedLenFeature([], tf.string),
            features.SCANNER: tf.io.FixedLenFeature([], tf.string)}
    if with_image:
        spec[features.IMAGE] = tf.io.FixedLenFeature([], tf.string)
    return tf.io.parse_example(serialized, spec)


def _decode_images(raw, image_size: int, path: str):
    import tensorflow as tf
    images = tf.io.decode_raw(raw, tf.uint8)
    if images.shape[1] != image_size * image_size:
        raise ValueError(f"{os.path.basename(path)}: feature '{features.IMAGE}' holds "
                         f"{images.shape[1]} bytes per example; the model expects "
                         f"{image_size}x{image_size}x1 = {image_size * image_size}")
    return tf.reshape(images, [-1, image_size, image_size, 1])


def _read_split(split_dir: str, *, serving_fn=None, image_size: int = 0,
                batch_size: int = 64) -> SlicePredictions:
    """Parses every example; runs the model too when `serving_fn` is given."""
    import tensorflow as tf
    columns: dict[str, list] = {"study_id": [], "scanner": [], "label": [], "probability": []}
    for path in tfrecord_files(split_dir):
        try:
            for serialized in _records(path, batch_size):
                parsed = _parse_batch(serialized, with_image=serving_fn is not None)
                columns["study_id"] += [v.decode() for v in parsed[features.STUDY_ID].numpy()]
                columns["scanner"] += [v.decode() for v in parsed[features.SCANNER].numpy()]
                columns["label"] += parsed[features.LABEL].numpy().tolist()
                if serving_fn is not None:
                    images = _decode_images(parsed[features.IMAGE], image_size, path)
                    columns["probability"] += serving_fn(**{contract.IMAGE_INPUT: images})[
                        contract.PROBABILITY].numpy().reshape(-1).tolist()
        except tf.errors.OpError as error:
            raise ValueError(f"{os.path.basename(path)} in {split_dir}: cannot read examples: "
                             f"{error.message}") from None
    return SlicePredictions(
        study_id=np.array(columns["study_id"], dtype=object),
        scanner=np.array(columns["scanner"], dtype=object),
        label=np.array(columns["label"], dtype=np.int64),
        probability=np.array(columns["probability"] or [math.nan] * len(columns["label"]),
                             dtype=np.float64))


def predict_split(model_dir: str, split_dir: str, *, image_size: int | None = None,
                  batch_size: int = 64) -> SlicePredictions:
    """Candidate probabilities for every slice of one split, in batches."""
    loaded, serving_fn, size = load_serving_fn(model_dir, image_size)
    del loaded  # kept alive until here: the signature's variables belong to it
    return _read_split(split_dir, serving_fn=serving_fn, image_size=size, batch_size=batch_size)


def split_size(slices: SlicePredictions) -> SplitSize:
    studies = slices.by_study()
    return SplitSize(len(slices), len(studies.study_ids), int(studies.label.sum()))


def split_sizes(eval_split_dir: str, eval_slices: SlicePredictions) -> dict[str, SplitSize]:
    """Studies and slices of every Split-* folder beside the eval split (eval counted once)."""
    sizes = {"eval": split_size(eval_slices)}
    parent = os.path.dirname(os.path.normpath(eval_split_dir))
    for split_dir in sorted(glob.glob(os.path.join(parent, "Split-*"))):
        name = os.path.basename(split_dir)[len("Split-"):]
        if os.path.normpath(split_dir) != os.path.normpath(eval_split_dir):
            sizes[name] = split_size(_read_split(split_dir))
    return dict(sorted(sizes.items(), key=lambda item: (item[0] != "train", item[0])))


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


# --- rejects ledger --------------------------------------------------------------------------

def load_reject_counts(rejects_uri: str | None) -> dict[str, int] | None:
    """Reason -> count from DicomExampleGen's ledger; None when no ledger was given."""
    if not rejects_uri:
        return None
    from components.dicom_example_gen.ledger import count_by_reason, read_ledger
    return count_by_reason(read_ledger(rejects_uri))
