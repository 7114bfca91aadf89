"""A FLAIR-like brain phantom, rendered on any DICOM plane (axial, tilted, sagittal, coronal).

The anatomy is defined once per subject in patient coordinates (mm; x right->left,
y anterior->posterior, z feet->head) and every image is a cut through it at the geometry its
header will state. So ImagePositionPatient / ImageOrientationPatient are true, non-square
matrices show an undistorted head, and MS lesions are 3-D ovoids that appear on neighbouring
slices like real ones. Everything is vectorised numpy on float32: a 512x512 slice takes a few
tens of milliseconds, so the 5,000-slice benchmark dataset is minutes, not hours.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from components.synthetic.settings import ScannerProfile, SynthSettings

# Nested head layers as fractions of the scalp ellipsoid: (outer radius, FLAIR-like intensity).
_LAYERS: tuple[tuple[float, float], ...] = (
    (1.000, 0.85),   # scalp fat: bright
    (0.955, 0.06),   # skull: dark
    (0.890, 0.12),   # CSF around the brain: dark on FLAIR
    (0.870, 0.62),   # cortical grey matter
    (0.820, 0.50),   # white matter
)
_WHITE_MATTER = 0.50
_VENTRICLE_CSF = 0.10
_VENTRICLE_CENTER = np.array([9.0, -2.0, 12.0], dtype=np.float32)   # right one; left mirrors x
_VENTRICLE_AXES = np.array([6.0, 24.0, 12.0], dtype=np.float32)
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


@dataclass(frozen=True)
class Lesion:
    """A bright ovoid in head coordinates; its long axis points away from the ventricle."""

    center: np.ndarray      # (3,) mm, head frame
    axes: np.ndarray        # (3,) semi-axes along the rows of `frame`
    frame: np.ndarray       # (3, 3) unit axes of the ovoid
    intensity: float        # added to white matter


@dataclass(frozen=True)
class Anatomy:
    """One subject's head: size, in-plane rotation, ventricle size and (for MS) lesions."""

    head_axes: np.ndarray   # (3,) scalp ellipsoid semi-axes (mm)
    yaw: float              # head rotation about z (radians)
    ventricle_scale: float
    lesions: tuple[Lesion, ...]

    def to_patient(self, point: np.ndarray) -> np.ndarray:
        """Head frame -> patient frame (inverse of the yaw rotation)."""
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([c * point[0] - s * point[1], s * point[0] + c * point[1], point[2]])


def make_anatomy(rng: np.random.Generator, *, multiple_sclerosis: bool,
                 slab: tuple[float, float], settings: SynthSettings) -> Anatomy:
    """Draw a subject. MS subjects get lesions spread evenly along the axial slab, so every
    axial slice crosses several of them (the label is per study, the model sees slices)."""
    head_axes = np.array([rng.uniform(70, 78), rng.uniform(90, 98), rng.uniform(85, 95)],
                         dtype=np.float32)
    anatomy = Anatomy(head_axes, float(np.deg2rad(rng.uniform(-8, 8))),
                      float(rng.uniform(0.8, 1.3)), ())
    if not multiple_sclerosis:
        return anatomy
    lesions = _periventricular_lesions(rng, anatomy.ventricle_scale, slab, settings)
    return Anatomy(anatomy.head_axes, anatomy.yaw, anatomy.ventricle_scale, lesions)


def _periventricular_lesions(rng: np.random.Generator, ventricle_scale: float,
                             slab: tuple[float, float], settings: SynthSettings
                             ) -> tuple[Lesion, ...]:
    margin = 6.0
    low, high = min(slab) - margin, max(slab) + margin
    count = max(5, int(round((high - low) * settings.lesions_per_mm)))
    lesions = []
    for k in range(count):
        z = low + (k + rng.uniform(0.1, 0.9)) * (high - low) / count   # stratified along z
        side = 1.0 if rng.random() < 0.5 else -1.0
        angle = rng.uniform(-1.75, 1.75)           # lateral half-plane, never the midline
        direction = np.array([side * np.cos(angle), np.sin(angle), 0.0])
        major = rng.uniform(*settings.lesion_semi_axis_mm)
        minor = major / rng.uniform(1.3, 1.8)
        height = rng.uniform(6.0, 12.0)
        ventricle = _VENTRICLE_AXES * np.array([ventricle_scale, 1.0, 1.0])
        dz = (z - _VENTRICLE_CENTER[2]) / ventricle[2]
        shrink = np.sqrt(max(0.2, 1.0 - dz * dz))
        radius = shrink / float(np.hypot(direction[0] / ventricle[0], direction[1] / ventricle[1]))
        wall = np.array([side * _VENTRICLE_CENTER[0] * ventricle_scale, _VENTRICLE_CENTER[1], z])
        center = wall + direction * (radius + rng.uniform(0.0, 4.0) + 0.6 * major)
        frame = np.array([direction, [-direction[1], direction[0], 0.0], [0.0, 0.0, 1.0]])
        intensity = float(rng.uniform(*settings.lesion_intensity))
        lesions.append(Lesion(center.astype(np.float32), np.array([major, minor, height]),
                              frame.astype(np.float32), intensity))
    return tuple(lesions)


def render_plane(anatomy: Anatomy, plane: Plane, scanner: ScannerProfile,
                 rng: np.random.Generator) -> np.ndarray:
    """Signal of one image in the scanner's units (float32, >= 0): tissue, ventricles, lesions,
    texture, coil shading, magnitude noise and the scanner's gain and contrast curve."""
    return render_plane_and_mask(anatomy, plane, scanner, rng)[0]


def render_plane_and_mask(anatomy: Anatomy, plane: Plane, scanner: ScannerProfile,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """`render_plane`, plus the bool lesion mask of the same matrix (the evaluation's ground
    truth: where a lesion's ovoid crosses this plane)."""
    lesion_mask = np.zeros((plane.rows, plane.cols), dtype=bool)
    u, v, w = _head_coordinates(anatomy, plane)
    radius2 = (u / anatomy.head_axes[0]) ** 2 + (v / anatomy.head_axes[1]) ** 2 \
        + (w / anatomy.head_axes[2]) ** 2
    radius2 *= 1.0 + 0.03 * _smooth_field(rng, plane.rows, plane.cols, 10)   # irregular cortex
    tissue = _layered_tissue(radius2)
    _add_ventricles(tissue, u, v, w, anatomy, plane)
    for lesion in anatomy.lesions:
        _add_lesion(tissue, lesion_mask, u, v, w, lesion, anatomy, plane)
    tissue *= 1.0 + 0.06 * _smooth_field(rng, plane.rows, plane.cols, 6)
    tissue *= 1.0 + scanner.bias * (0.5 * u / 100 - 0.3 * (v / 100) ** 2 + 0.2 * w / 100)
    # magnitude image: |signal + noise| (half-normal background, like Rician at low SNR)
    noisy = np.abs(tissue + scanner.noise * rng.standard_normal(tissue.shape, np.float32))
    signal = scanner.gain * np.power(noisy, scanner.gamma, dtype=np.float32)
    return signal.astype(np.float32), lesion_mask


def _head_coordinates(anatomy: Anatomy, plane: Plane
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head-frame coordinates (mm) of every pixel centre."""
    cols = np.arange(plane.cols, dtype=np.float32)[None, :] * np.float32(plane.spacing)
    rows = np.arange(plane.rows, dtype=np.float32)[:, None] * np.float32(plane.spacing)
    xyz = [np.float32(plane.origin[k]) + np.float32(plane.row_cosine[k]) * cols
           + np.float32(plane.col_cosine[k]) * rows for k in range(3)]
    c, s = np.float32(np.cos(anatomy.yaw)), np.float32(np.sin(anatomy.yaw))
    u = c * xyz[0] + s * xyz[1]
    v = -s * xyz[0] + c * xyz[1]
    return u, v, np.broadcast_to(xyz[2], u.shape).astype(np.float32)


def _layered_tissue(radius2: np.ndarray) -> np.ndarray:
    bounds = np.array([r * r for r, _ in reversed(_LAYERS)], dtype=np.float32)   # ascending
    values = np.array([v for _, v in reversed(_LAYERS)] + [0.0], dtype=np.float32)
    return values[np.searchsorted(bounds, radius2)]


def _add_ventricles(tissue: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray,
                    anatomy: Anatomy, plane: Plane) -> None:
    """Dark lateral ventricles with a soft wall (FLAIR suppresses CSF)."""
    axes = _VENTRICLE_AXES * np.array([anatomy.ventricle_scale, 1.0, 1.0], dtype=np.float32)
    for side in (1.0, -1.0):
        center = _VENTRICLE_CENTER * np.array([side * anatomy.ventricle_scale, 1.0, 1.0],
                                              dtype=np.float32)
        box = _box_on_plane(center, float(axes.max()), anatomy, plane)
        if box is None:
            continue
        q = ((u[box] - center[0]) / axes[0]) ** 2 + ((v[box] - center[1]) / axes[1]) ** 2 \
            + ((w[box] - center[2]) / axes[2]) ** 2
        weight = np.clip((1.0 - q) / 0.2, 0.0, 1.0)
        tissue[box] += weight * (_VENTRICLE_CSF - tissue[box])


def _add_lesion(tissue: np.ndarray, lesion_mask: np.ndarray, u: np.ndarray, v: np.ndarray, w: np.ndarray,
                lesion: Lesion, anatomy: Anatomy, plane: Plane) -> None:
    """Brighten the lesion's ovoid (soft-edged, replacing whatever tissue it covers)."""
    box = _box_on_plane(lesion.center, float(lesion.axes.max()), anatomy, plane)
    if box is None:
        return
    rel = [u[box] - lesion.center[0], v[box] - lesion.center[1], w[box] - lesion.center[2]]
    q = sum(((lesion.frame[k, 0] * rel[0] + lesion.frame[k, 1] * rel[1]
              + lesion.frame[k, 2] * rel[2]) / lesion.axes[k]) ** 2 for k in range(3))
    profile = np.sqrt(np.clip(1.0 - q, 0.0, 1.0))
    bright = _WHITE_MATTER + lesion.intensity * profile
    tissue[box] = np.where(profile > 0, np.maximum(tissue[box], bright), tissue[box])
    lesion_mask[box] |= profile > 0


def _box_on_plane(center: np.ndarray, reach: float, anatomy: Anatomy, plane: Plane
                  ) -> tuple[slice, slice] | None:
    """Pixel window holding a sphere of radius `reach` (head frame) on this plane, or None
    when the plane misses it: small objects cost their own size, not the image's."""
    offset = anatomy.to_patient(center) - plane.origin
    if abs(float(offset @ plane.normal)) >= reach:
        return None
    col, row = offset @ plane.row_cosine / plane.spacing, offset @ plane.col_cosine / plane.spacing
    half = int(np.ceil(reach / plane.spacing)) + 1
    r0, r1 = max(0, int(row) - half), min(plane.rows, int(row) + half + 1)
    c0, c1 = max(0, int(col) - half), min(plane.cols, int(col) + half + 1)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _smooth_field(rng: np.random.Generator, rows: int, cols: int, grid: int) -> np.ndarray:
    """Low-frequency random field (zero mean, ~unit amplitude): bilinear upsampling of a
    grid x grid normal sample. Done with gathers rather than a matrix product: under a busy
    machine a threaded BLAS call costs more than the whole rest of the slice."""
    coarse = rng.standard_normal((grid, grid)).astype(np.float32)
    low, frac = _linear_weights(rows, grid)
    by_row = coarse[low] * (1.0 - frac)[:, None] + coarse[low + 1] * frac[:, None]
    low, frac = _linear_weights(cols, grid)
    return by_row[:, low] * (1.0 - frac) + by_row[:, low + 1] * frac


def _linear_weights(size: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    position = np.linspace(0.0, grid - 1.0, size)
    low = np.minimum(position.astype(int), grid - 2)
    return low, (position - low).astype(np.float32)
