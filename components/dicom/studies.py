"""What a study is, for every caller: the slices that share a StudyInstanceUID.

Ingest labels and splits by it; `mspipe predict` and the web page report one probability per
study (the mean of its slices', `components.dicom.metrics.aggregate_by_study`, as training and
evaluation score a study); canary routing sends a whole study to one model version by its
`study_key`. A file without a StudyInstanceUID (a JPEG/PNG, a DICOM lacking the tag) has only one
documented fallback: the container it came in, i.e. the folder given to `mspipe predict` or the
upload on the web page. A file that gave no slice and has no UID (not an image, unreadable)
belongs to no study.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

from components.features import hash_uid

STUDY_KEY_SALT = "canary-routing"  # fixed: a key must be the same on every client
_T = TypeVar("_T")


@dataclass(frozen=True)
class StudyRef:
    """A study: its StudyInstanceUID, or (only without one) the folder/upload it came in."""

    study_uid: str | None
    container: str | None = None


def study_of(study_uid: str | None, container: str | None) -> StudyRef:
    """The one rule: the UID when there is one, else the container (the fallback)."""
    return StudyRef(study_uid) if study_uid else StudyRef(None, container)


def group_by_study(items: Iterable[_T], study: Callable[[_T], StudyRef | None]
                   ) -> dict[StudyRef, list[_T]]:
    """Items per study, studies in the order they first appear; items of no study are left out."""
    groups: dict[StudyRef, list[_T]] = {}
    for item in items:
        ref = study(item)
        if ref is not None:
            groups.setdefault(ref, []).append(item)
    return groups


def study_key(ref: StudyRef, images: Iterable[np.ndarray]) -> str:
    """The study's key for canary routing and reports, the same from every client.

    A DICOM study: a salted hash of its StudyInstanceUID, so it routes alike however it reaches
    us (paths, an upload). A fallback group (JPEG/PNG) has no identity but its pixels: the hash
    of its uint8 tensors in order (read only for such a group), so the same images route alike
    too. Never a raw UID or path.
    """
    if ref.study_uid is not None:
        return "uid:" + hash_uid(ref.study_uid, STUDY_KEY_SALT)
    digest = hashlib.sha256()
    for image in images:
        digest.update(np.ascontiguousarray(image).tobytes())
    return "image:" + digest.hexdigest()
