"""Study-level AUC: the math, the TFMA combiner, the blessing thresholds, and a real Evaluator run."""
from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from support import eval_fixtures as fx
from components.dicom import metrics as roc

tfma = pytest.importorskip("tensorflow_model_analysis")

from components.evaluation import study_metrics  # noqa: E402  (needs TFMA)
from components.evaluation.eval_config import build_eval_config  # noqa: E402
from tensorflow_model_analysis.evaluators import metrics_validator  # noqa: E402
from tensorflow_model_analysis.metrics import metric_types  # noqa: E402


def brute_force_auc(scores, labels) -> float:
    """Direct pair count: the definition, for comparison with the rank formula."""
    positives = [s for s, y in zip(scores, labels) if y == 1]
    negatives = [s for s, y in zip(scores, labels) if y == 0]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0
               for p, n in itertools.product(positives, negatives))
    return wins / (len(positives) * len(negatives))


# --- roc.py ---------------------------------------------------------------------------------

def test_roc_auc_counts_ties_as_one_half():
    # pos 0.4 vs neg 0.1 -> 1, vs neg 0.4 -> 0.5; pos 0.8 beats both -> 2; 3.5 of 4 pairs.
    assert roc.roc_auc([0.1, 0.4, 0.4, 0.8], [0, 0, 1, 1]) == 0.875
    assert roc.roc_auc([0.3, 0.3, 0.3], [0, 1, 1]) == 0.5
    assert roc.roc_auc([0.9, 0.1], [0, 1]) == 0.0


def test_roc_auc_and_curve_match_the_pair_count_on_random_tied_data():
    rng = np.random.default_rng(7)
    scores = rng.integers(0, 6, size=40) / 5.0   # many ties
    labels = rng.integers(0, 2, size=40)
    expected = brute_force_auc(scores, labels)
    assert roc.roc_auc(scores, labels) == pytest.approx(expected, abs=1e-12)
    fpr, tpr, thresholds = roc.roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(thresholds) < 0)
    assert np.trapz(tpr, fpr) == pytest.approx(expected, abs=1e-12)


def test_roc_auc_of_one_class_is_nan_with_a_warning():
    with pytest.warns(roc.UndefinedAUCWarning, match="2 positive and 0 negative"):
        assert math.isnan(roc.roc_auc([0.2, 0.9], [1, 1]))


def test_roc_auc_rejects_bad_labels_and_lengths():
    with pytest.raises(ValueError, match="labels must be 0 or 1"):
        roc.roc_auc([0.2, 0.9], [0, 2])
    with pytest.raises(ValueError, match="2 scores but 3 labels"):
        roc.roc_auc([0.2, 0.9], [0, 1, 1])


def test_aggregate_by_study_takes_the_mean_slice_probability():
    scores = roc.aggregate_by_study(["b", "a", "b", "b"], [0.2, 0.5, 0.4, 0.9], [1, 0, 1, 1])
    assert scores.study_ids == ("a", "b")
    np.testing.assert_allclose(scores.mean_probability, [0.5, 0.5])
    np.testing.assert_array_equal(scores.label, [0, 1])
    np.testing.assert_array_equal(scores.slice_count, [1, 3])


def test_study_with_two_labels_is_an_error():
    with pytest.raises(ValueError, match="study_id s9: slices carry different labels"):
        roc.aggregate_by_study(["s9", "s9"], [0.1, 0.2], [0, 1])


def test_study_totals_merge_equals_one_pass():
    parts = [roc.StudyTotals(), roc.StudyTotals()]
    one_pass = roc.StudyTotals()
    for index, spec in enumerate(fx.EVAL_SLICES):
        parts[index % 2].add(spec.study_id, fx.candidate_probability(spec), spec.label)
        one_pass.add(spec.study_id, fx.candidate_probability(spec), spec.label)
    parts[0].merge(parts[1])
    merged, single = parts[0].scores(), one_pass.scores()
    assert merged.study_ids == single.study_ids
    np.testing.assert_array_equal(merged.mean_probability, single.mean_probability)
    np.testing.assert_array_equal(merged.slice_count, [2, 2, 1, 2, 3, 1])


# --- the TFMA combiner ------------------------------------------------------------------------

def _inputs(spec: fx.SliceSpec) -> metric_types.StandardMetricInputs:
    """What TFMA hands the combiner for one example (features as TFXIO decodes them)."""
    return metric_types.StandardMetricInputs(
        labels=np.array([spec.label]), predictions=np.array([fx.candidate_probability(spec)]),
        example_weights=np.array([1.0]),
        features={"study_id": np.array([spec.study_id.encode()], dtype=object)})


def _combine(slices) -> dict:
    (computation,) = study_metrics.StudyAUC().computations()
    combiner = computation.combiner
    halves = [combiner.create_accumulator(), combiner.create_accumulator()]
    for index, spec in enumerate(slices):
        halves[index % 2] = combiner.add_input(halves[index % 2], _inputs(spec))
    result = combiner.extract_output(combiner.merge_accumulators(halves))
    return {key.name: value for key, value in result.items()}


def _study_means(slices) -> tuple[np.ndarray, np.ndarray]:
    totals = roc.StudyTotals()
    for spec in slices:
        totals.add(spec.study_id, fx.candidate_probability(spec), spec.label)
    scores = totals.scores()
    return scores.mean_probability, scores.label


def test_combiner_groups_slices_by_study():
    result = _combine(fx.EVAL_SLICES)
    expected = roc.bootstrap_study_metrics(*_study_means(fx.EVAL_SLICES), 0.5)
    assert result == {"study_auc": pytest.approx(fx.EXPECTED_CANDIDATE_STUDY_AUC, abs=1e-12),
                      "study_count": 6,
                      # the 95% bootstrap interval over studies; no operating point: the
                      # model exports no threshold of its own
                      "study_auc_ci_low": expected.auc.low, "study_auc_ci_high": expected.auc.high}
    assert result["study_auc_ci_low"] < result["study_auc"] <= result["study_auc_ci_high"]


def test_combiner_reports_the_models_operating_point_with_intervals():
    """A model that returns its threshold (contract.THRESHOLD_OUTPUT) gets sensitivity and
    specificity per study at it, each with its interval."""
    import tensorflow_model_analysis as tfma
    config = tfma.EvalConfig(model_specs=[tfma.ModelSpec(prediction_key="probability")])
    (computation,) = study_metrics.StudyAUC().computations(eval_config=config)
    combiner = computation.combiner
    accumulator = combiner.create_accumulator()
    for spec in fx.EVAL_SLICES:
        accumulator = combiner.add_input(accumulator, metric_types.StandardMetricInputs(
            labels=np.array([spec.label]), example_weights=np.array([1.0]),
            predictions={"probability": np.array([fx.candidate_probability(spec)]),
                         "decision_threshold": np.array([0.35], np.float32)},
            features={"study_id": np.array([spec.study_id.encode()], dtype=object)}))
    result = {key.name: value for key, value in combiner.extract_output(accumulator).items()}
    expected = roc.bootstrap_study_metrics(*_study_means(fx.EVAL_SLICES), 0.35)
    assert result["study_threshold"] == pytest.approx(0.35)
    assert result["study_auc"] == pytest.approx(fx.EXPECTED_CANDIDATE_STUDY_AUC, abs=1e-12)
    for name in ("sensitivity", "specificity"):
        interval = getattr(expected, name)
        assert (result[f"study_{name}"], result[f"study_{name}_ci_low"],
                result[f"study_{name}_ci_high"]) == (interval.estimate, interval.low,
                                                     interval.high)


def test_combiner_of_one_class_reports_nan():
    positives = [s for s in fx.EVAL_SLICES if s.label == 1]
    with pytest.warns(roc.UndefinedAUCWarning):
        result = _combine(positives)
    assert math.isnan(result["study_auc"]) and result["study_count"] == 3


def test_combiner_names_the_missing_study_id_feature():
    (computation,) = study_metrics.StudyAUC().computations()
    element = metric_types.StandardMetricInputs(
        labels=np.array([1]), predictions=np.array([0.3]), features={"scanner": np.array([b"x"])})
    with pytest.raises(ValueError, match="feature 'study_id' is missing"):
        computation.combiner.add_input(computation.combiner.create_accumulator(), element)


# --- the blessing thresholds ----------------------------------------------------------------

OVERALL = ()
GE_SLICE = (("scanner", b"ge"),)


def _validate(slice_key, study_auc: float, diff: float | None, **config_kwargs) -> list[str]:
    """Runs TFMA's own validator on hand-made metric values; returns the failing keys."""
    config = tfma.utils.update_eval_config_with_defaults(
        build_eval_config(**config_kwargs), has_baseline=diff is not None, rubber_stamp=True)
    model_name = "candidate" if diff is not None else ""
    key = metric_types.MetricKey("study_auc", model_name=model_name, example_weighted=False)
    metrics = {key: study_auc}
    if diff is not None:
        metrics[key.make_diff_key()] = diff
        metrics[key.make_baseline_key("baseline")] = study_auc - diff
    result = metrics_validator.validate_metrics((slice_key, metrics), config)
    return [("diff" if f.metric_key.is_diff else "value")
            for s in result.metric_validations_per_slice for f in s.failures]


def test_thresholds_gate_study_auc_on_the_whole_eval_split():
    assert _validate(OVERALL, 0.85, None, min_study_auc=0.8) == []
    assert _validate(OVERALL, 0.79, None, min_study_auc=0.8) == ["value"]
    assert _validate(OVERALL, float("nan"), None) == ["value"]
    assert _validate(OVERALL, 0.85, +0.01) == []
    assert _validate(OVERALL, 0.85, -0.01, max_auc_drop=0.0) == ["diff"]
    assert _validate(OVERALL, 0.85, -0.01) == []  # the default tolerance
    assert _validate(OVERALL, 0.70, -0.03, max_auc_drop=0.02) == ["value", "diff"]
    # A small per-scanner slice is reported, not gated.
    assert _validate(GE_SLICE, 0.2, -0.5) == []


def test_build_eval_config_rejects_impossible_bounds():
    with pytest.raises(ValueError, match="min_study_auc"):
        build_eval_config(min_study_auc=1.5)
    with pytest.raises(ValueError, match="max_auc_drop"):
        build_eval_config(max_auc_drop=-0.1)


def test_eval_config_has_the_contract_model_spec_and_metrics():
    config = build_eval_config()
    (spec,) = config.model_specs
    assert (spec.signature_name, spec.label_key, spec.prediction_key, spec.is_baseline,
            spec.model_type) == ("serving_examples", "label", "probability", False, "tf_generic")
    names = {m.class_name for m in config.metrics_specs[0].metrics}
    assert {"ExampleCount", "AUC", "BinaryAccuracy", "Precision", "Recall", "CalibrationPlot",
            "ConfusionMatrixPlot", "Calibration", "StudyAUC"} <= names
    assert [list(s.feature_keys) for s in config.slicing_specs] == [[], ["scanner"]]


# --- the real TFX Evaluator -------------------------------------------------------------------

@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluator")
    fx.write_split(os.path.join(root, "examples", "Split-eval"))
    return {
        "root": root,
        "examples": str(root / "examples"),
        "candidate": fx.write_model_artifact(str(root / "candidate")),
        "baseline": fx.write_model_artifact(str(root / "baseline"), baseline=True),
    }


def _metrics_by_slice(evaluation_uri: str) -> dict:
    """{slice: {(metric name, model name, is_diff): value}} from TFMA's written output."""
    result = {}
    for metrics_for_slice in tfma.load_metrics(evaluation_uri):
        slice_key = tuple((k.column, k.bytes_value.decode())
                          for k in metrics_for_slice.slice_key.single_slice_keys)
        result[slice_key] = {
            (kv.key.name, kv.key.model_name, kv.key.is_diff): kv.value.double_value.value
            for kv in metrics_for_slice.metric_keys_and_values
            if kv.value.HasField("double_value")}
    return result


def test_evaluator_computes_study_auc_per_scanner_and_blesses(artifacts):
    run = fx.run_evaluator(str(artifacts["root"] / "first"), build_eval_config(min_study_auc=0.8),
                           examples_uri=artifacts["examples"], model_uri=artifacts["candidate"])
    metrics = _metrics_by_slice(run.evaluation_uri)
    assert set(metrics) == {(), (("scanner", "siemens"),), (("scanner", "ge"),)}
    assert metrics[()][("study_auc", "", False)] == pytest.approx(
        fx.EXPECTED_CANDIDATE_STUDY_AUC, abs=1e-9)
    assert metrics[()][("study_count", "", False)] == 6
    assert metrics[()][("example_count", "", False)] == len(fx.EVAL_SLICES)
    for scanner, expected in fx.EXPECTED_CANDIDATE_STUDY_AUC_BY_SCANNER.items():
        assert metrics[(("scanner", scanner),)][("study_auc", "", False)] == pytest.approx(expected)
    assert tfma.load_validation_result(run.evaluation_uri).validation_ok
    assert run.blessed


def test_evaluator_refuses_a_model_below_the_absolute_bound(artifacts):
    run = fx.run_evaluator(str(artifacts["root"] / "strict"), build_eval_config(min_study_auc=0.9),
                           examples_uri=artifacts["examples"], model_uri=artifacts["candidate"])
    validation = tfma.load_validation_result(run.evaluation_uri)
    (failure,) = [f for s in validation.metric_validations_per_slice for f in s.failures]
    assert failure.metric_key.name == "study_auc" and not failure.metric_key.is_diff
    assert failure.metric_threshold.value_threshold.lower_bound.value == 0.9
    assert not run.blessed


def test_evaluator_refuses_a_model_worse_than_the_last_blessed(artifacts):
    run = fx.run_evaluator(str(artifacts["root"] / "vs_baseline"),
                           build_eval_config(min_study_auc=0.8),
                           examples_uri=artifacts["examples"], model_uri=artifacts["candidate"],
                           baseline_model_uri=artifacts["baseline"])
    overall = _metrics_by_slice(run.evaluation_uri)[()]
    assert overall[("study_auc", "baseline", False)] == pytest.approx(
        fx.EXPECTED_BASELINE_STUDY_AUC)
    expected_diff = fx.EXPECTED_CANDIDATE_STUDY_AUC - fx.EXPECTED_BASELINE_STUDY_AUC
    assert overall[("study_auc", "candidate", True)] == pytest.approx(expected_diff)
    validation = tfma.load_validation_result(run.evaluation_uri)
    (failure,) = [f for s in validation.metric_validations_per_slice for f in s.failures]
    assert failure.metric_key.name == "study_auc" and failure.metric_key.is_diff
    assert failure.metric_value.double_value.value == pytest.approx(expected_diff)
    assert not run.blessed
