"""Named input files -> preprocessed slices + rejections: the one loop for ingest, client and web.

DicomExampleGen, `mspipe predict`, `mspipe rollout analyze` and the web page all turn files into
model tensors here, so the same failure gets the same reason code everywhere:
- `unreadable_file`: the bytes could not be read (I/O: vanished, permissions, a remote store);
- `internal_error`: preprocessing raised, which it promises never to do for bad content, so
  this is a bug (logged by exception type only: names may be a patient's);
- the preprocessing's own codes (`components.dicom.rejections.REJECT_REASONS`) otherwise;
- `missing_study_uid` / `unlabeled_study` from a caller's `StudyCheck`. The check reads the
  header alone, before any pixel is decoded, so a file of a study the caller does not want
  (ingest: an unlabelled one) costs no decoding. A file without a UID whose header cannot
  be read is refused with the header's own reason (e.g. `decode_error`), not `missing_study_uid`.
Each file also carries its study (components.dicom.studies): callers group by it, and its
scanner token from the header (components.dicom.scanner). Folders become files through
`expand_paths` (the walk of components.dicom.file_tree: a file reached twice is read once).
Pure (numpy, pydicom, Pillow): the ingest Beam workers import it, so never TensorFlow.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Collection, Container, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from components.dicom.preprocessing import (PreprocessedSlice, Rejection, parse_dicom,
                                            preprocess_dicom, preprocess_path, read_source,
                                            read_study_identity, undecodable_header)
from components.dicom.file_tree import ALREADY_LISTED, WalkMemory, file_key, walk_local
from components.dicom.scanner import UNKNOWN_SCANNER, read_scanner
from components.dicom.studies import StudyRef, study_of
from components.features import hash_uid

LOG = logging.getLogger(__name__)
UNREADABLE_FILE = "unreadable_file"
INTERNAL_ERROR = "internal_error"
MISSING_STUDY_UID = "missing_study_uid"
UNLABELED_STUDY = "unlabeled_study"

StudyCheck = Callable[[str | None], Rejection | None]
"""StudyInstanceUID (None when absent) -> why the caller refuses the study, or None."""


@dataclass(frozen=True)
class NamedInput:
    """One input file as the caller knows it."""

    name: str                  # the path given, a path below a folder given, an upload's name:
                               # shown back to the user, never logged
    source: bytes | str        # the bytes, or the path to read them from
    container: str | None = None  # the folder given (or the upload) holding the file: the
                                  # study of its slices when they have no StudyInstanceUID


@dataclass(frozen=True)
class FileSlices:
    """What one input gave: its kept slices, its rejections and the study it belongs to."""

    input: NamedInput
    slices: tuple[PreprocessedSlice, ...]
    rejections: tuple[Rejection, ...]
    study_uid: str | None      # raw: callers hash it before storing or showing it
    series_uid: str | None
    scanner: str = UNKNOWN_SCANNER  # components.dicom.scanner's token, from the header

    @property
    def frames(self) -> int:
        """Frames seen (kept + rejected): multi-frame files number slices by frame."""
        return len(self.slices) + len(self.rejections)

    @property
    def study(self) -> StudyRef | None:
        """components.dicom.studies' definition; None for a file that gave nothing and has no
        StudyInstanceUID (not an image, unreadable): it belongs to no study."""
        if self.study_uid is None and not self.slices:
            return None
        return study_of(self.study_uid, self.input.container)


def expand_paths(paths: Iterable[str | os.PathLike]) -> list[NamedInput]:
    """Files stay files (no container); a folder becomes all non-hidden files below it, in
    name order, each with the folder as given for its container.

    Listed by components.dicom.file_tree, ingest's walk: a file reached twice (a symbolic or
    hard link, a file given twice, a folder given inside another) is read once, folder cycles
    are never followed; links may lead outside the folder (the user chose it). An entry the
    walk cannot list (dangling link, loop, unreadable folder) stays an input, so reading it
    gives its `unreadable_file` rejection instead of vanishing.
    """
    inputs: list[NamedInput] = []
    seen = WalkMemory()
    for given in map(os.fspath, paths):
        if not Path(given).is_dir():
            key = file_key(given)
            if key is None or key not in seen.files:
                inputs.append(NamedInput(given, given))
            if key is not None:
                seen.files.add(key)
            continue
        listing = walk_local(given, root_files=True, skip_hidden=True, follow_outside=True,
                             seen=seen)
        unreadable = [entry.relative_path for entry in listing.skipped
                      if entry.reason != ALREADY_LISTED]
        inputs.extend(NamedInput(path, path, given) for path in
                      [os.path.join(given, found.relative_path) for found in listing.files]
                      + [os.path.join(given, relative) for relative in unreadable])
    return inputs


def distinct_contents(inputs: Iterable[NamedInput]) -> Iterator[NamedInput]:
    """The inputs given as bytes, each content once (lazy: one input read at a time).

    For uploads, where no (device, inode) exists: a browser uploading a folder reads a linked
    file under each of its names, so identical bytes are the same file reached twice. Inputs
    given by path pass through (expand_paths already read each file once).
    """
    seen: set[bytes] = set()
    for item in inputs:
        if isinstance(item.source, (bytes, bytearray, memoryview)):
            digest = hashlib.sha256(item.source).digest()
            if digest in seen:
                continue
            seen.add(digest)
        yield item


def files_to_slices(inputs: Iterable[NamedInput], *, image_size: int,
                    orientations: Collection[str] = ("axial",),
                    study_check: StudyCheck | None = None, dicom_only: bool = False,
                    read: Callable[[str], bytes] = read_source) -> Iterator[FileSlices]:
    """Each input's slices and rejections, one file at a time (memory stays flat).

    `dicom_only`: JPEG/PNG are `not_dicom` (ingest trains on DICOM only). `read`: how a path
    becomes bytes (ingest reads through Beam's filesystems).
    """
    for item in inputs:
        yield file_to_slices(item, image_size=image_size, orientations=orientations,
                             study_check=study_check, dicom_only=dicom_only, read=read)


def file_to_slices(item: NamedInput, *, image_size: int,
                   orientations: Collection[str] = ("axial",),
                   study_check: StudyCheck | None = None, dicom_only: bool = False,
                   read: Callable[[str], bytes] = read_source) -> FileSlices:
    """One input; never raises for its content or its I/O (see the module docstring)."""
    try:
        data = bytes(item.source) if isinstance(item.source, (bytes, bytearray, memoryview)) \
            else read(item.source)
    except Exception as error:  # noqa: BLE001 -- any filesystem's failure is this file's
        return _refused(item, Rejection(UNREADABLE_FILE, "the file could not be read "
                                                         f"({type(error).__name__})"), None)
    data = parse_dicom(data) or data  # one header parse for the identity and the slices
    identity = read_study_identity(data)  # header only: None when not a readable DICOM
    scanner = read_scanner(data) if identity is not None else UNKNOWN_SCANNER
    if identity is not None and study_check is not None:
        problem = study_check(identity[0])
        if problem is not None:
            if identity[0] is None:  # no UID found: maybe because the header is unreadable
                problem = undecodable_header(data) or problem
            return _refused(item, problem, identity, scanner)
    preprocess = preprocess_dicom if dicom_only else preprocess_path
    try:
        entries = preprocess(data, image_size=image_size, orientations=orientations)
    except Exception as error:  # noqa: BLE001 -- one bad file must never fail the others
        LOG.warning("preprocessing raised %s on one input; recorded as %s",
                    type(error).__name__, INTERNAL_ERROR)
        return _refused(item, Rejection(INTERNAL_ERROR,
                                        f"preprocessing raised {type(error).__name__}"), identity,
                        scanner)
    slices = tuple(entry for entry in entries if isinstance(entry, PreprocessedSlice))
    rejections = tuple(entry for entry in entries if isinstance(entry, Rejection))
    if identity is None and slices:  # a JPEG/PNG, or the header reader failed where
        identity = (slices[0].study_uid, slices[0].series_uid)  # preprocessing did not
        problem = study_check(identity[0]) if study_check is not None else None
        if problem is not None:
            return FileSlices(item, (), rejections + (problem,), *identity)
    return FileSlices(item, slices, rejections, *(identity or (None, None)), scanner)


def labelled_studies_only(labelled: Container[str], salt: str) -> StudyCheck:
    """A StudyCheck keeping the studies of a labels file (keyed by salted hash of the UID)."""
    def check(study_uid: str | None) -> Rejection | None:
        if not study_uid:
            return Rejection(MISSING_STUDY_UID, "no (0020,000D) Study Instance UID: the study "
                                                "and its label are unknown")
        if hash_uid(study_uid, salt) not in labelled:
            return Rejection(UNLABELED_STUDY, "study is not in the labels file")
        return None
    return check


def _refused(item: NamedInput, rejection: Rejection,
             identity: tuple[str | None, str | None] | None,
             scanner: str = UNKNOWN_SCANNER) -> FileSlices:
    return FileSlices(item, (), (rejection,), *(identity or (None, None)), scanner)
