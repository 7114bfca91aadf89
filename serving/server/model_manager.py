"""Which model versions are loaded, and which one answers a request: TF Serving's ServerCore.

Rules kept from TF Serving (server_core.cc, file_system_storage_path_source.cc,
availability_preserving_policy.cc) so the rollout tool behaves the same against either server:
- versions are the numeric sub-folders of `base_path`; the policy (latest N / all / specific)
  picks the aspired ones. A folder without saved_model.pb is still being written: ignored.
- new versions load (and warm up) before they serve; versions leaving the policy are unloaded
  only once an aspired version is AVAILABLE (availability preserving), never the other way.
- ReloadConfig validates version labels *before* touching models: a label may only point at an
  AVAILABLE version (FAILED_PRECONDITION otherwise) unless
  `allow_version_labels_for_unavailable_models`, which admits new labels (not moves of
  existing ones) to unavailable versions. As in TF Serving, this applies to the first config
  too, so a config with labels needs that flag at startup.
- after a reload, only models new to the config are awaited; new versions of existing models
  load in the background (poll GetModelStatus until AVAILABLE before labelling them).
- a failed load is retried (LoaderHarness + util/retrier.cc): `max_num_load_retries` more
  attempts (default 5), `load_retry_interval_s` apart (default 60 s), so a version whose
  saved_model.pb arrived before its variables/ (rsync order) loads once the copy completes.
  The version stays LOADING meanwhile; after the last attempt it is END with that attempt's
  error. Retries stop early when the version leaves the policy or the server stops.
  Our extension: a version that ended in error is tried again (with retries) when its
  saved_model.pb changes on disk; TF Serving needs the version re-aspired for that (which
  retries it here too: leaving the policy forgets the failure).
- request resolution: version > version_label > latest available; unknown model or version ->
  NOT_FOUND, unknown label -> INVALID_ARGUMENT ("Unrecognized servable version label").
- GetModelStatus (get_model_status_impl.cc) answers one version when the spec names one, else
  every version it has seen, newest first (ServableStateMonitor's VersionMap is ordered by
  std::greater); a version_label is ignored there, as TF Serving ignores it.
"""
from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import grpc
import tensorflow as tf

from serving.api.errors import (ServingError, failed_precondition, invalid_argument, not_found,
                                status_code_from_value)
from serving.api.model_config import (ModelConfigError, ModelServerConfig, aspired_versions,
                                  validate_model_config)
from serving.api.protos import ModelVersionState, model_pb2
from serving.server.metrics import ServerMetrics
from serving.server.batching import BatchLimits
from serving.server.servable import Servable, is_complete_version_dir, servable_loader

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadRetries:
    """TF Serving's --max_num_load_retries and --load_retry_interval_micros (in seconds)."""
    max_num_load_retries: int = 5
    interval_s: float = 60.0

    @classmethod
    def from_flags(cls, max_num_load_retries: int, load_retry_interval_micros: int
                   ) -> "LoadRetries":
        return cls(max(0, max_num_load_retries), max(0.0, load_retry_interval_micros / 1e6))


@dataclass
class VersionStatus:
    """ModelVersionStatus of one version: state plus the error that ended it, if any."""
    state: int
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def scan_versions(base_path: str | Path) -> dict[int, Path]:
    """Complete version folders under base_path (numeric names, saved_model.pb present)."""
    base = Path(base_path)
    if not base.is_dir():
        return {}
    found = {}
    for child in base.iterdir():
        if child.name.isdigit() and child.is_dir() and is_complete_version_dir(child):
            found[int(child.name)] = child
    return found


class ModelManager:
    """Thread-safe registry of loaded versions; request threads only take a short lock."""

    def __init__(self, *, allow_version_labels_for_unavailable_models: bool = False,
                 loader: Callable[[str, int, Path], Servable] | None = None,
                 load_retries: LoadRetries = LoadRetries(),
                 metrics: ServerMetrics | None = None):
        self.allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self.metrics = metrics if metrics is not None else ServerMetrics()  # this server's
        self._loader = self.metrics.counted_loader(loader or servable_loader(BatchLimits()))
        self.load_retries = load_retries
        self._retry_wakeup = threading.Event()  # config changed or stopping: re-check retries
        self._stopping = threading.Event()
        self._config: ModelServerConfig | None = None
        self._labels: dict[str, dict[str, int]] | None = None
        self._serving: dict[str, dict[int, Servable]] = {}
        self._states: dict[str, dict[int, VersionStatus]] = {}
        self._failed_loads: dict[tuple[str, int], float] = {}  # -> saved_model.pb mtime
        self._lock = threading.Lock()            # guards the dicts above, held briefly
        self._config_lock = threading.Lock()     # one ReloadConfig at a time
        self._reconcile_lock = threading.Lock()  # one loader pass at a time
        self.config_changed = threading.Event()  # wakes the poller to reconcile the rest

    # ------------------------------------------------------------------ config
    @property
    def config(self) -> ModelServerConfig | None:
        return self._config

    def reload_config(self, config: ModelServerConfig) -> None:
        """TF Serving's ServerCore::ReloadConfig; raises ServingError with its status codes."""
        if config.WhichOneof("config") is None:
            LOG.info("Taking no action for empty config.")  # as TF Serving (e.g. a truncated
            return                                           # file read mid-write)
        with self._config_lock:
            try:
                validate_model_config(config, "ModelServerConfig")
            except ModelConfigError as error:
                raise invalid_argument(str(error)) from None
            first = self._config is None
            labels = self._validated_labels(config)
            old_names = set() if first else self.model_names()
            with self._lock:
                self._config = config
                self._labels = labels
            names = {entry.name for entry in config.model_config_list.config}
            self.config_changed.set()
            self._retry_wakeup.set()  # a load being retried may have left the policy
            self.reconcile(models=names if first else (names - old_names) | (old_names - names))
            if first:
                self._raise_if_unavailable(names, initial=True)
            else:
                self._raise_if_unavailable(names - old_names, initial=False)

    def model_names(self) -> set[str]:
        config = self._config
        return set() if config is None else {e.name for e in config.model_config_list.config}

    def _validated_labels(self, config: ModelServerConfig) -> dict[str, dict[str, int]]:
        new_map: dict[str, dict[str, int]] = {}
        with self._lock:
            for entry in config.model_config_list.config:
                states = self._states.get(entry.name, {})
                current = (self._labels or {}).get(entry.name, {})
                for label, version in entry.version_labels.items():
                    moves_existing = label in current and current[label] != version
                    allowed = self.allow_unavailable_labels and not moves_existing
                    status = states.get(version)
                    available = status is not None and status.state == ModelVersionState.AVAILABLE
                    if not allowed and not available:
                        raise failed_precondition(
                            f"Request to assign label to version {version} of model "
                            f"{entry.name}, which is not currently available for inference")
                    new_map.setdefault(entry.name, {})[label] = version
        return new_map

    def _raise_if_unavailable(self, names: Iterable[str], *, initial: bool) -> None:
        """Like WaitUntilModelsAvailable: a model with versions on disk that did not load."""
        failures = []
        for name in sorted(names):
            entry = self._entry(name)
            if entry is None or not scan_versions(entry.base_path) or self._serving.get(name):
                continue  # nothing on disk yet is not an error: TF Serving keeps polling
            errors = [f"{{name: {name} version: {v}}} due to error: {s.error_message}"
                      for v, s in sorted(self._states.get(name, {}).items()) if s.error_message]
            failures.append(", ".join(errors) or f"{{name: {name}}}")
        if failures:
            raise ServingError(grpc.StatusCode.UNKNOWN,
                               f"{len(failures)} model(s) did not become available: "
                               f"{{{', '.join(failures)}}}" + (" at startup" if initial else ""))

    def _entry(self, name: str):
        config = self._config
        if config is not None:
            for entry in config.model_config_list.config:
                if entry.name == name:
                    return entry
        return None

    # ------------------------------------------------------------------ versions
    def reconcile(self, models: Iterable[str] | None = None) -> None:
        """One pass of source + aspired-versions manager: load new versions, then unload the
        versions no longer aspired, and drop models that left the config."""
        with self._reconcile_lock:
            wanted = self.model_names()
            for name in sorted(wanted if models is None else set(models)):
                if name in wanted:
                    self._reconcile_model(name)
                else:
                    self._unload(name, list(self._serving.get(name, {})))

    def _reconcile_model(self, name: str) -> None:
        entry = self._entry(name)
        if entry is None:
            return
        on_disk = scan_versions(entry.base_path)
        aspired = aspired_versions(entry, on_disk)
        if not on_disk:
            LOG.warning("No versions of servable %s found under base path %s", name,
                        entry.base_path)
        for key in [k for k in self._failed_loads if k[0] == name and k[1] not in aspired]:
            del self._failed_loads[key]  # re-aspired later: a new attempt, as TF Serving
        for version in sorted(aspired - set(self._serving.get(name, {})), reverse=True):
            self._load(name, version, on_disk[version])
        serving_now = set(self._serving.get(name, {}))
        unaspired = serving_now - aspired
        if unaspired and (serving_now & aspired):  # availability preserving
            self._unload(name, sorted(unaspired))

    def _load(self, name: str, version: int, path: Path) -> None:
        """Load with TF Serving's retries; LOADING until it serves or the last attempt failed."""
        if self._failed_loads.get((name, version)) == _saved_model_mtime(path):
            return  # failed before and unchanged on disk: do not retry in a loop
        self._set_state(name, version, VersionStatus(ModelVersionState.LOADING))
        LOG.info("Loading servable version {name: %s version: %d}", name, version)
        servable, failure, marker = self._load_with_retries(name, version, path)
        if servable is None:
            self._end_failed(name, version, marker, failure)
            return
        with self._lock:
            self._serving.setdefault(name, {})[version] = servable
            self._states.setdefault(name, {})[version] = VersionStatus(ModelVersionState.AVAILABLE)
        self._failed_loads.pop((name, version), None)
        LOG.info("Successfully loaded servable version {name: %s version: %d}", name, version)

    def _load_with_retries(self, name: str, version: int, path: Path
                           ) -> tuple[Servable | None, VersionStatus | None, float]:
        """util/retrier.cc's Retry around one load: (servable, None, _) on success, else
        (None, the last attempt's failure, saved_model.pb's mtime at that attempt)."""
        description = f"Loading servable: {{name: {name} version: {version}}}"
        retries = self.load_retries.max_num_load_retries
        for attempt in range(retries + 1):
            if attempt:
                if not self._wait_to_retry(name, version):
                    LOG.info("Retrying of %s was cancelled.", description)
                    return None, failure, marker
                LOG.info("Retrying of %s retry: %d", description, attempt)
            marker = _saved_model_mtime(path)  # of the files this attempt reads
            try:
                return self._loader(name, version, path), None, marker
            except Exception as error:  # a broken SavedModel must not take the server down
                failure = _load_failure(error)
                LOG.error("%s failed: %s", description, failure.error_message)
        LOG.info("Retrying of %s exhausted max_num_load_retries: %d", description, retries)
        return None, failure, marker

    def _end_failed(self, name: str, version: int, marker: float,
                    failure: VersionStatus) -> None:
        """END with the last attempt's error (never an earlier attempt's)."""
        self._failed_loads[(name, version)] = marker
        self._set_state(name, version, failure)

    def _wait_to_retry(self, name: str, version: int) -> bool:
        """Sleep the retry interval; False when the retry is cancelled meanwhile (server
        stopping, or the version no longer aspired: TF Serving's cancel_load_retry)."""
        deadline = time.monotonic() + self.load_retries.interval_s
        while True:
            if self._stopping.is_set() or not self._still_aspired(name, version):
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            self._retry_wakeup.wait(left)
            self._retry_wakeup.clear()

    def _still_aspired(self, name: str, version: int) -> bool:
        entry = self._entry(name)
        if entry is None:
            return False
        return version in aspired_versions(entry, scan_versions(entry.base_path))

    def _unload(self, name: str, versions: list[int]) -> None:
        for version in versions:
            self._set_state(name, version, VersionStatus(ModelVersionState.UNLOADING))
            with self._lock:
                self._serving.get(name, {}).pop(version, None)  # in-flight calls keep a ref
                self._states[name][version] = VersionStatus(ModelVersionState.END)
            LOG.info("Unloaded servable version {name: %s version: %d}", name, version)
        if versions:
            gc.collect()  # loaded SavedModels hold reference cycles: free their memory now

    def _set_state(self, name: str, version: int, status: VersionStatus) -> None:
        with self._lock:
            self._states.setdefault(name, {})[version] = status

    # ------------------------------------------------------------------ requests
    def resolve(self, model_spec: model_pb2.ModelSpec) -> Servable:
        """The servable a request's ModelSpec names (ServerCore::GetServableHandle)."""
        if not model_spec.name:
            raise invalid_argument("ModelSpec has no name specified.")
        version = self._requested_version(model_spec)
        with self._lock:
            versions = self._serving.get(model_spec.name, {})
            if version is None:
                if versions:
                    return versions[max(versions)]
                raise not_found(f"Servable not found for request: Latest({model_spec.name})")
            if version in versions:
                return versions[version]
        raise not_found(f"Servable not found for request: Specific({model_spec.name}, {version})")

    def _requested_version(self, model_spec: model_pb2.ModelSpec) -> int | None:
        choice = model_spec.WhichOneof("version_choice")
        if choice == "version":
            return model_spec.version.value
        if choice == "version_label":
            return self.version_for_label(model_spec.name, model_spec.version_label)
        return None

    def version_for_label(self, model_name: str, label: str) -> int:
        labels = self._labels
        if labels is None:
            raise ServingError(grpc.StatusCode.UNAVAILABLE, "Model labels does not init yet.")
        version = labels.get(model_name, {}).get(label)
        if version is None:
            raise invalid_argument(f"Unrecognized servable version label: {label}")
        return version

    def version_statuses(self, model_spec: model_pb2.ModelSpec) -> list[tuple[int, VersionStatus]]:
        """GetModelStatus: the version the spec names, else every version seen, newest first;
        a version_label is ignored (get_model_status_impl.cc only looks at `version`)."""
        name = model_spec.name
        with self._lock:
            states = dict(self._states.get(name, {}))
        if model_spec.WhichOneof("version_choice") == "version":
            version = model_spec.version.value
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return [(version, states[version])]
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        return sorted(states.items(), reverse=True)

    def available_versions(self, model_name: str) -> list[int]:
        with self._lock:
            return sorted(self._serving.get(model_name, {}))

    def labels(self, model_name: str) -> dict[str, int]:
        return dict((self._labels or {}).get(model_name, {}))

    def cancel_load_retries(self) -> None:
        """Stop waiting to retry failed loads (the server is stopping); idempotent."""
        self._stopping.set()
        self._retry_wakeup.set()

    def unload_all(self) -> None:
        self.cancel_load_retries()
        with self._reconcile_lock:
            for name in list(self._serving):
                self._unload(name, list(self._serving.get(name, {})))


def _load_failure(error: Exception) -> VersionStatus:
    """END status of a failed attempt: a TensorFlow error keeps its code (NOT_FOUND for a
    missing variables file...), anything else is UNKNOWN; the whole message, as TF Serving."""
    if isinstance(error, tf.errors.OpError):
        return VersionStatus(ModelVersionState.END, status_code_from_value(error.error_code),
                             error.message)
    return VersionStatus(ModelVersionState.END, grpc.StatusCode.UNKNOWN,
                         f"{type(error).__name__}: {error}")


def _saved_model_mtime(path: Path) -> float:
    try:
        return max((path / f).stat().st_mtime for f in ("saved_model.pb", "saved_model.pbtxt")
                   if (path / f).exists())
    except ValueError:
        return 0.0
