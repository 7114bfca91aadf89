"""The labels file: one row per study, `study_uid` -> `sclerosis` (0 or 1), as CSV or XLSX.

It is read once, before Beam starts, so a missing or malformed file fails the run at once
with a message naming the file, the row and the column, never the cell's value where that
could be a raw UID (patient data). Raw study UIDs are hashed (components.features.hash_uid)
as soon as they are read: nothing downstream of this module ever holds one.

Pure (no TFX or TensorFlow): ingest and `mspipe rollout analyze --labels` both read labels here.
The caller brings the filesystem: DicomExampleGen passes TFX's fileio (gs://, ...), the rollout
tool, a thin client, reads local files.
"""
from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Protocol

from components.features import hash_uid

STUDY_COLUMN = "study_uid"
LABEL_COLUMN = "sclerosis"
REQUIRED_COLUMNS = (STUDY_COLUMN, LABEL_COLUMN)
LABEL_VALUES = (0, 1)
_XLSX_MAGIC = b"PK\x03\x04"  # XLSX is a zip archive
_FORMULA_HELP = ("a formula without a cached value (the workbook was saved without "
                 "calculating it): open and save it in a spreadsheet program, or enter the value")


class LabelsError(ValueError):
    """The labels file is missing or malformed; the message names the file and the problem."""


@dataclass(frozen=True)
class StudyLabels:
    """Study labels keyed by salted study hash (the `study_id` feature), never by raw UID."""

    labels: dict[str, int]

    def __len__(self) -> int:
        return len(self.labels)

    def count(self, label: int) -> int:
        return sum(1 for value in self.labels.values() if value == label)


class FileSystem(Protocol):
    """What the reader needs of a filesystem: os.path-like checks and a binary open."""

    def exists(self, path: str) -> bool: ...

    def isdir(self, path: str) -> bool: ...

    def open(self, path: str, mode: str): ...


class LocalFileSystem:
    """The local disk, for thin clients that must not import TFX."""

    exists = staticmethod(os.path.exists)
    isdir = staticmethod(os.path.isdir)
    open = staticmethod(open)


def read_labels(path: str, salt: str, filesystem: FileSystem = LocalFileSystem()) -> StudyLabels:
    """Reads and validates the labels file; raises LabelsError naming what is wrong."""
    raw = _read_bytes(path, filesystem)
    name = os.path.basename(path)
    return parse_labels(raw, name, salt)


def parse_labels(raw: bytes, name: str, salt: str) -> StudyLabels:
    """The labels in a file's bytes, CSV or XLSX by content; `name` is only for messages."""
    rows = _xlsx_rows(raw, name) if raw.startswith(_XLSX_MAGIC) else _csv_rows(raw, name)
    return _labels_from_rows(rows, name, salt)


def _read_bytes(path: str, filesystem: FileSystem) -> bytes:
    if not path:
        raise LabelsError("no labels file given (labels_path is empty)")
    if not filesystem.exists(path):
        raise LabelsError(f"labels file {path} does not exist")
    if filesystem.isdir(path):
        raise LabelsError(f"labels file {path} is a directory, expected a .csv or .xlsx file")
    with filesystem.open(path, "rb") as handle:
        return handle.read()


def _csv_rows(raw: bytes, name: str) -> Iterator[list[object]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise LabelsError(
            f"labels file {name} is neither UTF-8 CSV nor XLSX (byte {error.start} is not UTF-8)"
        ) from None
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        yield from reader
    except csv.Error as error:  # a NUL byte, an oversized field, a stray quote (strict dialect)
        cause = str(error) if "'" not in str(error) and '"' not in str(error) else "malformed"
        raise LabelsError(f"labels file {name} line {reader.line_num} is not valid CSV "
                          f"({cause})") from None


class _FormulaWithoutValue:
    """An XLSX cell holding a formula whose result was never saved (a file written by a script,
    not recalculated by a spreadsheet program): its value is unknown, not empty."""

    def __str__(self) -> str:
        return ""


FORMULA_WITHOUT_VALUE = _FormulaWithoutValue()


def _xlsx_rows(raw: bytes, name: str) -> Iterator[list[object]]:
    """Cached values (what a spreadsheet shows); a formula without one becomes
    FORMULA_WITHOUT_VALUE, read from a second, formulas-only view of the same sheet."""
    import openpyxl  # only XLSX users pay for the import

    try:
        values = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=True)
        formulas = openpyxl.load_workbook(io.BytesIO(raw), read_only=True, data_only=False)
    except Exception as error:  # openpyxl raises many types for a damaged archive
        raise LabelsError(f"labels file {name} is not a readable XLSX workbook "
                          f"({type(error).__name__})") from None
    try:
        rows = zip(values.worksheets[0].iter_rows(values_only=True),
                   formulas.worksheets[0].iter_rows(values_only=True))
        for value_row, formula_row in rows:
            yield [FORMULA_WITHOUT_VALUE if value is None and _is_formula(formula) else value
                   for value, formula in zip(value_row, formula_row)]
    finally:
        values.close()
        formulas.close()


def _is_formula(cell: object) -> bool:
    return (isinstance(cell, str) and cell.startswith("=")) or \
        type(cell).__name__ in ("ArrayFormula", "DataTableFormula")


def _labels_from_rows(rows: Iterable[list[object]], name: str, salt: str) -> StudyLabels:
    """Header row first; blank rows are skipped; row numbers in errors are 1-based."""
    rows_iter = iter(enumerate(rows, start=1))
    study_col, label_col = _header_columns(rows_iter, name)
    labels: dict[str, int] = {}
    for row_number, row in rows_iter:
        if _is_blank(row):
            continue
        uid = _cell_text(row, study_col)
        if _cell(row, study_col) is FORMULA_WITHOUT_VALUE:
            raise LabelsError(f"labels file {name} row {row_number}: '{STUDY_COLUMN}' is "
                              f"{_FORMULA_HELP}")
        if not uid:
            raise LabelsError(f"labels file {name} row {row_number}: empty '{STUDY_COLUMN}'")
        label = _parse_label(_cell(row, label_col), name, row_number)
        study_id = hash_uid(uid, salt)
        if labels.setdefault(study_id, label) != label:
            raise LabelsError(f"labels file {name} row {row_number}: study listed twice with "
                              f"different '{LABEL_COLUMN}' values")
    if not labels:
        raise LabelsError(f"labels file {name} has a header but no study rows")
    return StudyLabels(labels)


def _header_columns(rows_iter: Iterator[tuple[int, list[object]]], name: str) -> tuple[int, int]:
    for _, row in rows_iter:
        if _is_blank(row):
            continue
        header = [str(cell).strip().lower() if cell is not None else "" for cell in row]
        missing = [column for column in REQUIRED_COLUMNS if column not in header]
        if missing:  # the header cells are not echoed: a file without header starts with a UID
            raise LabelsError(f"labels file {name} lacks column(s) {', '.join(missing)} in its "
                              f"header (first non-blank row); expected columns "
                              f"{', '.join(REQUIRED_COLUMNS)}")
        return header.index(STUDY_COLUMN), header.index(LABEL_COLUMN)
    raise LabelsError(f"labels file {name} is empty; expected columns {', '.join(REQUIRED_COLUMNS)}")


def _parse_label(cell: object, name: str, row_number: int) -> int:
    """Accepts 0/1 as text, int or a whole float (Excel stores numbers as floats).

    The bad value itself is not echoed: a shifted column could put an ID or a name there.
    """
    if cell is FORMULA_WITHOUT_VALUE:
        raise LabelsError(f"labels file {name} row {row_number}: '{LABEL_COLUMN}' is "
                          f"{_FORMULA_HELP}")
    if isinstance(cell, bool):
        cell = int(cell)
    text = str(cell).strip() if cell is not None else ""
    try:
        value: float | None = float(text)
    except ValueError:
        value = None
    if value is None or value not in LABEL_VALUES:
        kind = "an empty cell" if not text else "text" if value is None else "another number"
        raise LabelsError(f"labels file {name} row {row_number}: '{LABEL_COLUMN}' must be 0 or 1, "
                          f"got {kind}")
    return int(value)


def _cell(row: list[object], index: int) -> object:
    return row[index] if index < len(row) else None


def _cell_text(row: list[object], index: int) -> str:
    cell = _cell(row, index)
    return "" if cell is None else str(cell).strip()


def _is_blank(row: list[object]) -> bool:
    return all(cell is None or str(cell).strip() == "" for cell in row)
