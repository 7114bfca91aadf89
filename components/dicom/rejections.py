"""Why an input file (or one of its frames) produced no model tensor.

A rejection is data, not an exception: DicomExampleGen writes it to the reject ledger and the
run goes on; the client shows it to the user. Codes are stable strings (the ledger groups by
them); `detail` names the DICOM tag or field and the reason, never a header value that could be
patient data, and never the file path (the caller knows the path and decides what to log).
Import these from `components.dicom.preprocessing`; this module exists only so the DICOM helper and
the public module can share them without an import cycle.
"""
from __future__ import annotations

from dataclasses import dataclass

REJECT_REASONS: frozenset[str] = frozenset({
    "not_dicom",                # no DICM marker at byte 128 and no PNG/JPEG signature
    "unsupported_sop_class",    # not MR Image / Enhanced MR / Legacy Converted Enhanced MR
    "no_pixel_data",            # an MR header without (7FE0,0010) Pixel Data
    "unsupported_transfer_syntax",  # no installed decoder for the pixel encoding
    "unsupported_photometric_interpretation",  # colour / palette data in an MR object
    "truncated",                # the file ends before its declared content does
    "decode_error",             # header or pixel data present but undecodable
    "missing_orientation",      # no (0020,0037) Image Orientation (Patient) for a frame
    "invalid_orientation",      # orientation cosines that do not span a plane
    "non_axial",                # frame orientation not among the kept orientations
    "constant_image",           # nothing left after percentile clipping (high == low)
    "no_anatomy",               # no head in the frame: blank, noise only (dicom/anatomy.py)
    "unreadable_image",         # PNG/JPEG that Pillow cannot decode
    "unreadable_file",          # reading the file itself failed (I/O): components.dicom.slices
    "internal_error",           # preprocessing raised unexpectedly (a bug): components.dicom.slices
    "missing_study_uid",        # set by callers that need (0020,000D) Study Instance UID
    "unlabeled_study",          # set by callers: study absent from the labels file
    # found while listing the data folder (components.dicom_example_gen.discovery):
    "undecodable_name",         # the path is not valid UTF-8: not read
    "dangling_link",            # a symbolic link to nothing
    "symlink_loop",             # a link to itself, or a folder that contains itself
    "already_listed",           # the same file or folder reached again (symlink, hard link)
    "outside_root",             # a symbolic link leading outside the data folder: not followed
    "unreadable_folder",        # a folder that could not be listed (permissions, I/O)
})


@dataclass(frozen=True)
class Rejection:
    """One rejected file (`frame_index` None) or one rejected frame of a file."""

    reason: str
    detail: str
    frame_index: int | None = None

    def __post_init__(self) -> None:
        if self.reason not in REJECT_REASONS:
            raise ValueError(f"unknown rejection reason {self.reason!r}; add it to REJECT_REASONS")

    def __str__(self) -> str:
        where = "" if self.frame_index is None else f" (frame {self.frame_index})"
        return f"{self.reason}{where}: {self.detail}"


class RejectedInput(ValueError):
    """Raised where a caller asked for exactly one tensor and the input cannot give it."""

    def __init__(self, rejection: Rejection) -> None:
        super().__init__(str(rejection))
        self.rejection = rejection


def reject(reason: str, detail: str) -> RejectedInput:
    """Shorthand for `raise reject(...)` inside the preprocessing steps."""
    return RejectedInput(Rejection(reason, detail))
