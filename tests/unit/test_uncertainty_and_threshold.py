"""The bootstrap intervals and the operating-threshold rule (components/dicom/metrics.py): pure."""
from __future__ import annotations

import numpy as np
import pytest

from components.dicom.metrics import (MIN_STUDIES_PER_CLASS, bootstrap_study_metrics,
                                      choose_threshold, confusion_counts, roc_auc)


def _noisy_studies(n_per_class: int, separation: float, seed: int = 1):
    rng = np.random.default_rng(seed)
    labels = np.repeat([0, 1], n_per_class)
    scores = 1 / (1 + np.exp(-(rng.normal(size=labels.size) + separation * (labels - 0.5))))
    return scores, labels


def test_point_estimates_are_the_plain_metrics():
    scores, labels = _noisy_studies(20, 2.0)
    result = bootstrap_study_metrics(scores, labels, 0.5)
    counts = confusion_counts(scores, labels, 0.5)
    assert result.auc.estimate == pytest.approx(roc_auc(scores, labels))
    assert result.sensitivity.estimate == pytest.approx(counts["tp"] / (counts["tp"] + counts["fn"]))
    assert result.specificity.estimate == pytest.approx(counts["tn"] / (counts["tn"] + counts["fp"]))
    for interval in (result.auc, result.sensitivity, result.specificity):
        assert interval.low <= interval.estimate <= interval.high
        assert 0 <= interval.width < 1
    assert result.auc.width > 0 and result.sensitivity.width > 0


def test_seeded_and_narrower_with_more_studies():
    small = bootstrap_study_metrics(*_noisy_studies(12, 1.5), 0.5, seed=3)
    assert small == bootstrap_study_metrics(*_noisy_studies(12, 1.5), 0.5, seed=3)
    assert small != bootstrap_study_metrics(*_noisy_studies(12, 1.5), 0.5, seed=4)
    large = bootstrap_study_metrics(*_noisy_studies(300, 1.5), 0.5, seed=3)
    assert large.auc.width < small.auc.width


def test_resampled_auc_matches_scikit_learn_on_the_same_draws():
    """The weighted comparison-matrix AUC is the AUC of the resampled studies."""
    scores, labels = _noisy_studies(8, 1.0)
    scores[3] = scores[12]  # a tie counts one half
    pos, neg = scores[labels == 1], scores[labels == 0]
    rng = np.random.default_rng(0)
    pos_counts = rng.multinomial(pos.size, np.full(pos.size, 1 / pos.size), 1)[0]
    neg_counts = rng.multinomial(neg.size, np.full(neg.size, 1 / neg.size), 1)[0]
    resampled_scores = np.concatenate([np.repeat(pos, pos_counts), np.repeat(neg, neg_counts)])
    resampled_labels = np.concatenate([np.ones(pos.size, int), np.zeros(neg.size, int)])
    wins = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    weighted = pos_counts @ wins @ neg_counts / (pos.size * neg.size)
    assert weighted == pytest.approx(roc_auc(resampled_scores, resampled_labels))


def test_small_sets_are_flagged_inconclusive():
    perfect = bootstrap_study_metrics([0.1, 0.2, 0.3, 0.8, 0.9, 0.95, 0.99], [0, 0, 0, 1, 1, 1, 1], 0.5)
    assert perfect.auc.estimate == 1.0 and not perfect.conclusive
    assert "too small to conclude" in perfect.caveat and "3 control" in perfect.caveat
    big = bootstrap_study_metrics(*_noisy_studies(MIN_STUDIES_PER_CLASS * 10, 4.0), 0.5)
    assert big.conclusive and big.caveat == ""


def test_one_class_gives_nan_auc_not_a_number_made_up():
    with pytest.warns(RuntimeWarning, match="undefined"):
        result = bootstrap_study_metrics([0.2, 0.7], [1, 1], 0.5)
    assert np.isnan(result.auc.estimate) and np.isnan(result.specificity.estimate)
    assert result.sensitivity.estimate == 0.5


def test_youden_threshold_separates_perfectly_separable_studies_midway():
    choice = choose_threshold([0.1, 0.3, 0.4, 0.6, 0.9], [0, 0, 0, 1, 1])
    assert choice.threshold == pytest.approx(0.5)
    assert (choice.sensitivity, choice.specificity) == (1.0, 1.0)


def test_youden_is_not_the_fixed_half():
    """Scores all above 0.5 (the issue's failure: specificity 0.5 at 0.5)."""
    choice = choose_threshold([0.6, 0.7, 0.8, 0.9], [0, 0, 1, 1])
    assert choice.threshold == pytest.approx(0.75)
    assert choice.specificity == 1.0


def test_min_sensitivity_rule_trades_specificity_for_sensitivity():
    scores = [0.1, 0.2, 0.35, 0.5, 0.3, 0.6, 0.7, 0.8, 0.9, 0.95]
    labels = [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]
    youden = choose_threshold(scores, labels)
    strict = choose_threshold(scores, labels, rule="min_sensitivity", min_sensitivity=1.0)
    assert strict.sensitivity == 1.0 and strict.threshold < 0.3
    assert strict.specificity == 0.5
    assert youden.sensitivity < 1.0 and youden.specificity == 1.0
    counts = confusion_counts(scores, labels, strict.threshold)
    assert counts["fn"] == 0


def test_threshold_rule_refuses_one_class_and_unknown_rules():
    with pytest.raises(ValueError, match="both classes"):
        choose_threshold([0.2, 0.4], [1, 1])
    with pytest.raises(ValueError, match="rule must be one of"):
        choose_threshold([0.2, 0.4], [0, 1], rule="f1")
