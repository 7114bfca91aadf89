"""Capture everything a run prints: fd 1/2 of this process and of Beam's worker processes,
and every Python logging record (absl included) at INFO and above, into one file. For
module-scoped fixtures, where pytest's capfd and caplog are not available; leak tests grep it."""
from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
from pathlib import Path


@contextlib.contextmanager
def capture_all_output(sink_path: Path):
    """Every byte written to fd 1/2 (this process and Beam's worker processes), every Python
    logging record (absl included) at INFO and above, like capfd + caplog for a module fixture."""
    from absl import logging as absl_logging

    records = io.StringIO()
    handler = logging.StreamHandler(records)
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    old_level, old_verbosity = root.level, absl_logging.get_verbosity()
    with open(sink_path, "w+b") as sink:
        sys.stdout.flush(), sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1), os.dup2(sink.fileno(), 2)
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        absl_logging.set_verbosity(absl_logging.INFO)
        text = io.TextIOWrapper(open(sink.fileno(), "wb", closefd=False), write_through=True)
        try:
            with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
                yield records
        finally:
            absl_logging.set_verbosity(old_verbosity)
            root.removeHandler(handler)
            root.setLevel(old_level)
            os.dup2(saved[0], 1), os.dup2(saved[1], 2)
            os.close(saved[0]), os.close(saved[1])
    with open(sink_path, "a") as sink:
        sink.write(records.getvalue())
