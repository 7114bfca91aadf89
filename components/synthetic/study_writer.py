"""Render and write one planned study: its series, and any defects planted in it.

Layout: <scanner>/<StudyInstanceUID>/<SeriesInstanceUID>/<file>, file names in the scanner's
own style (some without an extension). Files are written in a fixed order from the study's
own generator, so the bytes depend on the seed only.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import ExplicitVRLittleEndian

from components.synthetic import brain, dicom_files, ground_truth, phantom
from components.synthetic.dicom_files import PixelEncoding, SeriesIdentity, StoredPixels
from components.synthetic.manifest import (
    NON_AXIAL,
    NOT_DICOM,
    TRUNCATED,
    UNLABELED_STUDY,
    UNSUPPORTED_SOP_CLASS,
    FileRecord,
)
from components.synthetic.plan import (
    AXIAL,
    CORONAL,
    LOCALIZER,
    SAGITTAL,
    SeriesPlan,
    StudyPlan,
    new_uid,
)
from components.synthetic.settings import SynthSettings

# defects a study can carry (chosen by the generator)
REPORT, CAPTURE, TRUNCATED_FILE, THUMBS_DB, README = (
    "report", "capture", "truncated", "thumbs_db", "readme")
_THUMBS_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"   # OLE2 compound file, as Windows writes it
_README_TEXT = b"Exported with PACS Viewer 7.2\r\nDo not modify the contents of this folder.\r\n"


@dataclass(frozen=True)
class _Context:
    root: Path
    study: StudyPlan
    anatomy: brain.Subject
    rng: np.random.Generator

    def folder(self, series_uid: str) -> Path:
        path = self.root / self.series_path(series_uid)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def series_path(self, series_uid: str) -> str:
        return "/".join((self.study.scanner.folder, self.study.study_uid, series_uid))

    def write(self, series_uid: str, name: str, data: bytes) -> str:
        (self.folder(series_uid) / name).write_bytes(data)
        return "/".join((self.study.scanner.folder, self.study.study_uid, series_uid, name))

    def file_name(self, instance: int) -> str:
        return self.study.scanner.file_pattern.format(n=instance)


def axial_positions(frames: int) -> tuple[list[float], float]:
    """Slice heights centred on the ventricles, and the spacing (<= 5 mm, slab <= 60 mm)."""
    if frames == 1:
        return [phantom.SLAB_CENTER_Z], 5.0
    span = min(60.0, 5.0 * (frames - 1))
    spacing = span / (frames - 1)
    start = phantom.SLAB_CENTER_Z - span / 2
    return [round(start + k * spacing, 4) for k in range(frames)], spacing


def write_study(root: Path, study: StudyPlan, settings: SynthSettings,
                defects: frozenset[str] = frozenset()) -> list[FileRecord]:
    """Write every file of `study` (plus its planted defects) and describe each one.
    Defects go into labelled studies only, so each file has exactly one reject reason."""
    if defects and study.label is None:
        raise ValueError("defects are planted in labelled studies only")
    rng = np.random.default_rng(study.pixel_seed)
    positions, _ = axial_positions(settings.slices_per_series)
    anatomy = brain.make_subject(rng, multiple_sclerosis=study.has_lesions,
                                   slab=(positions[0], positions[-1]), settings=settings)
    context = _Context(root, study, anatomy, rng)
    records: list[FileRecord] = []
    for series in study.series:
        records += _write_series(context, series)
    axial = next(s for s in study.series if s.kind == AXIAL)
    side = next((s for s in study.series if s.kind == SAGITTAL), axial)
    if REPORT in defects:
        records.append(_write_report(context, axial.identity))
    if CAPTURE in defects:
        records.append(_write_capture(context, axial.identity))
    if TRUNCATED_FILE in defects:
        records.append(_write_truncated(context, axial))
    if THUMBS_DB in defects:
        data = _THUMBS_MAGIC + rng.bytes(4088)
        path = context.write(axial.identity.series_uid, "Thumbs.db", data)
        records.append(_not_dicom(context, path))
    if README in defects:
        path = context.write(side.identity.series_uid, "README.txt", _README_TEXT)
        records.append(_not_dicom(context, path))
    return records


def _planes(series: SeriesPlan) -> tuple[list[phantom.Plane], float]:
    """Geometry of every image of the series, and its slice thickness."""
    rows, cols = series.rows, series.cols
    spacing = round(series.fov_mm / max(rows, cols), 4)
    if series.kind == LOCALIZER:
        return [phantom.sagittal_plane(rows, cols, spacing, 0.0),
                phantom.coronal_plane(rows, cols, spacing, 0.0),
                phantom.axial_plane(rows, cols, spacing, phantom.SLAB_CENTER_Z)], 10.0
    if series.kind == AXIAL:
        heights, gap = axial_positions(series.frames)
        return [phantom.axial_plane(rows, cols, spacing, z, series.tilt_deg)
                for z in heights], min(5.0, gap)
    offsets = np.linspace(-25.0, 25.0, series.frames) if series.frames > 1 else [0.0]
    make = phantom.sagittal_plane if series.kind == SAGITTAL else phantom.coronal_plane
    return [make(rows, cols, spacing, round(float(o), 4)) for o in offsets], 5.0


def _reject_of(context: _Context, series: SeriesPlan) -> tuple[str | None, int]:
    """Reason and ledger entries for one file of this series (frames counted for non_axial)."""
    if context.study.label is None:
        return UNLABELED_STUDY, 1
    if series.kind in (SAGITTAL, CORONAL):
        return NON_AXIAL, 1
    if series.kind == LOCALIZER:
        return NON_AXIAL, 2     # sagittal and coronal frames; the axial frame is kept
    return None, 0


def _write_series(context: _Context, series: SeriesPlan) -> list[FileRecord]:
    planes, thickness = _planes(series)
    rendered = [brain.render_plane_and_mask(context.anatomy, plane, context.study.scanner,
                                              context.rng) for plane in planes]
    images = np.stack([image for image, _ in rendered])
    reason, rejected = _reject_of(context, series)
    identity, encoding = series.identity, series.encoding
    if series.multiframe:
        names, frames = [context.file_name(1)] * len(planes), list(range(len(planes)))
    else:
        names = [context.file_name(index + 1) for index in range(len(planes))]
        frames = [0] * len(planes)
    ground_truth.write_series_masks(context.root, context.series_path(identity.series_uid),
                                    names, frames, np.stack([mask for _, mask in rendered]))
    if series.multiframe:
        slopes = tuple(1.0 + 0.1 * (f % 3) for f in range(len(planes)))  # per-frame rescale
        stored = dicom_files.to_stored(images, encoding, slopes)
        ds = dicom_files.enhanced_mr_image(identity, series.instance_uids[0], planes, stored,
                                           encoding, thickness, series.shared_orientation)
        data = dicom_files.encode(ds, encoding.transfer_syntax, stored.values)
        path = context.write(identity.series_uid, context.file_name(1), data)
        return [_image_record(context, series, path, stored, reason, rejected)]
    records = []
    for index, (plane, image) in enumerate(zip(planes, images)):
        stored = dicom_files.to_stored(image[None], encoding, (1.0,))
        ds = dicom_files.mr_image(identity, series.instance_uids[index], index + 1, plane,
                                  stored, encoding, thickness)
        data = dicom_files.encode(ds, encoding.transfer_syntax, stored.values)
        path = context.write(identity.series_uid, context.file_name(index + 1), data)
        records.append(_image_record(context, series, path, stored, reason, rejected))
    return records


def _image_record(context: _Context, series: SeriesPlan, path: str, stored: StoredPixels,
                  reason: str | None, rejected: int) -> FileRecord:
    rescaled = any(rescale != (1.0, 0.0) for rescale in stored.rescales)
    return FileRecord(path, context.study.study_uid, series.kind,
                      str(series.encoding.transfer_syntax), stored.values.shape[0], reason,
                      rejected, series.encoding.monochrome1, rescaled, series.multiframe)


def _defect_identity(context: _Context, base: SeriesIdentity, number: int,
                     description: str) -> SeriesIdentity:
    return SeriesIdentity(base.study_uid, new_uid(context.rng), base.frame_of_reference_uid,
                          number, description, base.patient, base.institution, base.scanner)


def _write_report(context: _Context, base: SeriesIdentity) -> FileRecord:
    """A Basic Text SR in its own series: not an image, rejected by SOP class."""
    identity = _defect_identity(context, base, 900, "Radiology report")
    patient = identity.patient
    text = (f"Report for {patient.name} ({patient.patient_id}), requested by "
            f"{patient.referring_physician}: {patient.study_description}. See images.")
    ds = dicom_files.text_report(identity, new_uid(context.rng), text)
    return _write_unsupported(context, identity, ds, REPORT, frames=0)


def _write_capture(context: _Context, base: SeriesIdentity) -> FileRecord:
    """A secondary capture (screenshot with burned-in text): has pixels, still not MR."""
    identity = _defect_identity(context, base, 901, "Screen Save")
    plane = phantom.axial_plane(512, 512, 0.47, phantom.SLAB_CENTER_Z)
    signal = brain.render_plane(context.anatomy, plane, identity.scanner, context.rng)
    low, high = np.percentile(signal, [1.0, 99.0])
    pixels = np.clip((signal - low) / max(high - low, 1e-6) * 255.0, 0, 255).astype(np.uint8)
    for line in range(3):   # blocks of "text" in the corner, as viewers burn in
        widths = context.rng.integers(4, 9, size=18)
        x = 12
        for width in widths:
            pixels[12 + 16 * line:22 + 16 * line, x:x + width] = 255
            x += int(width) + 3
    ds = dicom_files.secondary_capture(identity, new_uid(context.rng), pixels)
    return _write_unsupported(context, identity, ds, CAPTURE, frames=1)


def _write_unsupported(context: _Context, identity: SeriesIdentity, ds, kind: str,
                       frames: int) -> FileRecord:
    """A one-file series of a SOP class ingest must refuse (one unsupported_sop_class reject)."""
    data = dicom_files.encode(ds, ExplicitVRLittleEndian)
    path = context.write(identity.series_uid, context.file_name(1), data)
    return FileRecord(path, identity.study_uid, kind, str(ExplicitVRLittleEndian), frames,
                      UNSUPPORTED_SOP_CLASS, 1)


def _write_truncated(context: _Context, axial: SeriesPlan) -> FileRecord:
    """One more axial instance whose header is intact but whose pixel data stops halfway,
    as an interrupted copy leaves it."""
    planes, thickness = _planes(axial)
    image = brain.render_plane(context.anatomy, planes[-1], context.study.scanner, context.rng)
    encoding = PixelEncoding(ExplicitVRLittleEndian, False, (1.0, 0.0), axial.encoding.signed)
    stored = dicom_files.to_stored(image[None], encoding, (1.0,))
    instance = axial.files + 1
    ds = dicom_files.mr_image(axial.identity, new_uid(context.rng), instance, planes[-1],
                              stored, encoding, thickness)
    data = dicom_files.encode(ds, ExplicitVRLittleEndian, stored.values)
    cut = data[:len(data) - stored.values.nbytes // 2]
    path = context.write(axial.identity.series_uid, context.file_name(instance), cut)
    return FileRecord(path, context.study.study_uid, TRUNCATED_FILE,
                      str(ExplicitVRLittleEndian), 1, TRUNCATED, 1)


def _not_dicom(context: _Context, path: str) -> FileRecord:
    return FileRecord(path, context.study.study_uid, NOT_DICOM, None, 0, NOT_DICOM, 1)
