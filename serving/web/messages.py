"""Rejection codes (components.dicom.preprocessing.REJECT_REASONS) in words a clinician reads.

The code and the preprocessing's technical detail are shown too, smaller, for whoever has to
fix the export; the sentence here is what the person at the page needs first.
"""
from __future__ import annotations

PLAIN_REASONS: dict[str, str] = {
    "not_dicom": "Not a DICOM file, nor a JPEG or PNG image.",
    "unsupported_sop_class": ("A DICOM file that is not an MR image (for example a report, a "
                              "screen capture, a DICOMDIR index or another modality)."),
    "no_pixel_data": "A DICOM header without any image in it.",
    "unsupported_transfer_syntax": ("The image is compressed in a format this tool cannot "
                                    "decode."),
    "unsupported_photometric_interpretation": "A colour image; MR images are greyscale.",
    "truncated": ("The file is cut short: it ends before its image does (an incomplete copy "
                  "or download?)."),
    "decode_error": "The image data in this file could not be decoded.",
    "missing_orientation": ("The slice has no orientation information, so it cannot be "
                            "checked to be axial."),
    "invalid_orientation": "The slice's orientation information is invalid.",
    "non_axial": "Not an axial slice: the model was trained on axial slices only.",
    "constant_image": "The image is blank: every pixel has the same value.",
    "no_anatomy": ("No head in this image (blank background or noise only): the model "
                   "only answers about brain slices."),
    "unreadable_image": "A JPEG or PNG file that could not be read.",
    "unreadable_file": "The file could not be read.",
    "internal_error": "This tool failed on the file (a bug): please report it.",
    "missing_study_uid": "The DICOM file does not say which study it belongs to.",
    "unlabeled_study": "The study is not in the labels file.",
    "undecodable_name": ("The file's name is not valid text (a legacy encoding?): rename it to "
                         "include it."),
    "dangling_link": "A shortcut (symbolic link) to a file that does not exist.",
    "symlink_loop": "A shortcut (symbolic link) that leads back to itself or to a folder above it.",
    "already_listed": ("The same file was already read under another name (a shortcut or hard "
                       "link to it): it is read once."),
    "outside_root": ("A shortcut (symbolic link) that leads outside the data folder: it is not "
                     "followed. Copy the files into the folder to include them."),
    "unreadable_folder": "A folder that could not be opened (permissions?).",
}

DISCLAIMER = ("Research tool, not a diagnosis. The probability is the output of a research "
              "model that has not been clinically validated; it must not be used to diagnose, "
              "treat or exclude multiple sclerosis.")


def plain_reason(code: str) -> str:
    return PLAIN_REASONS.get(code, "This file could not be used.")


def nothing_scored_notice(rejected_files: int) -> str:
    return (f"None of the {rejected_files} uploaded files gave an image the model can score, "
            "so there is no probability. The reason for each file is listed below.")


def several_studies_notice(count: int) -> str:
    return (f"This upload holds {count} different DICOM studies (different Study Instance "
            "UIDs). Each gets its own study-level probability below; check that you uploaded "
            "the study you meant.")


IMAGES_NOTICE = ("JPEG and PNG images carry no patient, study or orientation information: "
                 "check that they are axial MR slices of one study. They are scored apart from "
                 "any DICOM study, and their mean is not a study-level result unless they are "
                 "all the axial slices of one study.")


ONLY_NON_AXIAL_NOTICE = ("The upload holds only sagittal, coronal or oblique slices. The model "
                         "reads axial slices: upload the study's axial series (or the whole "
                         "study folder; other series are set aside automatically).")
