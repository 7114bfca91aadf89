"""Header values read from the raw bytes (components.dicom.frames._plain_value) are pydicom's
values: for arbitrary bytes in every VR the preprocessing reads, either the fast reader defers
to pydicom or it gives what pydicom gives (text as the callers use it: stripped)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from components.dicom import frames
from components.dicom.rejections import RejectedInput

KEYWORDS = {  # one keyword per VR the preprocessing reads, and the VR
    "Rows": "US", "BitsStored": "US", "SOPClassUID": "UI", "PhotometricInterpretation": "CS",
    "Manufacturer": "LO", "StationName": "SH", "NumberOfFrames": "IS", "InstanceNumber": "IS",
    "RescaleSlope": "DS", "ImageOrientationPatient": "DS", "SimpleFrameList": "UL",
}
TEXTUAL = st.binary(max_size=24) | st.text(alphabet=" 0123456789+-.eE\\\0ABMNOabc",
                                           max_size=24).map(str.encode)


def element(keyword: str, data: bytes, implicit: bool) -> Dataset:
    dataset = Dataset()
    tag = frames._keyword_tag(keyword)
    dataset[tag] = RawDataElement(tag, None if implicit else KEYWORDS[keyword], len(data), data,
                                  0, implicit, True)
    return dataset


def comparable(value):
    """As read_attribute returns it (empty text is None), text as its callers strip it."""
    if isinstance(value, str):
        return value.strip("\0 ") or None
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


@settings(max_examples=400, deadline=None)
@given(keyword=st.sampled_from(sorted(KEYWORDS)), data=TEXTUAL, implicit=st.booleans())
@example(keyword="RescaleSlope", data=b" 2.5e1 ", implicit=False)
@example(keyword="ImageOrientationPatient", data=b"1\\0\\0\\0\\1\\0", implicit=True)
@example(keyword="SOPClassUID", data=b"1.2.840.10008.5.1.4.1.1.4\0", implicit=False)
@example(keyword="PhotometricInterpretation", data=b"MONOCHROME2\0", implicit=False)
@example(keyword="Rows", data=b"\x00\x02", implicit=True)
def test_a_plain_value_is_pydicoms_value(keyword, data, implicit):
    dataset = element(keyword, data, implicit)
    fast = frames._plain_value(dataset.get_item(frames._keyword_tag(keyword)))
    if fast is frames._CONVERT:
        return
    slow = dataset.get(keyword)  # pydicom's conversion must accept what the fast path reads
    assert comparable(fast) == comparable(slow), (data, fast, slow)
    if isinstance(fast, str) and KEYWORDS[keyword] == "CS":
        assert fast == slow  # the callers strip spaces only: NULs must match too


def test_read_attribute_takes_the_fast_path_and_leaves_odd_values_to_pydicom():
    plain = element("Rows", b"\x00\x02", implicit=False)
    assert frames.read_attribute(plain, "Rows") == 512
    assert isinstance(plain.get_item(frames._keyword_tag("Rows")), RawDataElement)  # not converted
    several = element("Rows", b"\x01\x00\x02\x00", implicit=False)
    assert list(frames.read_attribute(several, "Rows")) == [1, 2]      # pydicom's MultiValue
    odd = element("RescaleSlope", b"1e400", implicit=False)
    assert frames._plain_value(odd.get_item(frames._keyword_tag("RescaleSlope"))) \
        is frames._CONVERT
    with pytest.raises(RejectedInput, match="not finite"):
        frames._as_float(frames.read_attribute(odd, "RescaleSlope"), "RescaleSlope", 1.0)
    assert frames.read_attribute(Dataset(), "Rows") is None


def test_big_endian_and_undefined_length_elements_go_to_pydicom():
    tag = frames._keyword_tag("Rows")
    big = RawDataElement(tag, "US", 2, b"\x02\x00", 0, False, False)
    undefined = RawDataElement(tag, "US", 0xFFFFFFFF, b"\x02\x00", 0, False, True)
    assert frames._plain_value(big) is frames._CONVERT
    assert frames._plain_value(undefined) is frames._CONVERT
    assert np.isclose(frames._plain_value(element("RescaleSlope", b"-.5E-1", False).get_item(
        frames._keyword_tag("RescaleSlope"))), -0.05)
