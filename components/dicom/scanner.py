"""The `scanner` feature: which kind of machine made a file, from its header, as a safe token.

Per-scanner evaluation needs to know the machine; a folder name cannot tell it. A hospital
export's top folder may be a scanner, a patient's name, a date or a raw UID, and nothing in the
tree says which (the issue: `<patient name>/ge_signa/...` put the patient's name into every
TFRecord). The header says it: (0008,0070) Manufacturer and (0008,1090) Manufacturer's Model
Name. Both are free text, so only a token built from known parts leaves this module:

- the vendor is looked up by the Manufacturer's first word in `VENDORS` (known MR vendors);
  any other manufacturer is `other` and its model is not used, so free text typed into the
  field (a name, a ward) never becomes a feature value;
- the model is the first word of the Model Name, lowercase ASCII letters and digits only, cut
  to `MAX_MODEL_CHARACTERS`, kept only when it has a letter (a number could be a serial);
- no Manufacturer at all: `unknown`.
"GE MEDICAL SYSTEMS" + "SIGNA Premier" -> `ge_signa`; "SIEMENS" + "Skyra" -> `siemens_skyra`.
Pure (pydicom): Beam workers import it.
"""
from __future__ import annotations

import io
import re
from collections.abc import Sequence

import pydicom

from components.dicom.frames import read_attribute

UNKNOWN_SCANNER = "unknown"
OTHER_VENDOR = "other"
MAX_MODEL_CHARACTERS = 16
# First word of Manufacturer (lowercase, letters and digits only) -> vendor token.
VENDORS: dict[str, str] = {
    "siemens": "siemens", "ge": "ge", "gems": "ge", "philips": "philips",
    "toshiba": "toshiba", "canon": "canon", "hitachi": "hitachi", "fujifilm": "fujifilm",
    "esaote": "esaote", "fonar": "fonar", "united": "uih", "uih": "uih", "neusoft": "neusoft",
    "bruker": "bruker", "hyperfine": "hyperfine", "imris": "imris", "marconi": "marconi",
    "picker": "picker", "elscint": "elscint", "mrsolutions": "mrsolutions",
}
_WORD = re.compile(r"[a-z0-9]+")
HEADER_TAGS = ("Manufacturer", "ManufacturerModelName")


def scanner_token(manufacturer: object, model_name: object) -> str:
    """The feature value for these header values (see the module docstring)."""
    vendor_word = _first_word(manufacturer)
    if vendor_word is None:
        return UNKNOWN_SCANNER
    vendor = VENDORS.get(vendor_word)
    if vendor is None:
        return OTHER_VENDOR
    model = _first_word(model_name)
    if model is None or not re.search(r"[a-z]", model):
        return vendor
    return f"{vendor}_{model[:MAX_MODEL_CHARACTERS]}"


def read_scanner(data) -> str:
    """The token of a DICOM file's header (pixels not read); `unknown` when unreadable.
    `data`: the file's bytes, or a header already parsed (preprocessing.ParsedDicom)."""
    try:
        dataset = getattr(data, "dataset", None)
        if dataset is None:
            dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True,
                                      specific_tags=list(HEADER_TAGS))
        return scanner_token(read_attribute(dataset, "Manufacturer"),
                             read_attribute(dataset, "ManufacturerModelName"))
    except Exception:  # noqa: BLE001 -- an unreadable header has no known scanner
        return UNKNOWN_SCANNER


def _first_word(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):  # multi-valued
        value = value[0] if len(value) else None
        if value is None:
            return None
    text = value.decode("ascii", "ignore") if isinstance(value, bytes) else str(value)
    match = _WORD.search(text.lower().encode("ascii", "ignore").decode("ascii"))
    return match.group(0) if match else None
