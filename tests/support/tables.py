"""Small tabular files the tests write (labels files, mostly)."""
from __future__ import annotations

import csv
from pathlib import Path


def write_csv(path: Path, rows: list[list[object]]) -> Path:
    """Rows as given, no header logic: malformed files are written as easily as good ones."""
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path
