"""Synthetic subjects built from a real brain: the MNI ICBM152 2009 template, deformed per subject.

Each subject is the template under its own affine (size, rotation, position), a smooth elastic
deformation and a ventricle size; an image is a cut through that subject at the exact geometry
its DICOM header states (`phantom.Plane`), sampled with scipy.ndimage.map_coordinates. Contrast
is FLAIR-like (bright grey > white matter, dark CSF, bright scalp fat, dark skull) with each
scanner's own tissue weights, multiplied by a smooth coil bias field, with Rician noise. MS
subjects carry lesions where MS puts them: periventricular (ovoid, long axis pointing away from
the ventricles, Dawson's fingers), juxtacortical and infratentorial white matter, 3-15 mm,
from a few to dozens; some controls have a few small non-specific white-matter
hyperintensities, as in real life. Lesions are placed in (and just around) the axial slab the
export images: the tests' slabs are thin to keep CI affordable, a real FLAIR covers the brain.

Template: the skull-stripped 1 mm T1, grey- and white-matter probability maps that nilearn's
wheel ships in `nilearn/datasets/data/` (the very files `nilearn.datasets.load_mni152_template`,
`load_mni152_gm_template` and `load_mni152_wm_template` read), opened with nibabel from the
installed package: nothing is ever downloaded. Scalp and skull are added around the brain mask.

Licence notice of the template (ICBM 2009a Nonlinear Symmetric, McConnell Brain Imaging Centre):
  Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal Neurological
  Institute, McGill University. Permission to use, copy, modify, and distribute this software and
  its documentation for any purpose and without fee is hereby granted, provided that the above
  copyright notice appear in all copies. The authors and McGill University make no
  representations about the suitability of this software for any purpose. It is provided
  "as is" without express or implied warranty. The authors are not responsible for any data
  loss, equipment damage, property loss, or injury to subjects or patients resulting from the
  use or misuse of this software package.
(Fonov et al., NeuroImage 2011 and 2009; Collins et al., 1999.)
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from components.synthetic.phantom import Plane
from components.synthetic.settings import ScannerProfile, SynthSettings

TEMPLATE_FILES = {
    "t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
    "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
    "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz",
}
TISSUES = ("wm", "gm", "csf", "skull", "scalp")
_PAD = 16                                   # voxels added around the template for the scalp
_VENTRICLE_CENTER = np.array([0.0, -8.0, 14.0])    # MNI mm (RAS), lateral ventricles
_VENTRICLE_SIGMA = np.array([14.0, 26.0, 12.0])
_LPS_TO_RAS = np.array([-1.0, -1.0, 1.0])   # DICOM patient (LPS) <-> MNI (RAS)
_COARSE_MM = 4.0                            # the pixel -> template map is smooth: exact on a
#                                             4 mm grid, linear in between
REGIONS = ("periventricular", "juxtacortical", "infratentorial")
_REGION_SHARE = np.array([0.5, 0.3, 0.2])


def template_path(name: str) -> Path:
    """The packaged template file (inside the installed nilearn package; never a download)."""
    import importlib.resources

    return Path(str(importlib.resources.files("nilearn").joinpath(
        "datasets", "data", TEMPLATE_FILES[name])))


@dataclass(frozen=True)
class Template:
    tissues: np.ndarray      # uint8 [5, X, Y, Z]: TISSUES' membership, 0..255
    origin: np.ndarray       # MNI mm of voxel (0, 0, 0); voxels are 1 mm, axes RAS
    candidates: dict         # region -> float32 [N, 3] MNI mm of possible lesion centres

    def voxel(self, mni: np.ndarray) -> np.ndarray:
        return mni - self.origin.reshape((3,) + (1,) * (mni.ndim - 1))


@lru_cache(maxsize=1)
def load_template() -> Template:
    """Tissue maps with scalp and skull, and where each lesion type can sit (once per process).
    Distances are taken on a 2 mm grid: exact enough for 1 mm soft bands, 8x cheaper."""
    import nibabel

    images = {name: nibabel.load(str(template_path(name))) for name in TEMPLATE_FILES}
    affine = images["t1"].affine
    if not np.allclose(affine[:3, :3], np.eye(3)):
        raise ValueError("expected the 1 mm RAS MNI152 template")
    volume = {name: np.pad(np.asarray(image.dataobj, dtype=np.float32) / 255.0, _PAD)
              for name, image in images.items()}
    brain = volume["t1"] > 0
    outside = _upsample2(_distance_mm(~brain[::2, ::2, ::2]), brain.shape)
    gm, wm = volume["gm"], volume["wm"]
    csf = np.where(brain, np.clip(1.0 - gm - wm, 0.0, 1.0), 0.0)
    csf += np.clip(1.0 - np.abs(outside - 1.5) / 1.5, 0.0, 1.0) * ~brain   # subarachnoid rim
    tissues = np.stack([wm, gm, csf, _band(outside, 3.0, 7.0), _band(outside, 7.0, 12.0)])
    origin = affine[:3, 3] - _PAD
    return Template(np.rint(np.clip(tissues, 0, 1) * 255).astype(np.uint8), origin,
                    _lesion_sites(gm[::2, ::2, ::2], wm[::2, ::2, ::2],
                                  csf[::2, ::2, ::2], origin))


def _distance_mm(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance (mm) to the nearest False voxel of a 2 mm grid."""
    from scipy import ndimage

    return (2.0 * ndimage.distance_transform_edt(mask)).astype(np.float32)


def _upsample2(coarse: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A 2 mm grid (voxel k at 2k) back to 1 mm: linear along each axis in turn."""
    for axis, size in enumerate(shape):
        position = np.arange(size) / 2.0
        low = np.minimum(position.astype(int), coarse.shape[axis] - 2)
        frac = (position - low).astype(np.float32)
        view = [None] * coarse.ndim
        view[axis] = slice(None)
        frac = frac[tuple(view)]
        coarse = np.take(coarse, low, axis=axis) * (1 - frac) \
            + np.take(coarse, low + 1, axis=axis) * frac
    return coarse


def _band(distance: np.ndarray, inner: float, outer: float) -> np.ndarray:
    """1 between `inner` and `outer` mm outside the brain, 1 mm soft edges."""
    return np.clip(np.minimum(distance - inner + 0.5, outer - distance + 0.5), 0.0, 1.0)


def _lesion_sites(gm: np.ndarray, wm: np.ndarray, csf: np.ndarray, origin: np.ndarray) -> dict:
    """White-matter places MS favours (MNI mm; maps on a 2 mm grid): next to the lateral
    ventricles, touching the cortex, and below the tentorium (brainstem, cerebellum)."""
    mni = [2.0 * np.arange(n, dtype=np.float32) + origin[k] for k, n in enumerate(wm.shape)]
    x, y, z = np.meshgrid(*mni, indexing="ij", sparse=True)
    deep = (np.abs(x) < 30) & (y > -45) & (y < 30) & (z > -5) & (z < 35)
    near_ventricle = _distance_mm(~((csf > 0.6) & deep))
    near_cortex = _distance_mm(gm < 0.5)
    white = wm > 0.7
    sites = {
        "periventricular": white & (near_ventricle > 2) & (near_ventricle < 9),
        "juxtacortical": white & (near_cortex > 1) & (near_cortex < 5) & (z > -10),
        "infratentorial": (wm > 0.5) & (z < -18) & (np.abs(x) < 40) & (y < -15),
    }
    return {region: (2.0 * np.argwhere(mask) + origin).astype(np.float32)
            for region, mask in sites.items()}


@dataclass(frozen=True)
class Lesion:
    """A bright ovoid in patient coordinates (mm, LPS)."""

    center: np.ndarray       # (3,)
    axes: np.ndarray         # (3,) semi-axes along the rows of `frame`
    frame: np.ndarray        # (3, 3) unit axes
    intensity: float         # brightness above white matter
    counted: bool            # an MS lesion (in the ground truth), not a non-specific one


@dataclass(frozen=True)
class Subject:
    """One head: patient (LPS mm) -> template (MNI mm) map, and its lesions."""

    linear: np.ndarray       # (3, 3) patient-minus-translation -> template, before warps
    translation: np.ndarray  # (3,) patient mm of the template origin
    displacement: np.ndarray  # float32 [3, G, G, G] elastic field (mm) on a 200 mm cube
    ventricle_growth: float  # > 0: larger ventricles
    lesions: tuple[Lesion, ...]

    def to_template(self, points: np.ndarray) -> np.ndarray:
        """Patient mm [3, ...] -> template MNI mm [3, ...]."""
        from scipy import ndimage

        shape = points.shape[1:]
        flat = points.reshape(3, -1).astype(np.float64)
        mni = self.linear @ (flat - self.translation[:, None])
        grid = self.displacement.shape[1]
        index = (flat * _LPS_TO_RAS[:, None] + 100.0) * (grid - 1) / 200.0
        mni += np.stack([ndimage.map_coordinates(self.displacement[k], index, order=1,
                                                 mode="nearest") for k in range(3)])
        offset = (mni - _VENTRICLE_CENTER[:, None]) / _VENTRICLE_SIGMA[:, None]
        pull = 1.0 - self.ventricle_growth * np.exp(-0.5 * (offset ** 2).sum(axis=0))
        mni = _VENTRICLE_CENTER[:, None] + (mni - _VENTRICLE_CENTER[:, None]) * pull
        return mni.reshape((3,) + shape)

    def to_patient(self, mni: np.ndarray) -> np.ndarray:
        """Template MNI mm [3, N] -> patient mm, by fixed-point iteration (the warps are small
        and smooth, so it converges in a few steps to well under a millimetre)."""
        inverse = np.linalg.inv(self.linear)
        patient = inverse @ mni + self.translation[:, None]
        for _ in range(8):
            patient = patient + inverse @ (mni - self.to_template(patient))
        return patient


def make_subject(rng: np.random.Generator, *, multiple_sclerosis: bool,
                 slab: tuple[float, float], settings: SynthSettings) -> Subject:
    """Draw a head, and its lesions around the axial slab [slab] (patient z, mm)."""
    yaw, pitch, roll = np.deg2rad(rng.uniform(-8, 8)), np.deg2rad(rng.uniform(-5, 5)), \
        np.deg2rad(rng.uniform(-3, 3))
    rotation = _rotation(yaw, pitch, roll)
    scale = rng.uniform(0.92, 1.08) * rng.uniform(0.96, 1.04, size=3)
    linear = np.diag(1.0 / scale) @ rotation.T @ np.diag(_LPS_TO_RAS)
    translation = rng.uniform(-3.0, 3.0, size=3)
    grid = 7
    displacement = (rng.standard_normal((3, grid, grid, grid)) * 2.5).astype(np.float32)
    subject = Subject(linear, translation, displacement, float(rng.uniform(-0.15, 0.35)), ())
    lesions = _lesions(rng, subject, slab, settings, multiple_sclerosis)
    return Subject(linear, translation, displacement, subject.ventricle_growth, lesions)


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cz, sz, cx, sx, cy, sy = (np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch),
                              np.cos(roll), np.sin(roll))
    about_z = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    about_x = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    about_y = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    return about_z @ about_x @ about_y


def _lesions(rng: np.random.Generator, subject: Subject, slab: tuple[float, float],
             settings: SynthSettings, multiple_sclerosis: bool) -> tuple[Lesion, ...]:
    template = load_template()
    low, high = min(slab) - 6.0, max(slab) + 6.0
    if multiple_sclerosis:
        count = int(round(np.exp(rng.uniform(*np.log(settings.lesion_count)))))
        diameters = (settings.lesion_diameter_mm, settings.lesion_intensity, True)
    elif rng.random() < settings.control_hyperintensity_share:
        count = int(rng.integers(1, 4))
        diameters = ((2.0, 4.0), (0.2, 0.35), False)
    else:
        return ()
    # candidate sites that fall inside the slab on this subject (patient z)
    pools = {}
    for region in REGIONS:
        sites = template.candidates[region].T.astype(np.float64)
        near = np.abs(sites[2] - 0.5 * (low + high)) < 0.5 * (high - low) + 15.0
        sites = sites[:, near]
        if sites.shape[1]:   # the affine alone: the warps move a site by millimetres
            patient_z = (np.linalg.inv(subject.linear) @ sites)[2] + subject.translation[2]
            sites = sites[:, (patient_z >= low) & (patient_z <= high)]
        if sites.shape[1]:
            pools[region] = sites
    if not pools:
        return ()
    regions = [r for r in REGIONS if r in pools]
    if not multiple_sclerosis:   # non-specific: deep and subcortical white matter, not MS's
        regions = [r for r in regions if r != "periventricular"] or regions
    share = np.array([_REGION_SHARE[REGIONS.index(r)] for r in regions])
    chosen = rng.choice(len(regions), size=count, p=share / share.sum())
    (small, large), (dim, bright), counted = diameters
    lesions = []
    for k in chosen:
        region = regions[int(k)]
        pool = pools[region]
        mni = pool[:, int(rng.integers(pool.shape[1]))]
        center = subject.to_patient(mni[:, None])[:, 0]
        major = 0.5 * float(np.exp(rng.uniform(np.log(small), np.log(large))))
        minor = major / rng.uniform(1.2, 1.8)
        if region == "periventricular":   # long axis away from the ventricles
            direction = (mni - _VENTRICLE_CENTER) * _LPS_TO_RAS
        else:
            direction = rng.standard_normal(3)
        frame = _frame_along(direction, rng)
        axes = np.array([major, minor, minor * rng.uniform(0.8, 1.0)])
        lesions.append(Lesion(center, axes, frame, float(rng.uniform(dim, bright)), counted))
    return tuple(lesions)


def _frame_along(direction: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    first = direction / max(np.linalg.norm(direction), 1e-6)
    other = rng.standard_normal(3)
    second = other - (other @ first) * first
    second /= max(np.linalg.norm(second), 1e-6)
    return np.stack([first, second, np.cross(first, second)])


@lru_cache(maxsize=4)
def _contrast_volume(weights: tuple[float, ...]) -> np.ndarray:
    """The template's FLAIR-like signal for one scanner's tissue weights (float32 volume)."""
    tissues = load_template().tissues
    volume = np.zeros(tissues.shape[1:], dtype=np.float32)
    for weight, tissue in zip(weights, tissues):
        volume += np.float32(weight / 255.0) * tissue
    return volume


def render_plane_and_mask(subject: Subject, plane: Plane, scanner: ScannerProfile,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Signal of one image in the scanner's units (float32, >= 0), and the bool mask of the
    subject's MS lesions on it (the evaluation's ground truth; non-specific spots excluded)."""
    from scipy import ndimage

    template = load_template()
    rows, cols = plane.rows, plane.cols
    patient = _plane_points(plane, *_coarse_shape(plane, _COARSE_MM))
    mni = subject.to_template(patient)
    step = max(1.0, 0.9 / plane.spacing)    # sample the 1 mm template at ~1 mm
    sample_shape = (max(2, int(rows / step)), max(2, int(cols / step)))
    voxels = template.voxel(np.stack([_resize_linear(c, *sample_shape) for c in mni]))
    volume = _contrast_volume(tuple(scanner.tissue_contrast))
    tissue = ndimage.map_coordinates(volume, voxels, order=1, prefilter=False,
                                     output=np.float32)
    tissue = _resize_linear(tissue, rows, cols)
    lesion_mask = np.zeros((rows, cols), dtype=bool)
    for lesion in subject.lesions:
        _add_lesion(tissue, lesion_mask, lesion, plane, scanner.tissue_contrast[0])
    tissue *= 1.0 + 0.04 * _resize_linear(rng.standard_normal((12, 12)).astype(np.float32),
                                          rows, cols)
    bias = _bias_field(rng, scanner.bias, _plane_points(plane, 3, 3), rows, cols)
    tissue *= bias
    noise = np.float32(scanner.noise)
    real = tissue + noise * rng.standard_normal(tissue.shape, np.float32)
    imaginary = noise * rng.standard_normal(tissue.shape, np.float32)
    magnitude = np.sqrt(real * real + imaginary * imaginary)   # Rician
    signal = scanner.gain * np.power(magnitude, scanner.gamma, dtype=np.float32)
    return signal.astype(np.float32), lesion_mask


def render_plane(subject: Subject, plane: Plane, scanner: ScannerProfile,
                 rng: np.random.Generator) -> np.ndarray:
    return render_plane_and_mask(subject, plane, scanner, rng)[0]


def _coarse_shape(plane: Plane, spacing_mm: float) -> tuple[int, int]:
    return (max(2, int(np.ceil(plane.rows * plane.spacing / spacing_mm)) + 1),
            max(2, int(np.ceil(plane.cols * plane.spacing / spacing_mm)) + 1))


def _plane_points(plane: Plane, rows: int, cols: int) -> np.ndarray:
    """Patient mm [3, rows, cols] of a grid spanning the plane corner pixel to corner pixel."""
    r = np.linspace(0.0, (plane.rows - 1) * plane.spacing, rows)[:, None]
    c = np.linspace(0.0, (plane.cols - 1) * plane.spacing, cols)[None, :]
    return np.stack([plane.origin[k] + plane.row_cosine[k] * c + plane.col_cosine[k] * r
                     for k in range(3)])


def _bias_field(rng: np.random.Generator, strength: float, corners: np.ndarray, rows: int,
                cols: int) -> np.ndarray:
    """Smooth multiplicative coil shading: a random low-order polynomial of patient position,
    evaluated on a 3x3 grid of the plane and spread linearly over it."""
    x, y, z = corners / 100.0
    a = rng.uniform(-1.0, 1.0, size=4)
    field = 1.0 + strength * (a[0] * x + a[1] * y + a[2] * z - 0.5 * abs(a[3]) * (x * x + y * y))
    return _resize_linear(np.clip(field, 0.5, 1.5).astype(np.float32), rows, cols)


def _add_lesion(tissue: np.ndarray, lesion_mask: np.ndarray, lesion: Lesion, plane: Plane,
                white_matter: float) -> None:
    """Brighten the lesion's ovoid (soft-edged), where this plane cuts it."""
    reach = float(lesion.axes.max())
    offset = lesion.center - plane.origin
    if abs(float(offset @ plane.normal)) >= reach:
        return
    col, row = offset @ plane.row_cosine / plane.spacing, offset @ plane.col_cosine / plane.spacing
    half = int(np.ceil(reach / plane.spacing)) + 1
    r0, r1 = max(0, int(row) - half), min(plane.rows, int(row) + half + 1)
    c0, c1 = max(0, int(col) - half), min(plane.cols, int(col) + half + 1)
    if r0 >= r1 or c0 >= c1:
        return
    rr = (np.arange(r0, r1, dtype=np.float64)[:, None] * plane.spacing)
    cc = (np.arange(c0, c1, dtype=np.float64)[None, :] * plane.spacing)
    rel = [plane.origin[k] + plane.row_cosine[k] * cc + plane.col_cosine[k] * rr
           - lesion.center[k] for k in range(3)]
    q = sum(((lesion.frame[k, 0] * rel[0] + lesion.frame[k, 1] * rel[1]
              + lesion.frame[k, 2] * rel[2]) / lesion.axes[k]) ** 2 for k in range(3))
    profile = np.sqrt(np.clip(1.0 - q, 0.0, 1.0)).astype(np.float32)
    box = (slice(r0, r1), slice(c0, c1))
    bright = white_matter + lesion.intensity * np.minimum(1.0, 2.0 * profile)
    tissue[box] = np.where(profile > 0, np.maximum(tissue[box], bright), tissue[box])
    if lesion.counted:
        lesion_mask[box] |= profile > 0


def _resize_linear(image: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Corner-aligned bilinear resize by gathers (no BLAS, no Pillow float round trip)."""
    image = np.asarray(image, dtype=np.float32)
    if image.shape == (rows, cols):
        return image
    low, frac = _linear_weights(rows, image.shape[0])
    by_row = image[low] * (1.0 - frac)[:, None] + image[low + 1] * frac[:, None]
    low, frac = _linear_weights(cols, image.shape[1])
    return by_row[:, low] * (1.0 - frac) + by_row[:, low + 1] * frac


def _linear_weights(size: int, grid: int) -> tuple[np.ndarray, np.ndarray]:
    position = np.linspace(0.0, grid - 1.0, size)
    low = np.minimum(position.astype(int), grid - 2)
    return low, (position - low).astype(np.float32)
