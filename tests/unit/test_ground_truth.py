"""The synthetic export's lesion ground truth: kept beside the export (never ingested), one mask
per rendered frame, and mapped into the model's frame by the preprocessing's own geometry."""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from components.dicom.preprocessing import (PreprocessedSlice, fit_to_square, preprocess_mask,
                                            preprocess_path)
from components.synthetic import PLANTED_PATIENT_STRINGS, generate_dataset
from components.synthetic.ground_truth import (ground_truth_dir, iter_lesion_masks,
                                               iter_native_lesion_masks)

SIZE = 128


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return generate_dataset(tmp_path_factory.mktemp("truth") / "hospital", studies=4, seed=2,
                            slices_per_series=3)


@pytest.fixture(scope="module")
def masks(export):
    return list(iter_lesion_masks(export.out_dir, SIZE))


def test_ground_truth_lives_beside_the_export_not_in_it(export):
    folder = ground_truth_dir(export.out_dir)
    assert folder.is_dir() and folder.parent == export.out_dir.parent
    assert not any(p.suffix == ".npz" for p in export.out_dir.rglob("*"))


def test_one_mask_per_rendered_mr_frame(export, masks):
    expected = {(export.out_dir / r.path, f) for r in export.files
                if r.kind in ("axial", "sagittal", "coronal", "localizer")
                for f in range(r.frames if r.multiframe else 1)}
    assert {(path, frame) for path, frame, _ in masks} == expected
    assert all(m.shape == (SIZE, SIZE) and m.dtype == bool for _, _, m in masks)


def test_ms_studies_have_lesions_and_controls_none(export, masks):
    area = defaultdict(int)
    for path, _, mask in masks:
        area[path.relative_to(export.out_dir).parts[1]] += int(mask.sum())
    for uid, study in export.studies.items():
        assert (area[uid] > 0) == (study.label == 1), uid


def test_masks_lie_over_the_bright_lesions_of_the_preprocessed_slice(export, masks):
    """Inside a mask the tensor is brighter than the rest of the head on the same slice."""
    checked = 0
    for path, frame, mask in masks:
        if mask.sum() < 20:
            continue
        result = preprocess_path(path, image_size=SIZE)[frame]
        if not isinstance(result, PreprocessedSlice):
            continue   # non-axial frames are rejected; their masks are still recorded
        image = result.image[:, :, 0].astype(float)
        head = (image > 30) & ~mask
        assert image[mask].mean() > image[head].mean() + 20, path.name
        checked += 1
    assert checked >= 3


def test_ground_truth_holds_no_planted_patient_string(export):
    folder = ground_truth_dir(export.out_dir)
    for path in folder.rglob("*"):
        names = path.relative_to(folder).as_posix()
        assert not any(s in names for s in PLANTED_PATIENT_STRINGS)
        if path.is_file():
            with np.load(path) as data:
                text = " ".join(map(str, data["files"]))
            assert not any(s in text for s in PLANTED_PATIENT_STRINGS)


def test_native_masks_have_the_files_matrix(export):
    path, frame, mask = next(iter_native_lesion_masks(export.out_dir))
    image = preprocess_path(path, image_size=SIZE, orientations=("axial", "sagittal",
                                                                 "coronal", "oblique"))[frame]
    assert mask.shape == (image.rows, image.cols)


@pytest.mark.parametrize("rows, cols", [(384, 416), (748, 640), (100, 100)])
def test_preprocess_mask_follows_the_image_geometry(rows, cols):
    native = np.zeros((rows, cols), bool)
    native[rows // 5:rows // 2, cols // 3:cols - 10] = True
    mapped = preprocess_mask(native, 64)
    resized = fit_to_square(native.astype(np.float32) * 255, 64)
    assert mapped.shape == (64, 64)
    assert np.array_equal(mapped, resized >= 127.5)
    assert abs(int(mapped.sum()) - native.mean() * 64 * 64 * min(rows, cols) / max(rows, cols)) \
        < 0.1 * mapped.sum()


def test_missing_ground_truth_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no lesion ground truth"):
        next(iter_lesion_masks(tmp_path / "nothing"))


def test_ms_lesions_sit_in_white_matter_with_realistic_sizes_and_loads():
    """Lesion load varies from a few to dozens, long axes 3-15 mm, centres in white matter of
    MS's regions; controls get at most a few small non-specific spots, never counted."""
    from components.synthetic import brain
    from components.synthetic.settings import SynthSettings

    settings, rng = SynthSettings(), np.random.default_rng(9)
    loads, diameters, controls = [], [], []
    for index in range(12):
        subject = brain.make_subject(rng, multiple_sclerosis=index % 2 == 0, slab=(-10.0, 25.0),
                                     settings=settings)
        counted = [lesion for lesion in subject.lesions if lesion.counted]
        if index % 2 == 0:
            loads.append(len(counted))
            diameters += [2 * float(lesion.axes.max()) for lesion in counted]
        else:
            assert not counted and len(subject.lesions) <= 3
            controls.append(len(subject.lesions))
    assert min(loads) <= 8 and max(loads) >= 15 and min(loads) >= settings.lesion_count[0]
    assert 3.0 <= min(diameters) and max(diameters) <= 15.0 and max(diameters) > 9.0
    assert 0 < sum(c > 0 for c in controls) < len(controls)
