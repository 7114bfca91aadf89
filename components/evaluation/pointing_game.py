"""The pointing game (Zhang et al., 2016): does a heat map's peak fall inside the lesion?

How Grad-CAM (the `serving_explain` signature) is checked against the synthetic export's lesion
masks (components/synthetic/ground_truth.py): for each positive slice that shows a lesion, one
hit when the hottest pixel of its heat map lies in a lesion, dilated by `tolerance_px` (the
original game allows 15 pixels at 224^2; we default to none: the peak must be ON a lesion).
A map without any positive evidence (all zero) has no peak and counts as a miss, never a hit.
Slices whose mask is empty are not scored (there is nothing to point at) and are counted as
such. Ties for the peak go to the first pixel in row-major order, so the score is
deterministic. Pure numpy: it runs wherever heat maps and masks are, with no TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PointingScore:
    hits: int
    scored: int           # slices with a lesion in the mask
    without_lesion: int   # slices given but not scored: empty mask
    no_evidence: int      # scored slices whose heat map is all zero (counted as misses)

    @property
    def score(self) -> float:
        """Hit rate over the scored slices (NaN when none was scored)."""
        return self.hits / self.scored if self.scored else float("nan")

    def describe(self, image_size: int) -> str:
        return (f"pointing game {self.hits}/{self.scored} = {self.score:.1%} of positive slices "
                f"with a lesion ({image_size}x{image_size}, per slice; {self.no_evidence} "
                f"without evidence, {self.without_lesion} without a lesion not scored)")


def peak_positions(heatmaps: np.ndarray) -> np.ndarray:
    """int [N, 2]: (row, col) of each map's maximum (first in row-major order on ties)."""
    heatmaps = _maps(heatmaps, "heatmaps")
    flat = heatmaps.reshape(len(heatmaps), -1).argmax(axis=1)
    return np.stack(np.unravel_index(flat, heatmaps.shape[1:]), axis=1)


def pointing_game(heatmaps: np.ndarray, masks: np.ndarray, tolerance_px: int = 0
                  ) -> PointingScore:
    """Score heat maps [N, H, W] (or [N, H, W, 1]) against bool lesion masks of the same shape."""
    heatmaps, masks = _maps(heatmaps, "heatmaps"), _maps(masks, "masks").astype(bool)
    if heatmaps.shape != masks.shape:
        raise ValueError(f"heatmaps {list(heatmaps.shape)} and masks {list(masks.shape)} "
                         "differ in shape")
    if tolerance_px < 0:
        raise ValueError(f"tolerance_px must be >= 0, got {tolerance_px}")
    if not np.all(np.isfinite(heatmaps)):
        raise ValueError("heatmaps hold NaN or infinite values")
    has_lesion = masks.reshape(len(masks), -1).any(axis=1)
    evidence = heatmaps.reshape(len(heatmaps), -1).max(axis=1) > 0
    peaks = peak_positions(heatmaps)
    hits = 0
    for index in np.flatnonzero(has_lesion & evidence):
        row, col = peaks[index]
        window = masks[index, max(0, row - tolerance_px):row + tolerance_px + 1,
                       max(0, col - tolerance_px):col + tolerance_px + 1]
        hits += bool(window.any())
    return PointingScore(hits=hits, scored=int(has_lesion.sum()),
                         without_lesion=int((~has_lesion).sum()),
                         no_evidence=int((has_lesion & ~evidence).sum()))


def _maps(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3:
        raise ValueError(f"{name} must be [N, H, W] or [N, H, W, 1], got {list(array.shape)}")
    return array
