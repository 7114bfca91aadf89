"""Property-based tests of the labels reader (components/dicom/labels.py).

Whatever a labels file holds, parse_labels gives StudyLabels or a LabelsError with a one-line
message, never another exception, and the message never echoes a cell's value (a shifted
column can put a UID or a name anywhere). Issue 12's XLSX-formula row is pinned first.
"""
from __future__ import annotations

import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from components.dicom.labels import LabelsError, StudyLabels, _labels_from_rows, parse_labels

SALT = "salt"
SECRET = "Zq7Secret"  # planted in every generated cell: no message may contain it
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.too_slow])


def xlsx_bytes(rows: list[list[object]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


# ---------------------------------------------------------------- issue 12's row

@pytest.mark.parametrize("column, formula_row", [
    ("sclerosis", ["1.2.3", "=1-0"]),
    ("study_uid", ['=CONCATENATE("1.2.", "3")', 1]),
])
def test_an_xlsx_formula_without_cached_value_is_named_as_such(column, formula_row):
    raw = xlsx_bytes([["study_uid", "sclerosis"], formula_row])  # openpyxl saves no values
    with pytest.raises(LabelsError) as error:
        parse_labels(raw, "labels.xlsx", SALT)
    message = str(error.value)
    assert f"row 2: '{column}' is a formula without a cached value" in message
    assert "empty" not in message and "CONCATENATE" not in message and "1-0" not in message


def test_an_xlsx_formula_with_a_cached_value_still_reads_as_its_value():
    raw = xlsx_bytes([["study_uid", "sclerosis"], ["1.2.3", 1], ["1.2.4", 0]])
    assert len(parse_labels(raw, "labels.xlsx", SALT)) == 2
