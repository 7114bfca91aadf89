"""The study -> label files a hospital hands over, in both formats it uses (xlsx and csv).

The xlsx is written reproducibly: openpyxl stamps the current time into docProps/core.xml and
into every zip entry, so the archive is re-packed with fixed times. Same seed, same bytes.
"""
from __future__ import annotations

import csv
import io
import re
import zipfile
from pathlib import Path

LABEL_COLUMNS = ("study_uid", "sclerosis")
LABELS_CSV = "labels.csv"
LABELS_XLSX = "labels.xlsx"
_FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_FIXED_W3C_TIME = b"2000-01-01T00:00:00Z"


def write_labels(out_dir: Path, rows: list[tuple[str, int]]) -> tuple[Path, Path]:
    """Write labels.csv and labels.xlsx (same rows, same order) and return their paths."""
    csv_path, xlsx_path = out_dir / LABELS_CSV, out_dir / LABELS_XLSX
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(LABEL_COLUMNS)
        writer.writerows(rows)
    xlsx_path.write_bytes(_xlsx_bytes(rows))
    return csv_path, xlsx_path


def _xlsx_bytes(rows: list[tuple[str, int]]) -> bytes:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "labels"
    sheet.append(list(LABEL_COLUMNS))
    for study_uid, label in rows:
        sheet.append([study_uid, int(label)])
    buffer = io.BytesIO()
    workbook.save(buffer)
    return _without_timestamps(buffer.getvalue())


def _without_timestamps(archive: bytes) -> bytes:
    """Re-pack an xlsx with fixed zip entry times and fixed created/modified properties."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    target_buffer = io.BytesIO()
    with zipfile.ZipFile(target_buffer, "w", zipfile.ZIP_DEFLATED) as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*(</dcterms:)",
                              rb"\g<1>" + _FIXED_W3C_TIME + rb"\g<2>", data)
            info = zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, data)
    return target_buffer.getvalue()
