"""Lesion ground truth of a synthetic export: where every rendered frame has lesion, for
evaluation only (e.g. Grad-CAM's pointing game). Never an input of the pipeline.

The masks live BESIDE the export, in `<export>_ground_truth/`, not in it: DicomExampleGen reads
every file below its data folder (a mask file there would be a `not_dicom` reject and change
the manifest's counts) and the DICOMs carry no hint of the answer. Layout mirrors the export:
`<export>_ground_truth/<scanner>/<study>/<series>.npz`, one compressed npz per series with

- `files`:  the file name of each entry (a multi-frame file repeats its name once per frame),
- `frames`: the frame index in that file,
- `masks`:  bool [N, rows, cols] on the file's native matrix.

The names are the export's own (synthetic UIDs, never a planted patient string); readers get
masks in the model's frame through `components.dicom.preprocessing.preprocess_mask`, the same
geometry as the image tensor.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from components.dicom.preprocessing import preprocess_mask
from components.features import DEFAULT_IMAGE_SIZE

SUFFIX = "_ground_truth"
_NPZ = ".npz"


def ground_truth_dir(export_root: str | os.PathLike) -> Path:
    """Where the generator keeps the lesion masks of the export at `export_root`."""
    root = Path(export_root).resolve()
    return root.with_name(root.name + SUFFIX)


def clear_ground_truth(export_root: str | os.PathLike) -> None:
    """Delete an earlier export's masks (they would mix with the new one's), refusing a
    folder that holds anything a ground-truth folder does not: it is not ours."""
    folder = ground_truth_dir(export_root)
    if not folder.exists():
        return
    foreign = [p for p in folder.rglob("*") if not p.is_dir() and p.suffix != _NPZ]
    if foreign or not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is not a synthetic lesion ground-truth "
                              "folder; not deleting it (choose another output folder)")
    shutil.rmtree(folder)


def write_series_masks(export_root: str | os.PathLike, series_path: str,
                       files: Sequence[str], frames: Sequence[int], masks: np.ndarray) -> Path:
    """Store one series' masks; `series_path` is the series folder relative to the export
    ('/'-separated), `files[k]`/`frames[k]` name the frame of `masks[k]`."""
    masks = np.asarray(masks, dtype=bool)
    if not len(files) == len(frames) == len(masks):
        raise ValueError("files, frames and masks must have one entry per frame")
    target = ground_truth_dir(export_root) / (series_path + _NPZ)
    target.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(target, files=np.array(files, dtype=str),
                        frames=np.array(frames, dtype=np.int32), masks=masks)
    return target


def iter_native_lesion_masks(export_root: str | os.PathLike
                             ) -> Iterator[tuple[Path, int, np.ndarray]]:
    """(DICOM file, frame index, bool mask [rows, cols] on the file's own matrix), in path
    order, for every MR frame the generator rendered (kept or not by ingest)."""
    root = Path(export_root).resolve()
    folder = ground_truth_dir(root)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no lesion ground truth (the synthetic generator "
                                "writes it beside its export)")
    for archive in sorted(folder.rglob("*" + _NPZ)):
        series = archive.relative_to(folder).as_posix()[:-len(_NPZ)]
        with np.load(archive) as data:
            for name, frame, mask in zip(data["files"], data["frames"], data["masks"]):
                yield root / series / str(name), int(frame), mask


def iter_lesion_masks(export_root: str | os.PathLike, image_size: int = DEFAULT_IMAGE_SIZE
                      ) -> Iterator[tuple[Path, int, np.ndarray]]:
    """(DICOM file, frame index, bool mask [S, S] in the PREPROCESSED frame): lies over the
    tensor that `components.dicom.preprocessing` makes of that frame, pixel for pixel."""
    for path, frame, mask in iter_native_lesion_masks(export_root):
        yield path, frame, preprocess_mask(mask, image_size)
