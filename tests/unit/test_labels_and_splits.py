"""DicomExampleGen's pure parts: the labels file (CSV / XLSX, hashed, errors that name the row
but never echo a value) and the stratified, order-independent study splits."""
from __future__ import annotations

import collections

import pytest

from components import features
from components.dicom_example_gen import splits
from components.dicom.labels import LabelsError, read_labels
from support.tables import write_csv

SALT = "test-salt"


# ------------------------------------------------------------------ labels file

def test_labels_csv_and_xlsx_agree_and_hold_only_hashes(tmp_path):
    from openpyxl import Workbook

    rows = [["study_uid", "sclerosis"], ["1.2.3.4", 1], ["1.2.3.5", "0"], [], ["1.2.3.6", 1]]
    csv_labels = read_labels(str(write_csv(tmp_path / "l.csv", rows)), SALT)
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    workbook.active.append(["1.2.3.4", 1.0])  # a duplicate with the same label is fine
    workbook.save(tmp_path / "l.xlsx")
    xlsx_labels = read_labels(str(tmp_path / "l.xlsx"), SALT)
    assert csv_labels == xlsx_labels
    assert csv_labels.labels == {features.hash_uid("1.2.3.4", SALT): 1,
                                 features.hash_uid("1.2.3.5", SALT): 0,
                                 features.hash_uid("1.2.3.6", SALT): 1}


@pytest.mark.parametrize("rows, message", [
    ([["study", "label"], ["1.2.3", 1]], "lacks column(s) study_uid, sclerosis"),
    ([["study_uid"], ["1.2.3"]], "lacks column(s) sclerosis"),
    ([["study_uid", "sclerosis"], ["1.2.3", 2]], "row 2: 'sclerosis' must be 0 or 1, got another number"),
    ([["study_uid", "sclerosis"], ["1.2.3", "yes"]], "row 2: 'sclerosis' must be 0 or 1, got text"),
    ([["study_uid", "sclerosis"], ["1.2.3", ""]], "got an empty cell"),
    ([["study_uid", "sclerosis"], ["", 1]], "row 2: empty 'study_uid'"),
    ([["study_uid", "sclerosis"], ["1.2.3", 1], ["1.2.3", 0]], "row 3: study listed twice"),
    ([["study_uid", "sclerosis"]], "has a header but no study rows"),
    ([], "is empty"),
])
def test_malformed_labels_are_named_without_echoing_values(tmp_path, rows, message):
    path = write_csv(tmp_path / "labels.csv", rows)
    with pytest.raises(LabelsError, match="labels file labels.csv") as raised:
        read_labels(str(path), SALT)
    assert message in str(raised.value)
    assert "1.2.3" not in str(raised.value)


def test_missing_or_binary_labels_file(tmp_path):
    with pytest.raises(LabelsError, match="does not exist"):
        read_labels(str(tmp_path / "absent.csv"), SALT)
    (tmp_path / "x.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(LabelsError, match="neither UTF-8 CSV nor XLSX"):
        read_labels(str(tmp_path / "x.csv"), SALT)
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(LabelsError, match="not a readable XLSX workbook"):
        read_labels(str(tmp_path / "broken.xlsx"), SALT)


# ------------------------------------------------------------------ study splits

def _studies(count: int, label: int) -> dict[str, int]:
    return {features.hash_uid(f"1.2.{label}.{i}", SALT): label for i in range(count)}


def test_splits_are_stratified_counted_in_studies_and_order_independent():
    labels = {**_studies(10, 1), **_studies(20, 0)}
    ratios = {"train": 0.7, "eval": 0.2, "test": 0.1}
    assignment = splits.assign_splits(labels, ratios)
    per_class = collections.Counter((labels[s], split) for s, split in assignment.items())
    assert per_class == {(1, "train"): 7, (1, "eval"): 2, (1, "test"): 1,
                         (0, "train"): 14, (0, "eval"): 4, (0, "test"): 2}
    shuffled = dict(reversed(list(labels.items())))
    assert splits.assign_splits(shuffled, ratios) == assignment


def test_every_class_reaches_eval_when_it_has_two_studies():
    labels = {**_studies(2, 1), **_studies(9, 0)}
    assignment = splits.assign_splits(labels, {"train": 0.9, "eval": 0.1})
    assert {labels[s] for s, split in assignment.items() if split == "eval"} == {0, 1}
    assert splits.split_counts(1, {"train": 0.8, "eval": 0.2}) == {"train": 1, "eval": 0}


def test_only_studies_with_usable_slices_get_a_split_and_an_empty_split_is_an_error():
    labels = {**_studies(3, 1), **_studies(3, 0)}
    usable = sorted(labels)[:4]  # two studies gave no usable slice (all files rejected)
    ratios = {"train": 0.7, "eval": 0.3}
    assignment = splits.assign_usable_studies(labels, usable, ratios)
    assert set(assignment) == set(usable)
    assert set(assignment.values()) == {"train", "eval"}
    splits.require_every_split(assignment, ratios, labelled_studies=6)
    lonely = splits.assign_usable_studies(labels, usable[:1], ratios)
    with pytest.raises(splits.EmptySplitError) as raised:
        splits.require_every_split(lonely, ratios, labelled_studies=6)
    assert str(raised.value).startswith("split eval got no study: studies per split "
                                        "train 1, eval 0; only 1 of 6 labelled studies")


def test_split_ratios_round_trip_and_validation():
    text = splits.ratios_to_json([("eval", 1), ("train", 3)])
    assert text == '{"train": 0.75, "eval": 0.25}'  # canonical order: one cache key
    assert splits.ratios_from_json(text) == {"train": 0.75, "eval": 0.25}
    with pytest.raises(ValueError, match="JSON object"):
        splits.ratios_from_json("[0.8, 0.2]")
    with pytest.raises(ValueError, match="unknown split"):
        splits.validate_ratios({"train": 0.8, "validation": 0.2})
    with pytest.raises(ValueError, match="positive 'eval'"):
        splits.validate_ratios({"train": 1.0})
