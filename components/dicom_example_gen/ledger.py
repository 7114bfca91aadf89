"""The rejects ledger: one JSON line per skipped file or frame, with a stable reason code.

Nothing that identifies a patient goes in: files are named by a salted hash of their path
relative to the data folder (the folder names are raw UIDs), studies and series by the same
salted hashes as the `study_id` / `series_id` features, so a ledger line can be joined to the
examples and, by whoever holds the salt, traced back to the file, but read by no one else.
No TensorFlow import: this module runs inside Beam workers.
"""
from __future__ import annotations

import collections
import json
import os
from dataclasses import asdict, dataclass
from typing import Iterable

from components.features import hash_uid

LEDGER_FILE_NAME = "rejects.jsonl"
COUNT_PROPERTY_PREFIX = "rejects_"   # custom property per reason: rejects_<reason> = count


@dataclass(frozen=True)
class LedgerRecord:
    """One ledger line. `frame_index` is None when the whole file was skipped."""

    reason: str
    detail: str
    scanner: str
    file_id: str
    study_id: str | None = None
    series_id: str | None = None
    frame_index: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


def file_id(relative_path: str, salt: str) -> str:
    """Salted hash of the path below the data folder, '/'-separated on every OS."""
    return hash_uid("file:" + relative_path.replace(os.sep, "/"), salt)


def read_ledger(path: str) -> list[LedgerRecord]:
    """All records of a ledger file (a directory is read as the artifact's uri)."""
    from tfx.dsl.io import fileio

    if fileio.isdir(path):
        path = os.path.join(path, LEDGER_FILE_NAME)
    with fileio.open(path, "r") as handle:
        return [LedgerRecord(**json.loads(line)) for line in handle if line.strip()]


def count_by_reason(records: Iterable[LedgerRecord]) -> dict[str, int]:
    """Reason -> count, sorted by reason so summaries print the same every time."""
    return dict(sorted(collections.Counter(record.reason for record in records).items()))
