"""The generator's lesion masks beside the slices a pipeline run stored, for the pointing game."""
from __future__ import annotations

import glob
import os

import numpy as np

from components import features
from components.dicom.records import decode_example, read_tfrecords


def eval_study_ids(run) -> set[str]:
    """Salted study ids of the run's eval split (as stored in its examples)."""
    return {decode_example(record)[features.STUDY_ID][0].decode()
            for path in glob.glob(os.path.join(run.summary.examples_uri, "Split-eval", "*.gz"))
            for record in read_tfrecords(path)}


def positive_lesion_slices(run) -> tuple[np.ndarray, np.ndarray, list[bool]]:
    """Every kept slice of an MS study that shows a lesion, at the run's image size: (uint8
    images [N,S,S,1] through the one preprocessing, bool masks [N,S,S] from the generator's
    ground truth mapped the same way, whether its study is in the eval split)."""
    from components.dicom.preprocessing import PreprocessedSlice, preprocess_path
    from components.synthetic.ground_truth import iter_lesion_masks

    size = run.config.image_size
    salt = features.resolve_salt(run.config.salt)
    held_out_ids = eval_study_ids(run)
    root = os.path.realpath(run.config.data_dir)
    images, masks, held_out = [], [], []
    for path, frame, mask in iter_lesion_masks(root, image_size=size):
        study_uid = os.path.relpath(path, root).split(os.sep)[1]
        record = run.manifest.studies.get(study_uid)
        if record is None or record.label != 1 or not mask.any():
            continue
        kept = [s for s in preprocess_path(path, image_size=size)
                if isinstance(s, PreprocessedSlice) and s.frame_index == frame]
        if kept:
            images.append(kept[0].image)
            masks.append(mask)
            held_out.append(features.hash_uid(study_uid, salt) in held_out_ids)
    return np.stack(images), np.stack(masks), held_out


def chance_of_pointing(images: np.ndarray, masks: np.ndarray) -> float:
    """How often a point drawn uniformly inside the head lands on a lesion."""
    head = images[..., 0] > 20
    return float(np.mean([(m & h).sum() / max(h.sum(), 1) for m, h in zip(masks, head)]))
