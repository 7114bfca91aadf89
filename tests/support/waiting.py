"""Polling for a condition with a deadline, and the fast poll periods tests give servers."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

_T = TypeVar("_T")

# Servers in tests scan base paths and models.config every 0.2 s instead of TF Serving's
# seconds, so a test waits for a new version in a fraction of a second.
FAST = {"poll_seconds": 0.2, "config_poll_seconds": 0.2}


def wait_until(predicate: Callable[[], _T], what: str = "condition",
               timeout_s: float = 30.0) -> _T:
    """The predicate's first truthy value; AssertionError naming `what` at the deadline."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
