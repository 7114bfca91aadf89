"""The curated data schema (schema.pbtxt) shipped with the package."""
from __future__ import annotations

from pathlib import Path

SCHEMA_FILE = "schema.pbtxt"


def schema_path() -> str:
    """Absolute path of schema.pbtxt; ImportSchemaGen needs a file path, not a proto."""
    return str(Path(__file__).resolve().parent / SCHEMA_FILE)
