"""Synthetic DICOM files for bench/ingest.py: one slice in a chosen matrix and transfer syntax,
and a mosmed-like export (single-frame 512x512 axial MR, uncompressed) of any size.

The pixels come from the synthetic MNI152 subjects (components.synthetic.brain), so decode and
preprocessing see MR content (background, head, noise), not a constant or random array. A few images
are rendered per study and reused by its slices: rendering costs more than ingesting them.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.encaps import encapsulate
from pydicom.uid import JPEGBaseline8Bit, UID

from components.synthetic import brain, dicom_files, phantom
from components.synthetic.labels import LABEL_COLUMNS
from components.synthetic.settings import (DEFAULT_SCANNERS, PLANTED_INSTITUTIONS,
                                           PLANTED_PATIENTS, SynthSettings)

MOSMED_MATRIX = (512, 512)
IMAGES_PER_STUDY = 4  # distinct renders per study, cycled over its slices


def _identity(study: int) -> dicom_files.SeriesIdentity:
    scanner = DEFAULT_SCANNERS[0]
    return dicom_files.SeriesIdentity(f"2.25.{1000 + study}", f"2.25.{2000 + study}",
                                      f"2.25.{3000 + study}", 1, "t2 tse axial",
                                      PLANTED_PATIENTS[study % len(PLANTED_PATIENTS)],
                                      PLANTED_INSTITUTIONS[0], scanner)


def _render(rows: int, cols: int, seed: int, count: int) -> list[tuple[phantom.Plane, np.ndarray]]:
    rng = np.random.default_rng(seed)
    anatomy = brain.make_subject(rng, multiple_sclerosis=bool(seed % 2),
                                 slab=(phantom.SLAB_CENTER_Z - 20.0, phantom.SLAB_CENTER_Z + 20.0),
                                 settings=SynthSettings())
    planes = [phantom.axial_plane(rows, cols, 240.0 / max(rows, cols), z)
              for z in phantom.SLAB_CENTER_Z + np.linspace(-20.0, 20.0, count)]
    return [(plane, brain.render_plane(anatomy, plane, DEFAULT_SCANNERS[0], rng))
            for plane in planes]


def _mr_file(identity: dicom_files.SeriesIdentity, instance: int, plane: phantom.Plane,
             image: np.ndarray, transfer_syntax: UID) -> bytes:
    encoding = dicom_files.PixelEncoding(transfer_syntax, False, (1.0, 0.0), False)
    stored = dicom_files.to_stored(image[None], encoding, (1.0,))
    ds = dicom_files.mr_image(identity, f"{identity.series_uid}.{instance}", instance, plane,
                              stored, encoding, 3.0)
    if transfer_syntax == JPEGBaseline8Bit:  # 8-bit lossy: what a PACS "web quality" export is
        pixels = np.rint(stored.values[0] * (255.0 / max(1, int(stored.values.max()))))
        buffer = io.BytesIO()
        Image.fromarray(pixels.astype(np.uint8)).save(buffer, "JPEG", quality=90)
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        return dicom_files.encode(ds, transfer_syntax)
    return dicom_files.encode(ds, transfer_syntax, stored.values)


def slice_files(rows: int, cols: int, transfer_syntax: UID, count: int) -> list[bytes]:
    """`count` single-frame axial MR files of one study, `rows` x `cols`, in `transfer_syntax`."""
    identity = _identity(0)
    renders = _render(rows, cols, seed=rows * 7 + cols, count=min(count, IMAGES_PER_STUDY))
    return [_mr_file(identity, n + 1, *renders[n % len(renders)], transfer_syntax)
            for n in range(count)]


def mosmed_like_dataset(root: Path, slices: int, slices_per_study: int = 40) -> Path:
    """scanner/study/series/IMnnnnn files: `slices` 512x512 uncompressed axial slices in studies
    of `slices_per_study`, classes alternating, plus labels.csv; returns the labels path."""
    from pydicom.uid import ExplicitVRLittleEndian

    studies = max(2, -(-slices // slices_per_study))
    rows = []
    for study in range(studies):
        identity = _identity(study)
        folder = root / "scanner_a" / identity.study_uid / identity.series_uid
        folder.mkdir(parents=True, exist_ok=True)
        renders = _render(*MOSMED_MATRIX, seed=study, count=IMAGES_PER_STUDY)
        in_study = max(1, min(slices_per_study, slices - study * slices_per_study))
        for n in range(in_study):
            data = _mr_file(identity, n + 1, *renders[n % len(renders)], ExplicitVRLittleEndian)
            (folder / f"IM{n + 1:05d}").write_bytes(data)
        rows.append((identity.study_uid, study % 2))
    labels = root / "labels.csv"
    labels.write_text(",".join(LABEL_COLUMNS) + "\n"
                      + "".join(f"{uid},{label}\n" for uid, label in rows))
    return labels
