"""Pillow's Lanczos resize of a float32 image (mode "F"), bit for bit, at about half its cost.

Step 6 of the preprocessing resizes with Pillow's `Image.resize(..., LANCZOS)` on the float
image. Profiling ingest (issue 13) found that resize to be the largest cost after pydicom's
decode (384x416 -> 473x512: ~4 ms of ~10 ms per slice on our 2 cores): Pillow's "F" mode runs
one scalar double-precision loop per output pixel. Each pass is a product with a fixed sparse
matrix (every output pixel a weighted sum of at most 2 * ceil(3 * scale) + 1 inputs), so it is
computed here as two scipy sparse-dense products over contiguous rows, with
- Pillow's own weights: `precompute_coeffs` and `lanczos_filter` of Pillow's
  libImaging/Resample.c (support 3, antialiased when shrinking: the filter widens by the
  scale), in the same double arithmetic, normalised the same way;
- the same sums: float32 pixels times double weights, accumulated in double from zero in
  ascending input order (scipy's CSR kernel walks a row's entries in column order);
- the same passes: horizontal first, then vertical (the reverse for an image over 100 times
  taller than wide, as `Image.resize` does), each skipped when that side keeps its size, and
  the image rounded to float32 between and after them.
So the output equals Pillow's bit for bit (tests/unit/test_lanczos.py compares them on many
sizes, shrinking and enlarging), and Pillow stays the reference, not a second algorithm.
Pure (numpy, scipy): the client, the web page and the Beam workers import it.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from scipy import sparse

SUPPORT = 3.0  # Pillow's LANCZOS filter: sinc(x) * sinc(x / 3) on [-3, 3)


def _sinc(x: float) -> float:
    if x == 0.0:
        return 1.0
    x = x * math.pi
    return math.sin(x) / x


def _lanczos(x: float) -> float:
    return _sinc(x) * _sinc(x / SUPPORT) if -SUPPORT <= x < SUPPORT else 0.0


@lru_cache(maxsize=64)
def lanczos_weights(in_size: int, out_size: int) -> sparse.csr_matrix:
    """[out_size, in_size] weights of one pass: Pillow's precompute_coeffs, entry for entry.

    Cached: a series' slices share one matrix size, so each pair is computed once per process.
    scipy is imported here, on the first resize: ~0.3 s that a client sending 512x512 slices
    (no resize) never pays at start-up.
    """
    from scipy import sparse

    if in_size < 1 or out_size < 1:
        raise ValueError(f"sizes must be positive, got {in_size} -> {out_size}")
    scale = in_size / out_size
    filter_scale = max(scale, 1.0)
    support = SUPPORT * filter_scale
    inverse = 1.0 / filter_scale
    indptr, indices, weights = [0], [], []
    for out_index in range(out_size):
        center = (out_index + 0.5) * scale
        first = max(int(center - support + 0.5), 0)   # C's (int) truncates toward zero, as int()
        count = min(int(center + support + 0.5), in_size) - first
        row = [_lanczos((x + first - center + 0.5) * inverse) for x in range(count)]
        total = 0.0
        for weight in row:  # summed in order, as the C loop does
            total += weight
        if total != 0.0:
            row = [weight / total for weight in row]
        indices.extend(range(first, first + count))
        weights.extend(row)
        indptr.append(len(indices))
    return sparse.csr_matrix((np.array(weights, dtype=np.float64),
                              np.array(indices, dtype=np.int32),
                              np.array(indptr, dtype=np.int32)), shape=(out_size, in_size))


def lanczos_resize(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """`image` (2-D, float32 values) -> float32 [rows, cols], equal to
    `np.asarray(Image.fromarray(image).resize((cols, rows), Image.Resampling.LANCZOS))`."""
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2 or image.size == 0:
        raise ValueError(f"expected a non-empty 2-D image, got shape {image.shape}")
    in_rows, in_cols = image.shape
    if in_rows > in_cols * 100 and rows < in_rows:  # Image.resize's order for very tall images
        return _horizontal(_vertical(image, rows), cols)
    return _vertical(_horizontal(image, cols), rows)


def _horizontal(image: np.ndarray, cols: int) -> np.ndarray:
    """One pass along rows; columns are the sparse product's contiguous axis: transpose."""
    if cols == image.shape[1]:
        return image
    columns = np.ascontiguousarray(image.T).astype(np.float64)
    weighed = lanczos_weights(image.shape[1], cols) @ columns        # [cols, rows]
    return np.ascontiguousarray(weighed.T, dtype=np.float32)         # Pillow's float32 image


def _vertical(image: np.ndarray, rows: int) -> np.ndarray:
    if rows == image.shape[0]:
        return image
    return (lanczos_weights(image.shape[0], rows) @ image.astype(np.float64)).astype(np.float32)
