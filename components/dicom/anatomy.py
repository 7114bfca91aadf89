"""Is there a head in this slice? No confident answer without anatomy.

The model was trained on slices through heads; shown a blank frame, a constant one, scanner noise
or a screenshot of nothing, it still answers, and confidently. The one shared preprocessing
therefore asks this module about every tensor it makes, so ingest, the client and the web page
refuse such a slice the same way (`no_anatomy`). (A frame with no contrast at all, NaN
included, is already `constant_image` one step earlier.)

The rule, on the frame after step 5 (clipped and scaled to 0..255, on its own matrix: no
zero padding to mistake for background) reduced to 64x64 by block means (cheap, and blind to
pixel-level noise):
1. foreground = pixels above Otsu's threshold;
2. the head = the largest 4-connected foreground region with its holes filled (ventricles,
   dark skull under bright scalp);
3. a head is present when that region covers at least `MIN_HEAD_FRACTION` of the image, fills
   at least `MIN_SOLIDITY` of its bounding box (a head section is convex-ish; the largest blob
   of thresholded noise is a ragged, fractal shape), and stands out from what is outside it by
   at least `MIN_CONTRAST` grey levels (when anything is outside it).
Thresholds were chosen on data (tests/unit/test_anatomy.py keeps the cases): axial cuts of
synthetic MNI152 subjects every 5 mm from below the cerebellum to above the vertex, at matrices
192..748, against uniform, Gaussian and Rician noise of sizes 8..768 and tiny bright specks.
Every cut holding brain passed with region >= 4 % of the image, solidity >= 0.62 and contrast
>= 86; noise had solidity < 0.55 or contrast < 70 (the worst: an 8x8 noise image, 69).
Cuts holding only scalp (just above the vertex, below the cerebellum) also pass: they show a
head, if no brain. Pure background, blank frames, noise and specks are refused.
Pure numpy + scipy.ndimage (no TensorFlow: the thin client imports it).
"""
from __future__ import annotations

import numpy as np

from components.dicom.rejections import reject

ANALYSIS_SIZE = 64
MIN_STRUCTURE = 0.5        # neighbour correlation on the 64x64 grid (iid noise: ~0)
MIN_HEAD_FRACTION = 0.02   # of the image, for the largest bright region


def head_region(image: np.ndarray) -> np.ndarray:
    """Bool [64, 64]: the largest bright region with holes filled, on the block-mean image."""
    from scipy import ndimage

    small = block_mean(image)
    foreground = small > otsu_threshold(small)
    labels, count = ndimage.label(foreground)
    if count == 0:
        return np.zeros(small.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def require_anatomy(scaled: np.ndarray) -> None:
    """Raise RejectedInput("no_anatomy") unless the scaled frame shows a head."""
    problem = anatomy_problem(scaled)
    if problem is not None:
        raise reject("no_anatomy", problem)


def anatomy_problem(image: np.ndarray) -> str | None:
    """Why `image` (2-D, 0..255: a frame after clipping and scaling) shows no head; None when
    it does. The text names the measured property, never anything about the patient."""
    structure = neighbour_correlation(image)
    if structure < MIN_STRUCTURE:
        return (f"no anatomy in the image: neighbouring pixels are unrelated, as in noise "
                f"(correlation {structure:.2f}, at least {MIN_STRUCTURE:.2f} needed)")
    fraction = float(head_region(image).mean())
    if fraction < MIN_HEAD_FRACTION:
        return (f"no anatomy in the image: the largest bright region covers {fraction:.1%} of "
                f"it (at least {MIN_HEAD_FRACTION:.0%} needed)")
    return None


def neighbour_correlation(image: np.ndarray) -> float:
    """Mean correlation of each pixel with its right and lower neighbour on the analysis grid
    (the frame itself when smaller): anatomy is smooth at that scale, noise is not."""
    values = np.asarray(image, dtype=np.float32)
    grid = values if min(values.shape) <= ANALYSIS_SIZE else block_mean(values)
    pairs = [(grid[:, :-1], grid[:, 1:]), (grid[:-1, :], grid[1:, :])]
    correlations = []
    for first, second in pairs:
        if first.size < 2 or first.std() == 0 or second.std() == 0:
            correlations.append(1.0 if np.array_equal(first, second) else 0.0)
            continue
        correlations.append(float(np.corrcoef(first.ravel(), second.ravel())[0, 1]))
    return float(np.mean(correlations))


def block_mean(image: np.ndarray, size: int = ANALYSIS_SIZE) -> np.ndarray:
    """float32 [size, size] by averaging equal blocks (edge rows/cols that do not divide are
    spread by index), robust to single-pixel noise and independent of the tensor size."""
    values = np.asarray(image, dtype=np.float32)
    if values.ndim == 3:
        values = values[:, :, 0]
    rows, cols = values.shape
    row_edges = np.linspace(0, rows, size + 1).astype(int)
    col_edges = np.linspace(0, cols, size + 1).astype(int)
    if rows < size or cols < size:   # tiny tensors: nearest-neighbour up to the grid
        return values[np.minimum(row_edges[:-1], rows - 1)][:, np.minimum(col_edges[:-1],
                                                                            cols - 1)]
    summed = np.add.reduceat(np.add.reduceat(values, row_edges[:-1], axis=0),
                             col_edges[:-1], axis=1)
    counts = np.outer(np.diff(row_edges), np.diff(col_edges))
    return summed / counts


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's between-class-variance threshold on a 0..255 image (256 bins)."""
    histogram = np.bincount(np.clip(np.asarray(values), 0, 255).astype(np.uint8).ravel(),
                            minlength=256).astype(np.float64)
    weight = np.cumsum(histogram)
    total = weight[-1]
    moment = np.cumsum(histogram * np.arange(256))
    below, above = weight[:-1], total - weight[:-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_below = moment[:-1] / below
        mean_above = (moment[-1] - moment[:-1]) / above
        between = below * above * (mean_below - mean_above) ** 2
    between = np.nan_to_num(between, nan=-1.0)
    return float(np.argmax(between)) + 0.5
