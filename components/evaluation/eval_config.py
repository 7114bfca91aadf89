"""The TFMA EvalConfig the Evaluator runs on the eval split: what is measured, what blesses.

Measured per slice (one prediction per image) and per study (mean slice probability), over
all data and per scanner. Only the study-level AUC on the whole eval split gates the
blessing: a diagnosis is made per study, and per-scanner slices are too small (a few
studies, sometimes one class) for a reliable bar; they are reported, not gated.

One unnamed ModelSpec on purpose: when the pipeline hands the Evaluator a baseline model
(LatestBlessedModelStrategy), TFX's `update_eval_config_with_defaults(has_baseline=True)`
copies it into "candidate" + "baseline" (is_baseline). On the first run there is no
baseline and TFX drops the change threshold (rubber stamp); the absolute bound still holds.

model_type is pinned to TF_GENERIC: TFMA then always calls the named signature of the
SavedModel (the contract), instead of guessing "Keras" when tf.keras happens to load it.
"""
from __future__ import annotations

import json
import math

import tensorflow_model_analysis as tfma

from components import contract, features
from components.evaluation import MAX_AUC_DROP, MIN_STUDY_AUC, study_metrics

STUDY_METRICS_MODULE = study_metrics.__name__


def _metric(class_name: str, module: str = "", **config: object) -> tfma.MetricConfig:
    return tfma.MetricConfig(class_name=class_name, module=module,
                             config=json.dumps(config) if config else "")


def _study_auc_gate(min_study_auc: float, max_auc_drop: float) -> tfma.MetricConfig:
    """StudyAUC with its blessing thresholds, applied to the overall slice only."""
    threshold = tfma.MetricThreshold(
        value_threshold=tfma.GenericValueThreshold(lower_bound={"value": min_study_auc}),
        change_threshold=tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER,
            absolute={"value": -max_auc_drop if max_auc_drop else 0.0}))
    config = _metric("StudyAUC", STUDY_METRICS_MODULE)
    config.per_slice_thresholds.add(slicing_specs=[tfma.SlicingSpec()], threshold=threshold)
    return config


def _check_bounds(min_study_auc: float, max_auc_drop: float) -> None:
    if not (0.0 <= min_study_auc <= 1.0) or math.isnan(min_study_auc):
        raise ValueError(f"min_study_auc must lie in [0, 1], got {min_study_auc}")
    if not (0.0 <= max_auc_drop <= 1.0) or math.isnan(max_auc_drop):
        raise ValueError(f"max_auc_drop must lie in [0, 1] (an AUC difference), "
                         f"got {max_auc_drop}")


def build_eval_config(*, min_study_auc: float = MIN_STUDY_AUC, max_auc_drop: float = MAX_AUC_DROP,
                      signature_name: str = contract.SERVING_EXAMPLES) -> tfma.EvalConfig:
    """EvalConfig blessing a model when, on the whole eval split,

    study_auc >= min_study_auc  and  study_auc >= baseline study_auc - max_auc_drop.

    `max_auc_drop` is a tolerance for noise: with a few dozen eval studies, one study
    flipping order moves the AUC by ~0.01, so 0.0 means "never worse at all".
    """
    _check_bounds(min_study_auc, max_auc_drop)
    metrics = [
        _metric("ExampleCount"),
        _metric("AUC"),                 # slice-level ROC AUC (bucketed, 10k thresholds)
        _metric("BinaryAccuracy"),      # slice-level, threshold 0.5
        _metric("Precision"),
        _metric("Recall"),
        _metric("MeanLabel"),
        _metric("MeanPrediction"),
        _metric("Calibration"),         # sum of predictions / sum of labels
        _metric("CalibrationPlot"),
        _metric("ConfusionMatrixPlot"),
        _study_auc_gate(min_study_auc, max_auc_drop),
    ]
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name=signature_name, label_key=features.LABEL,
                                    prediction_key=contract.PROBABILITY, model_type=tfma.TF_GENERIC)],
        slicing_specs=[tfma.SlicingSpec(), tfma.SlicingSpec(feature_keys=[features.SCANNER])],
        metrics_specs=[tfma.MetricsSpec(metrics=metrics)],
    )
