"""Study-level AUC as a custom TFMA metric, so the Evaluator can bless on it.

A patient is diagnosed per study, not per slice, and slice metrics over-count studies with
many slices. The study prediction is the mean probability of its slices (DESIGN.md), and
`study_auc` is the exact ROC AUC over those per-study means. It is computed inside TFMA
(per slice of the data, for candidate and baseline), so TFMA's thresholds and its
"no worse than the last blessed model" diff apply to it like to any built-in metric.

Beside `study_auc` it records its uncertainty and the model's operating point, so the
Evaluator's output says how much the headline can be trusted: `study_auc_ci_low/high` (95 %
bootstrap over studies, components.dicom.metrics.bootstrap_study_metrics) and, when the model
exports its own threshold (contract.THRESHOLD_OUTPUT), `study_threshold`,
`study_sensitivity[_ci_low|_ci_high]` and `study_specificity[_ci_low|_ci_high]` at it.

TFMA loads it by module path: MetricConfig(class_name="StudyAUC",
module="components.evaluation.study_metrics").
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apache_beam as beam
import numpy as np
import tensorflow_model_analysis as tfma
from tensorflow_model_analysis.metrics import metric_types, metric_util

from components import contract, features
from components.dicom.metrics import StudyTotals, bootstrap_study_metrics

STUDY_AUC_NAME = "study_auc"
STUDY_COUNT_NAME = "study_count"
_PREPROCESSOR_NAME = "study_id_feature_preprocessor"
# extra metrics: name suffix -> what of StudyMetricIntervals it holds
_INTERVAL_KEYS = ("auc_ci_low", "auc_ci_high", "threshold", "sensitivity",
                  "sensitivity_ci_low", "sensitivity_ci_high", "specificity",
                  "specificity_ci_low", "specificity_ci_high")


class StudyAUC(metric_types.Metric):
    """ROC AUC over per-study mean slice probabilities (`study_auc`), plus `study_count`.

    NaN (with a warning) when a slice of the data holds studies of one class only; TFMA's
    threshold check then fails, which is the safe outcome for a blessing.
    """

    def __init__(self, name: str = STUDY_AUC_NAME, study_id_key: str = features.STUDY_ID):
        super().__init__(metric_util.merge_per_key_computations(_study_auc_computations),
                         name=name, study_id_key=study_id_key)


metric_types.register_metric(StudyAUC)


def _study_auc_computations(
    name: str = STUDY_AUC_NAME,
    study_id_key: str = features.STUDY_ID,
    eval_config: tfma.EvalConfig | None = None,
    model_name: str = "",
    output_name: str = "",
) -> metric_types.MetricComputations:
    """One computation per (model, output): TFMA calls it for the candidate and the baseline."""
    auc_key = metric_types.MetricKey(name=name, model_name=model_name, output_name=output_name)
    count_key = metric_types.MetricKey(
        name=STUDY_COUNT_NAME if name == STUDY_AUC_NAME else f"{name}_{STUDY_COUNT_NAME}",
        model_name=model_name, output_name=output_name)
    prefix = "study" if name == STUDY_AUC_NAME else name
    extra_keys = {suffix: metric_types.MetricKey(name=f"{prefix}_{suffix}",
                                                 model_name=model_name, output_name=output_name)
                  for suffix in _INTERVAL_KEYS}
    # The default inputs carry labels and predictions only; the study id must be asked for.
    preprocessor = metric_types.StandardMetricInputsPreprocessor(
        include_filter={tfma.constants.FEATURES_KEY: {study_id_key: {}}},
        include_default_inputs=True, name=_PREPROCESSOR_NAME)
    return [metric_types.MetricComputation(
        keys=[auc_key, count_key, *extra_keys.values()], preprocessors=[preprocessor],
        combiner=_StudyAUCCombiner(auc_key, count_key, study_id_key, eval_config, extra_keys))]


def study_id_of(inputs: metric_types.StandardMetricInputs, study_id_key: str) -> str:
    """The one study id of one example, whatever container TFMA put it in."""
    example_features = inputs.features or {}
    if study_id_key not in example_features:
        raise ValueError(f"StudyAUC: feature '{study_id_key}' is missing from the TFMA "
                         f"'features' extract (present: {sorted(example_features)}); every "
                         "example needs the study id its slices are grouped by")
    values = np.asarray(example_features[study_id_key], dtype=object).reshape(-1)
    if values.size != 1:
        raise ValueError(f"StudyAUC: feature '{study_id_key}' must hold exactly one value per "
                         f"example, found {values.size}")
    value = values[0]
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def model_threshold_of(inputs: metric_types.StandardMetricInputs) -> float | None:
    """The model's own operating threshold, when its signature returns one beside the
    probability (TFMA keeps every output of the signature in `predictions`)."""
    predictions = inputs.prediction
    if not isinstance(predictions, dict) or contract.THRESHOLD_OUTPUT not in predictions:
        return None
    values = np.asarray(predictions[contract.THRESHOLD_OUTPUT], dtype=np.float64).reshape(-1)
    return float(values[0]) if values.size else None


class _Totals(StudyTotals):
    """StudyTotals plus the model's threshold, as seen in its predictions."""

    __slots__ = ("threshold",)

    def __init__(self) -> None:
        super().__init__()
        self.threshold: float | None = None


class _StudyAUCCombiner(beam.CombineFn):
    """Accumulates (sum of probabilities, slice count, label) per study id."""

    def __init__(self, auc_key: metric_types.MetricKey, count_key: metric_types.MetricKey,
                 study_id_key: str, eval_config: tfma.EvalConfig | None,
                 extra_keys: dict[str, metric_types.MetricKey] | None = None):
        self._auc_key = auc_key
        self._count_key = count_key
        self._study_id_key = study_id_key
        self._eval_config = eval_config
        self._extra_keys = extra_keys or {}

    def create_accumulator(self) -> _Totals:
        return _Totals()

    def add_input(self, accumulator: _Totals,
                  element: metric_types.StandardMetricInputs) -> _Totals:
        study_id = study_id_of(element, self._study_id_key)
        if accumulator.threshold is None:
            accumulator.threshold = model_threshold_of(element)
        for label, prediction, _ in metric_util.to_label_prediction_example_weight(
                element, eval_config=self._eval_config, model_name=self._auc_key.model_name,
                output_name=self._auc_key.output_name):
            accumulator.add(study_id, float(np.asarray(prediction).reshape(())),
                            int(np.asarray(label).reshape(())))
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[StudyTotals]) -> StudyTotals:
        accumulators = iter(accumulators)
        result = next(accumulators)
        for accumulator in accumulators:
            result.merge(accumulator)
            if result.threshold is None:
                result.threshold = accumulator.threshold
        return result

    def extract_output(self, accumulator: _Totals) -> dict[metric_types.MetricKey, Any]:
        scores = accumulator.scores()
        threshold = accumulator.threshold
        intervals = bootstrap_study_metrics(
            scores.mean_probability, scores.label,
            contract.DECISION_THRESHOLD if threshold is None else threshold, what="study_auc")
        output = {self._auc_key: intervals.auc.estimate, self._count_key: len(scores.study_ids)}
        values = {"auc_ci_low": intervals.auc.low, "auc_ci_high": intervals.auc.high}
        if threshold is not None:  # the operating point exists only for models that have one
            values["threshold"] = threshold
            for name in ("sensitivity", "specificity"):
                interval = getattr(intervals, name)
                values.update({name: interval.estimate, f"{name}_ci_low": interval.low,
                               f"{name}_ci_high": interval.high})
        output.update({self._extra_keys[k]: v for k, v in values.items() if k in self._extra_keys})
        return output
