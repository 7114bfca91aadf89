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
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, database=None, derandomize=True,
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


# ---------------------------------------------------------------- properties

def assert_labels_or_clean_error(parse) -> None:
    try:
        result = parse()
    except LabelsError as error:
        message = str(error)
        assert message and "\n" not in message
        assert SECRET.lower() not in message.lower()
    else:
        assert isinstance(result, StudyLabels) and len(result) > 0
        assert set(result.labels.values()) <= {0, 1}


@PROPERTY_SETTINGS
@given(st.binary(max_size=600))
def test_any_bytes_give_labels_or_a_labels_error(raw):
    assert_labels_or_clean_error(lambda: parse_labels(raw, "labels.csv", SALT))


secret_text = st.text(max_size=12).map(lambda text: f"{SECRET}{text}")
cells = st.one_of(
    st.sampled_from(["0", "1", " 1 ", "1.0", "1e0", "yes", "", "nan", "inf", "-0", "２"]),
    secret_text)
header = st.permutations(["study_uid", "sclerosis", "extra"]).map(list)


@PROPERTY_SETTINGS
@given(header, st.lists(st.lists(cells, max_size=4), max_size=6),
       st.sampled_from([",", ";", "\t"]), st.sampled_from(["\n", "\r\n"]),
       st.sampled_from(["utf-8", "utf-8-sig"]), st.text(max_size=20))
def test_csv_ish_text_gives_labels_or_an_error_that_echoes_no_cell(
        columns, rows, delimiter, newline, encoding, noise):
    lines = [delimiter.join(columns)] + [delimiter.join(row) for row in rows]
    raw = (newline.join(lines) + newline + noise).encode(encoding, errors="replace")
    assert_labels_or_clean_error(lambda: parse_labels(raw, "labels.csv", SALT))


row_cells = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), secret_text,
                      st.datetimes(), st.sampled_from([0, 1, 0.0, 1.0, "0", "1"]))


@PROPERTY_SETTINGS
@given(header, st.lists(st.lists(row_cells, max_size=4), max_size=6))
def test_rows_of_any_cell_types_give_labels_or_an_error_that_echoes_no_cell(columns, rows):
    rows = [[f"{SECRET}-{index}" if cell is None and index == 0 else cell
             for index, cell in enumerate(row)] for row in rows]
    assert_labels_or_clean_error(lambda: _labels_from_rows([columns] + rows, "labels", SALT))


printable_secret = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=12).map(
    lambda text: f"{SECRET}{text}")


@settings(max_examples=25, deadline=None, database=None, derandomize=True)
@given(st.lists(st.lists(st.one_of(st.integers(-2, 2), printable_secret, st.just("=1+1")),
                         min_size=2, max_size=3), max_size=4))
def test_xlsx_of_any_cells_gives_labels_or_an_error_that_echoes_no_cell(rows):
    raw = xlsx_bytes([["study_uid", "sclerosis"]] + rows)
    assert_labels_or_clean_error(lambda: parse_labels(raw, "labels.xlsx", SALT))


@pytest.mark.parametrize("raw", [b"study_uid,sclerosis\n1.2.3\x00,1\n",
                                 b"study_uid,sclerosis\n" + b"1" * 200_000 + b",1\n"])
def test_csv_the_csv_module_cannot_read_is_a_labels_error_naming_the_line(raw):
    with pytest.raises(LabelsError, match=r"labels.csv line 2 is not valid CSV"):
        parse_labels(raw, "labels.csv", SALT)
