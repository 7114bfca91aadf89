"""Where an upload's time goes, told to the browser in a `Server-Timing` header (W3C Server
Timing: the browser's developer tools show it beside the request; bench/web.py reads it).

Phases of POST /api/predict: `upload` (the multipart body received and parsed, zips opened),
`preprocess` (files -> tensors: zip members inflated, DICOM decoded, the shared preprocessing),
`model` (every call to the model server: metadata, labels, Predict), `render` (PNG thumbnails
and the JSON answer). POST /api/explain: `upload` (body received, JSON parsed), `preprocess`
(thumbnails decoded), `model` (metadata, `serving_explain`), `render` (heat map layers and the
JSON answer). Durations only: nothing about the files or the patient.
"""
from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator


class PhaseTimer:
    """Wall time per named phase, summed over every time the phase is entered."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    def server_timing(self) -> str:
        """`upload;dur=12.3, preprocess;dur=...` (milliseconds)."""
        return ", ".join(f"{name};dur={seconds * 1000:.1f}"
                         for name, seconds in self.seconds.items())
