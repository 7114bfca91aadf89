"""The rollout's own state, in a small JSON file beside models.config.

models.config is the source of truth for versions and labels: it is what TF Serving (or the
local server) reads after a restart. What TF Serving has no field for lives here, in
`<models.config>.rollout.json`: the canary's traffic weight, the salt that makes the split
sticky per study, what the shadow analysis has seen, the stepped release's plan and the step
it reached (so a crashed tool resumes there), and a short history of the rollout.

The file is replaced atomically (temp file + rename) so a router re-reading it never parses
half of it, and every read-modify-write happens under `rollout_lock`, an advisory lock on
`<models.config>.rollout.lock` that also keeps two rollout commands from interleaving their
config changes.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

STATE_SUFFIX = ".rollout.json"
LOCK_SUFFIX = ".rollout.lock"
STATE_FORMAT = 1
HISTORY_LIMIT = 50


class RolloutStateError(ValueError):
    """The state file exists but cannot be used; the message names the file and the field."""


@dataclass
class ModelRollout:
    """One model's rollout. `canary_version is None` means no canary is running."""
    stable_version: int | None = None
    canary_version: int | None = None
    weight: float = 0.0          # share of studies routed to the canary label, in [0, 1]
    salt: str = ""               # per rollout, so different rollouts expose different studies
    started_at: str | None = None
    analysis: dict | None = None  # rollout_analysis.AnalysisReport.to_dict(), partial or final
    steps: list[float] = field(default_factory=list)  # the stepped release's weights
    step: int = 0                # index into `steps` of the step running (or to run next)
    history: list[dict] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.canary_version is not None

    def add_event(self, event: str, **details) -> None:
        self.history.append({"at": utc_now(), "event": event, **details})
        del self.history[:-HISTORY_LIMIT]


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def state_path_for(model_config_path: str | os.PathLike) -> Path:
    return Path(f"{os.fspath(model_config_path)}{STATE_SUFFIX}")


def read_states(path: str | os.PathLike) -> dict[str, ModelRollout]:
    """All models' rollouts in the file; an absent file means no rollout yet."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise RolloutStateError(f"{path}: cannot read rollout state: {error.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise RolloutStateError(f"{path}: not JSON ({error.msg} at line {error.lineno})") from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise RolloutStateError(f"{path}: field 'format' must be {STATE_FORMAT}")
    models = document.get("models")
    if not isinstance(models, dict):
        raise RolloutStateError(f"{path}: field 'models' must be an object")
    return {name: _model_from_dict(value, f"{path}: models.{name}")
            for name, value in models.items()}


def read_model_state(path: str | os.PathLike, model_name: str) -> ModelRollout:
    return read_states(path).get(model_name, ModelRollout())


def write_states(path: str | os.PathLike, states: dict[str, ModelRollout]) -> None:
    """Replace the file atomically: readers see the old document or the new one, whole."""
    path = Path(path)
    document = {"format": STATE_FORMAT,
                "models": {name: asdict(state) for name, state in sorted(states.items())}}
    handle, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2, allow_nan=False)
            stream.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def update_model_state(model_config_path: str | os.PathLike, model_name: str,
                       change: Callable[[ModelRollout], None]) -> ModelRollout:
    """Read, change and write one model's state under the rollout lock; returns the result."""
    path = state_path_for(model_config_path)
    with rollout_lock(model_config_path):
        states = read_states(path)
        state = states.setdefault(model_name, ModelRollout())
        change(state)
        write_states(path, states)
        return state


def _model_from_dict(value: object, where: str) -> ModelRollout:
    if not isinstance(value, dict):
        raise RolloutStateError(f"{where}: must be an object")
    known = {name: value[name] for name in ModelRollout.__dataclass_fields__ if name in value}
    state = ModelRollout(**known)
    for name in ("stable_version", "canary_version"):
        version = getattr(state, name)
        if version is not None and (not isinstance(version, int) or version < 0):
            raise RolloutStateError(f"{where}.{name}: must be a version number or null")
    if isinstance(state.weight, bool) or not isinstance(state.weight, (int, float)) \
            or not 0.0 <= state.weight <= 1.0:
        raise RolloutStateError(f"{where}.weight: must be a number in [0, 1]")
    if not isinstance(state.salt, str):
        raise RolloutStateError(f"{where}.salt: must be a string")
    if not isinstance(state.steps, list) or not all(
            isinstance(w, (int, float)) and not isinstance(w, bool) and 0 <= w <= 1
            for w in state.steps):
        raise RolloutStateError(f"{where}.steps: must be a list of weights in [0, 1]")
    if isinstance(state.step, bool) or not isinstance(state.step, int) or state.step < 0:
        raise RolloutStateError(f"{where}.step: must be a step index (>= 0)")
    if not isinstance(state.history, list):
        raise RolloutStateError(f"{where}.history: must be a list")
    state.weight = float(state.weight)
    return state


# ---------------------------------------------------------------------------------- locking
_held: dict[str, tuple[int, int]] = {}  # lock path -> (fd, depth): re-entrant per process
_held_guard = threading.RLock()


@contextlib.contextmanager
def rollout_lock(model_config_path: str | os.PathLike, timeout_s: float = 120.0
                 ) -> Iterator[None]:
    """Exclusive advisory lock for one models.config, re-entrant within this process (a
    command that holds it may update the state file without deadlocking on itself)."""
    lock_path = os.fspath(model_config_path) + LOCK_SUFFIX
    with _held_guard:
        if lock_path in _held:
            fd, depth = _held[lock_path]
            _held[lock_path] = (fd, depth + 1)
        else:
            _held[lock_path] = (_acquire(lock_path, timeout_s), 1)
        try:
            yield
        finally:
            fd, depth = _held[lock_path]
            if depth > 1:
                _held[lock_path] = (fd, depth - 1)
            else:
                del _held[lock_path]
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)


def _acquire(lock_path: str, timeout_s: float) -> int:
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise TimeoutError(f"{lock_path}: another rollout command holds the lock "
                                   f"(waited {timeout_s:.0f} s)") from None
            time.sleep(0.1)
