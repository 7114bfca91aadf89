"""Study-level AUC as a custom TFMA metric, so the Evaluator can bless on it.

A patient is diagnosed per study, not per slice, and slice metrics over-count studies with
many slices. The study prediction is the mean probability of its slices (DESIGN.md), and
`study_auc` is the exact ROC AUC over those per-study means. It is computed inside TFMA
(per slice of the data, for candidate and baseline), so TFMA's thresholds and its
"no worse than the last blessed model" diff apply to it like to any built-in metric.

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

from components import features
from components.dicom.metrics import StudyTotals, roc_auc

STUDY_AUC_NAME = "study_auc"
STUDY_COUNT_NAME = "study_count"
_PREPROCESSOR_NAME = "study_id_feature_preprocessor"


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
    # The default inputs carry labels and predictions only; the study id must be asked for.
    preprocessor = metric_types.StandardMetricInputsPreprocessor(
        include_filter={tfma.constants.FEATURES_KEY: {study_id_key: {}}},
        include_default_inputs=True, name=_PREPROCESSOR_NAME)
    return [metric_types.MetricComputation(
        keys=[auc_key, count_key], preprocessors=[preprocessor],
        combiner=_StudyAUCCombiner(auc_key, count_key, study_id_key, eval_config))]


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


class _StudyAUCCombiner(beam.CombineFn):
    """Accumulates (sum of probabilities, slice count, label) per study id."""

    def __init__(self, auc_key: metric_types.MetricKey, count_key: metric_types.MetricKey,
                 study_id_key: str, eval_config: tfma.EvalConfig | None):
        self._auc_key = auc_key
        self._count_key = count_key
        self._study_id_key = study_id_key
        self._eval_config = eval_config

    def create_accumulator(self) -> StudyTotals:
        return StudyTotals()

    def add_input(self, accumulator: StudyTotals,
                  element: metric_types.StandardMetricInputs) -> StudyTotals:
        study_id = study_id_of(element, self._study_id_key)
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
        return result

    def extract_output(self, accumulator: StudyTotals) -> dict[metric_types.MetricKey, Any]:
        scores = accumulator.scores()
        return {
            self._auc_key: roc_auc(scores.mean_probability, scores.label, what="study_auc"),
            self._count_key: len(scores.study_ids),
        }
