"""Per-component progress lines for long local runs.

LocalDagRunner announces each component at INFO level through absl. We listen for exactly those
two messages and print a short line with the elapsed time, while the rest of TFX's INFO chatter
(artifact URIs, exec properties) stays below the console's WARNING level.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from typing import Iterator, TextIO

from absl import logging as absl_logging

# Known-harmless warnings that would bury the progress lines on every run.
_HARMLESS = ("ArtifactQuery.property_predicate is not supported",
             "No semi_persistent_directory found", "Discarding unparseable args",
             "is deprecated and will be removed in a future version")
# Libraries that log those through loggers of their own.
_QUIETED_LOGGERS = ("apache_beam.runners.portability.local_job_service", "tensorflow")

_EVENTS = {"Component %s is running.": "running", "Component %s is finished.": "done",
           "Skipping component %s.": "skipped", "A cached execution %d is used.": "cached"}


def _not_harmless(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _HARMLESS)


class _ProgressHandler(logging.Handler):
    def __init__(self, total: int, stream: TextIO):
        super().__init__(logging.INFO)
        self.total, self.stream, self.done = total, stream, 0
        self.cached = False
        self.started: dict[str, float] = {}

    def emit(self, record: logging.LogRecord) -> None:
        event = _EVENTS.get(record.msg) if isinstance(record.msg, str) else None
        if event is None or not record.args:
            return
        if event == "cached":  # the launcher's note about the component that is running
            self.cached = True
            return
        node_id = str(record.args[0])
        now = time.monotonic()
        if event == "running":
            self.started[node_id], self.cached = now, False
            line = f"[{self.done + 1}/{self.total}] {node_id} ..."
        else:
            self.done += 1
            if event == "done" and self.cached:
                event = "done (cached: same inputs and settings as an earlier run)"
            elif event == "done":
                event = f"done ({now - self.started.get(node_id, now):.1f} s)"
            line = f"[{self.done}/{self.total}] {node_id} {event}"
        print(line, file=self.stream, flush=True)


@contextlib.contextmanager
def component_progress(total: int, stream: TextIO | None = None) -> Iterator[None]:
    """Prints progress lines (to sys.stdout as it is at the call, not at import); absl's own
    records reach the console from WARNING up only."""
    absl_logger = logging.getLogger("absl")
    # Through absl's verbosity, not Logger.setLevel: TensorFlow's SavedModel export sets absl's
    # verbosity to FATAL and back, which would undo a level set on the logger directly.
    saved_verbosity, saved_propagate = absl_logging.get_verbosity(), absl_logger.propagate
    progress = _ProgressHandler(total, stream or sys.stdout)
    warnings_only = logging.StreamHandler(sys.stderr)
    warnings_only.setLevel(logging.WARNING)
    warnings_only.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(message)s"))
    warnings_only.addFilter(_not_harmless)
    for name in _QUIETED_LOGGERS:
        logging.getLogger(name).addFilter(_not_harmless)
    absl_logging.set_verbosity(absl_logging.INFO)
    absl_logger.propagate = False  # keep INFO records away from the root logger's handlers
    absl_logger.addHandler(progress)
    absl_logger.addHandler(warnings_only)
    try:
        yield
    finally:
        absl_logger.removeHandler(progress)
        absl_logger.removeHandler(warnings_only)
        for name in _QUIETED_LOGGERS:
            logging.getLogger(name).removeFilter(_not_harmless)
        absl_logging.set_verbosity(saved_verbosity)
        absl_logger.propagate = saved_propagate
