"""Is there a head in this slice? No confident answer without anatomy.

The model was trained on slices through heads; shown a blank frame, a constant one, scanner noise
or a screenshot of nothing, it still answers, and confidently. The one shared preprocessing
therefore asks this module about every tensor it makes, so ingest, the client and the web page
refuse such a slice the same way (`no_anatomy`). (A frame with no contrast at all, NaN
included, is already `constant_image` one step earlier.)

The rule, on the frame after step 5 (clipped and scaled to 0..255, on its own matrix: no
zero padding to mistake for background) reduced to at most 64x64 by block means (cheap, and
blind to pixel-level noise):
1. structure: neighbouring grid pixels must correlate (mean of the horizontal and vertical
   lag-1 correlation >= `MIN_STRUCTURE`); anatomy is smooth at 4 mm, noise is not;
2. a head: the largest 4-connected region above Otsu's threshold, holes filled (ventricles,
   dark skull under bright scalp), must cover at least `MIN_HEAD_FRACTION` of the frame.
A first version also asked the region to be compact (area / bounding box); a real MR crop
(pydicom's MR_small.dcm, anatomy filling the frame) failed it, so structure replaced it.
Thresholds were chosen on data (tests/unit/test_anatomy.py keeps the cases): axial cuts of
synthetic MNI152 subjects every 5 mm from below the cerebellum to above the vertex, at matrices
192..748, against uniform, Gaussian and Rician noise of sizes 8..768 and tiny bright specks.
Every cut holding brain measured structure >= 0.77 and region >= 4 % of the frame; every
noise image structure <= 0.05; specks on black cover ~1 %.
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


def analysis_grid(image: np.ndarray) -> np.ndarray:
    """float32, at most 64x64: block means of a larger frame, a smaller frame as it is."""
    values = np.asarray(image, dtype=np.float32)
    if values.ndim == 3:
        values = values[:, :, 0]
    return values if min(values.shape) <= ANALYSIS_SIZE else block_mean(values)


def head_region(grid: np.ndarray) -> np.ndarray:
    """Bool mask of the analysis grid: its largest bright region, holes filled."""
    from scipy import ndimage

    foreground = grid > otsu_threshold(grid)
    labels, count = ndimage.label(foreground)
    if count == 0:
        return np.zeros(grid.shape, dtype=bool)
    sizes = np.bincount(labels.ravel())[1:]
    region = labels == 1 + int(np.argmax(sizes))
    # holes: background parts that do not reach the border (ndimage.binary_fill_holes, by one
    # labelling instead of its repeated dilations: ~0.1 ms instead of ~5 ms per slice)
    outside, _ = ndimage.label(~region)
    border = np.unique(np.concatenate([outside[0], outside[-1], outside[:, 0], outside[:, -1]]))
    return region | ~np.isin(outside, border[border > 0])


def require_anatomy(scaled: np.ndarray) -> None:
    """Raise RejectedInput("no_anatomy") unless the scaled frame shows a head."""
    problem = anatomy_problem(scaled)
    if problem is not None:
        raise reject("no_anatomy", problem)


def anatomy_problem(image: np.ndarray) -> str | None:
    """Why `image` (2-D, 0..255: a frame after clipping and scaling) shows no head; None when
    it does. The text names the measured property, never anything about the patient."""
    grid = analysis_grid(image)
    structure = neighbour_correlation(grid)
    if structure < MIN_STRUCTURE:
        return (f"no anatomy in the image: neighbouring pixels are unrelated, as in noise "
                f"(correlation {structure:.2f}, at least {MIN_STRUCTURE:.2f} needed)")
    fraction = float(head_region(grid).mean())
    if fraction < MIN_HEAD_FRACTION:
        return (f"no anatomy in the image: the largest bright region covers {fraction:.1%} of "
                f"it (at least {MIN_HEAD_FRACTION:.0%} needed)")
    return None


def neighbour_correlation(grid: np.ndarray) -> float:
    """Mean correlation of each pixel with its right and lower neighbour on the analysis grid:
    anatomy is smooth at that scale, noise is not."""
    pairs = [(grid[:, :-1], grid[:, 1:]), (grid[:-1, :], grid[1:, :])]
    correlations = []
    for first, second in pairs:
        if first.size < 2 or first.std() == 0 or second.std() == 0:
            correlations.append(1.0 if np.array_equal(first, second) else 0.0)
            continue
        first, second = first - first.mean(), second - second.mean()
        correlations.append(float((first * second).sum()
                                  / np.sqrt((first * first).sum() * (second * second).sum())))
    return float(np.mean(correlations))


def block_mean(image: np.ndarray, size: int = ANALYSIS_SIZE) -> np.ndarray:
    """float32 [size, size] by averaging near-equal blocks of a frame of at least size x size:
    robust to single-pixel noise and independent of the matrix size."""
    values = np.asarray(image, dtype=np.float32)
    rows, cols = values.shape
    if rows % size == 0 and cols % size == 0:   # whole blocks (512 x 512): one reshape
        block_rows, block_cols = rows // size, cols // size
        summed = values.reshape(size, block_rows, cols).sum(axis=1)
        return summed.reshape(size, size, block_cols).sum(axis=2) / (block_rows * block_cols)
    row_edges = np.linspace(0, rows, size + 1).astype(int)
    col_edges = np.linspace(0, cols, size + 1).astype(int)
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
