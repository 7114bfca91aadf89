"""Where every synthetic image lies: DICOM plane geometry in patient coordinates.

Patient coordinates are DICOM's (mm; x right->left, y anterior->posterior, z feet->head). Every
image is a cut through its subject (components/synthetic/brain.py) at the geometry its header
will state, so ImagePositionPatient / ImageOrientationPatient are true, non-square matrices
show an undistorted head, and lesions appear on neighbouring slices like real ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

SLAB_CENTER_Z = 10.0   # axial slabs are centred on the lateral ventricles


@dataclass(frozen=True)
class Plane:
    """Where one image lies in patient space, exactly as its DICOM geometry will say."""

    origin: np.ndarray        # ImagePositionPatient: centre of the first pixel (mm)
    row_cosine: np.ndarray    # direction of increasing column index
    col_cosine: np.ndarray    # direction of increasing row index
    spacing: float            # square pixels (mm)
    rows: int
    cols: int

    @cached_property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cosine, self.col_cosine)

    @property
    def orientation(self) -> list[float]:
        """ImageOrientationPatient, rounded so headers are short and reproducible."""
        return [round(float(v), 6) for v in (*self.row_cosine, *self.col_cosine)]

    @property
    def position(self) -> list[float]:
        return [round(float(v), 4) for v in self.origin]


def plane_through(center: np.ndarray, row_cosine: np.ndarray, col_cosine: np.ndarray,
                  rows: int, cols: int, spacing: float) -> Plane:
    """A plane of rows x cols square pixels whose middle is `center`."""
    row_cosine = np.asarray(row_cosine, dtype=np.float64)
    col_cosine = np.asarray(col_cosine, dtype=np.float64)
    origin = (np.asarray(center, dtype=np.float64) - row_cosine * spacing * (cols - 1) / 2
              - col_cosine * spacing * (rows - 1) / 2)
    return Plane(origin, row_cosine, col_cosine, float(spacing), int(rows), int(cols))


def axial_plane(rows: int, cols: int, spacing: float, z: float, tilt_deg: float = 0.0) -> Plane:
    """Axial cut at height z, optionally tilted about x (still axial: tilts stay under 20°)."""
    tilt = np.deg2rad(tilt_deg)
    return plane_through(np.array([0.0, 0.0, z]), [1.0, 0.0, 0.0],
                         [0.0, np.cos(tilt), -np.sin(tilt)], rows, cols, spacing)


def sagittal_plane(rows: int, cols: int, spacing: float, x: float) -> Plane:
    return plane_through(np.array([x, 0.0, SLAB_CENTER_Z]), [0.0, 1.0, 0.0], [0.0, 0.0, -1.0],
                         rows, cols, spacing)


def coronal_plane(rows: int, cols: int, spacing: float, y: float) -> Plane:
    return plane_through(np.array([0.0, y, SLAB_CENTER_Z]), [1.0, 0.0, 0.0], [0.0, 0.0, -1.0],
                         rows, cols, spacing)
