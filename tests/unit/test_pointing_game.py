"""The pointing game over hand-made heat maps and masks (components/evaluation/pointing_game)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from components.evaluation.pointing_game import peak_positions, pointing_game


def maps_and_masks():
    heat = np.zeros((4, 8, 8), np.float32)
    masks = np.zeros((4, 8, 8), bool)
    masks[0, 2:4, 2:4] = True; heat[0, 3, 3] = 1.0; heat[0, 6, 6] = 0.5   # hit
    masks[1, 2:4, 2:4] = True; heat[1, 6, 6] = 1.0; heat[1, 3, 3] = 0.9   # miss: peak off
    masks[2, 0, 0] = True                                                 # no evidence: miss
    heat[3, 1, 1] = 1.0                                                   # no lesion: not scored
    return heat, masks


def test_hits_misses_and_unscored_slices_are_counted_apart():
    heat, masks = maps_and_masks()
    score = pointing_game(heat, masks)
    assert (score.hits, score.scored, score.without_lesion, score.no_evidence) == (1, 3, 1, 1)
    assert score.score == pytest.approx(1 / 3)
    assert "1/3" in score.describe(8) and "8x8" in score.describe(8)


def test_tolerance_counts_a_peak_next_to_the_lesion():
    heat, masks = maps_and_masks()
    masks[1, 5, 5] = True  # one pixel diagonal to slice 1's peak at (6, 6)
    assert pointing_game(heat, masks).hits == 1
    assert pointing_game(heat, masks, tolerance_px=1).hits == 2


def test_channel_axis_is_accepted_and_ties_go_to_the_first_pixel():
    heat, masks = maps_and_masks()
    assert pointing_game(heat[..., None], masks[..., None]) == pointing_game(heat, masks)
    tied = np.zeros((1, 4, 4), np.float32)
    tied[0, 1, 2] = tied[0, 3, 0] = 1.0
    assert peak_positions(tied).tolist() == [[1, 2]]


def test_nothing_scored_is_nan_not_a_perfect_score():
    score = pointing_game(np.ones((2, 4, 4)), np.zeros((2, 4, 4), bool))
    assert score.scored == 0 and math.isnan(score.score)


@pytest.mark.parametrize("heat, masks, message", [
    (np.zeros((2, 4, 4)), np.zeros((2, 4, 5), bool), "differ in shape"),
    (np.zeros((4, 4)), np.zeros((4, 4), bool), "must be"),
    (np.full((1, 4, 4), np.nan), np.ones((1, 4, 4), bool), "NaN"),
])
def test_bad_inputs_are_refused_with_a_reason(heat, masks, message):
    with pytest.raises(ValueError, match=message):
        pointing_game(heat, masks)
