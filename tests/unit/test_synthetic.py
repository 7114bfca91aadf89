"""The synthetic hospital export: layout, labels, variety, planted defects, fake patient data,
determinism (lesions and their ground truth: test_ground_truth.py). Files are checked by
reading them back with pydicom, independently of the generator's own bookkeeping, and then
compared with its manifest."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    BasicTextSRStorage,
    EnhancedMRImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
)

from components.synthetic import (
    DEFAULT_SCANNERS,
    PLANTED_PATIENT_STRINGS,
    SynthSettings,
    generate_dataset,
)
from mspipe.main import main as mspipe

LABEL_FILES = {"labels.csv", "labels.xlsx"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "hospital"
    return generate_dataset(root, studies=12, seed=0, slices_per_series=4)


@pytest.fixture(scope="module")
def headers(dataset):
    """Relative path -> dataset (pixels not decoded) for every DICOM file; None otherwise."""
    parsed = {}
    for path in _data_files(dataset.out_dir):
        relative = path.relative_to(dataset.out_dir).as_posix()
        data = path.read_bytes()
        parsed[relative] = pydicom.dcmread(path) if data[128:132] == b"DICM" else None
    return parsed


def _data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name not in LABEL_FILES)


def _labels_csv(path: Path) -> list[tuple[str, int]]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        assert reader.fieldnames == ["study_uid", "sclerosis"]
        return [(row["study_uid"], int(row["sclerosis"])) for row in reader]


def _orientation(cosines) -> str:
    normal = np.abs(np.cross(np.array(cosines[:3], float), np.array(cosines[3:], float)))
    axis = int(np.argmax(normal))
    return "oblique" if normal[axis] < 0.8 else ("sagittal", "coronal", "axial")[axis]


def _frames(ds) -> list[tuple[str, float, float]]:
    """(orientation, slope, intercept) of every frame, from classic or functional-group tags."""
    if "PerFrameFunctionalGroupsSequence" not in ds:
        return [(_orientation(ds.ImageOrientationPatient), float(ds.get("RescaleSlope", 1.0)),
                 float(ds.get("RescaleIntercept", 0.0)))]
    shared = ds.SharedFunctionalGroupsSequence[0]
    result = []
    for frame in ds.PerFrameFunctionalGroupsSequence:
        groups = frame if "PlaneOrientationSequence" in frame else shared
        transform = frame.PixelValueTransformationSequence[0]
        result.append((_orientation(groups.PlaneOrientationSequence[0].ImageOrientationPatient),
                       float(transform.RescaleSlope), float(transform.RescaleIntercept)))
    return result


def test_same_seed_same_bytes_other_seed_other_dataset(tmp_path):
    first = generate_dataset(tmp_path / "a", studies=4, seed=7, slices_per_series=2)
    again = generate_dataset(tmp_path / "b", studies=4, seed=7, slices_per_series=2)
    other = generate_dataset(tmp_path / "c", studies=4, seed=8, slices_per_series=2)
    a_files = {p.relative_to(first.out_dir): p.read_bytes()
               for p in first.out_dir.rglob("*") if p.is_file()}
    b_files = {p.relative_to(again.out_dir): p.read_bytes()
               for p in again.out_dir.rglob("*") if p.is_file()}
    assert a_files.keys() == b_files.keys()
    assert all(a_files[name] == b_files[name] for name in a_files)   # xlsx included
    assert set(other.studies).isdisjoint(first.studies)
    assert first.studies.keys() == again.studies.keys()


def test_layout_scanner_study_series_file(dataset, headers):
    root = dataset.out_dir
    assert {p.name for p in root.iterdir()} <= LABEL_FILES | {s.folder for s in DEFAULT_SCANNERS}
    assert {p.name for p in root.iterdir() if p.is_dir()} == {s.folder for s in DEFAULT_SCANNERS}
    for relative, ds in headers.items():
        scanner, study, series, name = relative.split("/")
        if ds is not None:
            assert (study, series) == (ds.StudyInstanceUID, ds.SeriesInstanceUID), relative
            assert study.startswith("2.25.") and len(study) <= 64
    names = [relative.rsplit("/", 1)[1] for relative in headers]
    assert any(n.endswith(".dcm") for n in names)
    assert any("." not in n for n in names)   # files without an extension, as GE exports them


def test_labels_csv_and_xlsx_agree_and_are_balanced(dataset):
    from openpyxl import load_workbook

    rows = _labels_csv(dataset.labels_csv)
    sheet = load_workbook(dataset.labels_xlsx, read_only=True).active
    xlsx_rows = [tuple(r) for r in sheet.iter_rows(values_only=True)]
    assert xlsx_rows[0] == ("study_uid", "sclerosis")
    assert [(uid, int(label)) for uid, label in xlsx_rows[1:]] == rows
    labels = dict(rows)
    assert len(labels) == len(rows) == 13
    assert set(labels) == set(dataset.studies) | set(dataset.empty_labelled_studies)
    assert set(labels.values()) == {0, 1}
    with_files = Counter(labels[uid] for uid in dataset.studies)
    assert with_files == {0: 6, 1: 6}
    assert all(labels[uid] == study.label for uid, study in dataset.studies.items())


def test_every_scanner_folder_holds_both_classes(dataset):
    labels = dict(_labels_csv(dataset.labels_csv))
    classes: dict[str, set[int]] = {}
    for scanner in (p for p in dataset.out_dir.iterdir() if p.is_dir()):
        for study in scanner.iterdir():
            if study.name in labels:
                classes.setdefault(scanner.name, set()).add(labels[study.name])
    assert len(classes) == 3
    assert all(found == {0, 1} for found in classes.values()), classes


def test_planted_defects_are_present_and_counted(dataset, headers):
    labels = dict(_labels_csv(dataset.labels_csv))
    not_dicom = [r for r, ds in headers.items() if ds is None]
    assert sorted(r.rsplit("/", 1)[1] for r in not_dicom) == ["README.txt", "Thumbs.db"]
    sop = Counter(ds.SOPClassUID for ds in headers.values() if ds is not None)
    assert sop[BasicTextSRStorage] == 1 and sop[SecondaryCaptureImageStorage] == 1
    report = next(ds for ds in headers.values() if ds and ds.SOPClassUID == BasicTextSRStorage)
    assert "PixelData" not in report
    capture = next(ds for ds in headers.values()
                   if ds and ds.SOPClassUID == SecondaryCaptureImageStorage)
    assert capture.pixel_array.shape == (512, 512)
    truncated = []
    for relative, ds in headers.items():
        if ds is not None and "PixelData" in ds:
            try:
                ds.pixel_array
            except ValueError:
                truncated.append(relative)
    assert truncated == list(dataset.reject_files("truncated"))
    folders = {p.name for scanner in dataset.out_dir.iterdir() if scanner.is_dir()
               for p in scanner.iterdir()}
    (empty,) = dataset.empty_labelled_studies
    assert empty in labels and empty not in folders
    unlabeled = [r for r in headers if r.split("/")[1] not in labels]
    assert len(unlabeled) == len(dataset.reject_files("unlabeled_study")) == 3
    assert set(folders - set(labels)) == set(dataset.unlabeled_studies)
    expected = dataset.expected_rejects
    assert expected["not_dicom"] == 2 and expected["unsupported_sop_class"] == 2
    assert expected["truncated"] == 1 and expected["unlabeled_study"] == 3
    assert sorted(not_dicom) == sorted(dataset.reject_files("not_dicom"))


def test_encoding_variety_is_all_there(dataset, headers):
    images = {r: ds for r, ds in headers.items()
              if ds is not None and ds.SOPClassUID in (MRImageStorage, EnhancedMRImageStorage)}
    syntaxes = Counter(ds.file_meta.TransferSyntaxUID for ds in images.values())
    assert set(syntaxes) == {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                             RLELossless, JPEG2000Lossless, JPEGLSLossless}
    assert dataset.files_by_transfer_syntax == dict(sorted(Counter(
        str(ds.file_meta.TransferSyntaxUID) for ds in headers.values() if ds).items()))
    sizes = {(ds.Rows, ds.Columns) for ds in images.values()}
    assert {(384, 416), (748, 640)} <= sizes
    assert min(min(s) for s in sizes) <= 192 and max(max(s) for s in sizes) >= 768
    assert {ds.PhotometricInterpretation for ds in images.values()} == {"MONOCHROME1",
                                                                        "MONOCHROME2"}
    assert {ds.PixelRepresentation for ds in images.values()} == {0, 1}
    frames = [f for ds in images.values() for f in _frames(ds)]
    assert any((slope, intercept) != (1.0, 0.0) for _, slope, intercept in frames)
    assert {"axial", "sagittal", "coronal"} == {orientation for orientation, _, _ in frames}
    enhanced = [ds for ds in images.values() if ds.SOPClassUID == EnhancedMRImageStorage]
    assert enhanced and all(int(ds.NumberOfFrames) > 1 for ds in enhanced)
    per_frame = enhanced[0].PerFrameFunctionalGroupsSequence[0]
    assert "PlanePositionSequence" in per_frame and "PixelValueTransformationSequence" in per_frame
    assert any({o for o, _, _ in _frames(ds)} == {"axial", "sagittal", "coronal"}
               for ds in enhanced)   # a 3-plane localizer: orientation is per frame


def test_manifest_matches_what_is_on_disk(dataset, headers):
    assert dataset.total_files == len(headers)
    labels = dict(_labels_csv(dataset.labels_csv))
    axial, non_axial = Counter(), 0
    for relative, ds in headers.items():
        if ds is None or ds.SOPClassUID not in (MRImageStorage, EnhancedMRImageStorage) \
                or relative in dataset.reject_files("truncated"):
            continue
        orientations = [o for o, _, _ in _frames(ds)]
        if ds.StudyInstanceUID in labels:
            axial[ds.StudyInstanceUID] += orientations.count("axial")
            non_axial += len(orientations) - orientations.count("axial")
    assert dataset.expected_rejects["non_axial"] == non_axial
    assert {uid: study.axial_slices for uid, study in dataset.studies.items()} == dict(axial)
    assert dataset.expected_slices == sum(axial.values()) == 12 * 4 + sum(
        r.kind == "localizer" for r in dataset.files)


def test_every_planted_patient_string_is_in_the_files(dataset, headers):
    assert set(dataset.planted_strings) == set(PLANTED_PATIENT_STRINGS)
    blob = b"\n".join(p.read_bytes() for p in _data_files(dataset.out_dir))
    missing = [s for s in PLANTED_PATIENT_STRINGS if s.encode("utf-8") not in blob]
    assert not missing
    for relative, ds in headers.items():
        if ds is not None:
            assert str(ds.PatientName) in PLANTED_PATIENT_STRINGS, relative
            assert ds.InstitutionName in PLANTED_PATIENT_STRINGS
            assert ds.PatientBirthDate in PLANTED_PATIENT_STRINGS
            assert ds.AccessionNumber in PLANTED_PATIENT_STRINGS


def test_every_intact_image_decodes_with_the_declared_shape(dataset, headers):
    truncated = set(dataset.reject_files("truncated"))
    for relative, ds in headers.items():
        if ds is None or "PixelData" not in ds or relative in truncated:
            continue
        pixels = ds.pixel_array
        frames = int(ds.get("NumberOfFrames", 1))
        shape = (ds.Rows, ds.Columns) if frames == 1 else (frames, ds.Rows, ds.Columns)
        assert pixels.shape == shape, relative
        assert pixels.min() < pixels.max(), relative


def test_settings_refuse_impossible_datasets(tmp_path):
    with pytest.raises(ValueError, match="studies"):
        SynthSettings(studies=1)
    with pytest.raises(TypeError):
        generate_dataset(tmp_path / "x", studies=2, no_such_setting=1)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("not ours")
    with pytest.raises(FileExistsError, match="not empty"):
        generate_dataset(tmp_path / "busy", studies=2, slices_per_series=1)
    with pytest.raises(FileExistsError, match="not deleting"):
        generate_dataset(tmp_path / "busy", studies=2, slices_per_series=1, overwrite=True)
    assert (tmp_path / "busy" / "keep.txt").exists()


def test_small_dataset_without_defects(tmp_path):
    manifest = generate_dataset(tmp_path / "clean", studies=2, seed=3, slices_per_series=1,
                                plant_defects=False)
    assert manifest.expected_rejects.keys() <= {"non_axial"}
    assert not manifest.unlabeled_studies and not manifest.empty_labelled_studies
    assert manifest.label_counts == {0: 1, 1: 1}
    assert len({study.scanner for study in manifest.studies.values()}) == 1


def test_cli_generates_prints_counts_only_and_refuses_a_used_folder(tmp_path, capsys):
    out = tmp_path / "hospital"
    manifest_file = tmp_path / "manifest.json"
    code = mspipe(["synth", "--out", str(out), "--studies", "2", "--slices", "1",
                   "--seed", "5", "--manifest", str(manifest_file)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "2 labelled (1 MS, 1 control)" in printed and "planted rejects:" in printed
    assert "2.25." not in printed
    assert not any(s in printed for s in PLANTED_PATIENT_STRINGS)
    assert manifest_file.exists() and (out / "labels.csv").exists()
    assert mspipe(["synth", "--out", str(out), "--studies", "2", "--slices", "1"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert mspipe(["synth", "--out", str(out), "--studies", "2", "--slices", "1",
                   "--overwrite"]) == 0


def test_preprocessing_rejects_exactly_what_the_manifest_plants(dataset):
    preprocessing = pytest.importorskip("components.dicom.preprocessing")
    reasons, kept = Counter(), 0
    for path in _data_files(dataset.out_dir):
        for result in preprocessing.preprocess_path(path, image_size=64):
            if isinstance(result, preprocessing.Rejection):
                reasons[result.reason] += 1
            else:
                kept += 1
    expected = dict(dataset.expected_rejects)
    unlabeled = expected.pop("unlabeled_study")   # needs the labels: the ingestion's job
    assert dict(reasons) == expected
    assert kept == dataset.expected_slices + unlabeled
