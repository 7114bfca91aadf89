"""No confident answer without anatomy: components.dicom.anatomy's rule, on the cases it was
chosen on (components/dicom/anatomy.py's docstring gives the measured margins)."""
from __future__ import annotations

import numpy as np
import pytest

from components.dicom import anatomy
from components.dicom.preprocessing import (PreprocessedSlice, Rejection, RejectedInput,
                                            clip_and_scale, pixels_to_tensor, preprocess_path)
from components.synthetic import brain, phantom
from components.synthetic.settings import DEFAULT_SCANNERS, SynthSettings

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def scaled(pixels: np.ndarray) -> np.ndarray:
    return clip_and_scale(pixels, 0.5, 99.5)


@pytest.fixture(scope="module")
def subject():
    rng = np.random.default_rng(21)
    return brain.make_subject(rng, multiple_sclerosis=True, slab=(0.0, 30.0),
                              settings=SynthSettings())


def cut(subject, z: float, rows: int = 256, cols: int = 256, seed: int = 0) -> np.ndarray:
    plane = phantom.axial_plane(rows, cols, 240.0 / max(rows, cols), z)
    return brain.render_plane(subject, plane, DEFAULT_SCANNERS[seed % 3],
                              np.random.default_rng(seed))


def brain_area_cm2(subject, z: float) -> float:
    """Area of grey + white matter on the cut, from the template itself (the ground truth)."""
    from scipy import ndimage

    template = brain.load_template()
    plane = phantom.axial_plane(64, 64, 240.0 / 64, z)
    mni = subject.to_template(brain._plane_points(plane, 64, 64))
    tissue = ndimage.map_coordinates(template.tissues[0].astype(np.float32)
                                     + template.tissues[1], template.voxel(mni), order=1)
    return float((tissue > 127).mean() * 24.0 * 24.0)


@pytest.mark.parametrize("rows, cols", [(256, 256), (192, 192), (384, 416)])
def test_every_cut_holding_brain_passes_from_cerebellum_to_vertex(subject, rows, cols):
    checked = 0
    for z in range(-70, 100, 10):
        if brain_area_cm2(subject, z) < 1.0:
            continue
        problem = anatomy.anatomy_problem(scaled(cut(subject, z, rows, cols, seed=z + 100)))
        assert problem is None, (z, problem)
        checked += 1
    assert checked >= 12


def test_cuts_through_air_above_the_head_are_refused(subject):
    for z in (115.0, 130.0):
        assert brain_area_cm2(subject, z) == 0
        assert "no anatomy" in anatomy.anatomy_problem(scaled(cut(subject, z)))


@pytest.mark.parametrize("size", [8, 24, 48, 64, 100, 512])
@pytest.mark.parametrize("kind", ["uniform", "gauss", "rician"])
def test_noise_only_is_refused(kind, size):
    rng = np.random.default_rng(size)
    noise = {"uniform": lambda: rng.uniform(0, 1000, (size, size)),
             "gauss": lambda: rng.normal(500, 100, (size, size)),
             "rician": lambda: np.hypot(rng.normal(0, 30, (size, size)),
                                        rng.normal(0, 30, (size, size)))}[kind]()
    problem = anatomy.anatomy_problem(scaled(noise))
    assert problem is not None and "noise" in problem
    with pytest.raises(RejectedInput) as raised:
        pixels_to_tensor(noise, image_size=64)
    assert raised.value.rejection.reason == "no_anatomy"


def test_a_small_bright_speck_on_black_is_refused():
    image = np.zeros((256, 256))
    image[120:140, 100:120] = 900.0
    assert "largest bright region" in anatomy.anatomy_problem(scaled(image))


@pytest.mark.parametrize("pixels", [np.zeros((64, 64)), np.full((64, 64), np.nan),
                                    np.full((30, 40), 1234.0)])
def test_blank_constant_and_nan_frames_are_refused_before(pixels):
    with pytest.raises(RejectedInput) as raised:
        pixels_to_tensor(pixels, image_size=32)
    assert raised.value.rejection.reason == "constant_image"


def test_smooth_head_like_test_images_and_small_frames_pass():
    y, x = np.mgrid[0:48, 0:40]
    ellipse = ((y - 24) / 16) ** 2 + ((x - 20) / 11.4) ** 2 < 1
    noisy = 200 + 1500 * ellipse + np.random.default_rng(0).integers(0, 300, (48, 40))
    assert anatomy.anatomy_problem(scaled(noisy)) is None
    assert pixels_to_tensor(noisy, image_size=32).shape == (32, 32, 1)


def test_real_mr_from_pydicom_passes():
    import pydicom

    path = __import__("pathlib").Path(pydicom.__file__).parent / "data" / "test_files" / \
        "MR_small.dcm"
    [result] = preprocess_path(path, image_size=64)
    assert isinstance(result, PreprocessedSlice)


def test_the_reason_reaches_the_shared_loop_as_a_rejection(tmp_path):
    from PIL import Image

    picture = tmp_path / "nothing.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 40, (128, 128)).astype(np.uint8)
                    ).save(picture)
    [result] = preprocess_path(picture, image_size=64)
    assert isinstance(result, Rejection) and result.reason == "no_anatomy"
    assert str(tmp_path) not in result.detail


def test_otsu_splits_two_levels_and_block_mean_keeps_the_mean():
    image = np.zeros((128, 96), np.float32)
    image[:, 48:] = 200
    assert 0 < anatomy.otsu_threshold(image) < 200
    small = anatomy.block_mean(image)
    assert small.shape == (64, 64) and np.isclose(small.mean(), image.mean(), rtol=1e-3)
