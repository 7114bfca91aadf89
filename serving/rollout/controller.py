"""Canary rollout of a model version over a fleet of replicas, through the TF Serving API only.

The controller talks to the server with nothing but HandleReloadConfigRequest, GetModelStatus
and GetModelMetadata, so it drives the real `tensorflow/serving` image and the local server
alike. Every change is written to models.config first (atomically) and then sent as a reload:
TF Serving re-applies its config file on every poll, and reads it again after a restart, so
the file must always say what the server should be doing. A refused reload restores the
previous file and config.

Fleet (serving/rollout/fleet.py): models.config is the one file every replica reads. Each
change is written atomically, pushed to every reachable replica (unless `push_reload` is off:
then replicas pick it up at their next `--model_config_file_poll_wait_seconds` poll), and done
only when every replica reports it (GetModelStatus / GetModelMetadata by label); a replica that
lags past `converge_timeout_s`, or fails to load, is named. Labels move only once every
replica has the version AVAILABLE, and a version unloads only once every replica answers the
labels without it, so a request sent by label to any replica never fails.

Before the candidate gets a label (so before any routed request), `start` runs the pre-flight
(serving/rollout/preflight.py): signatures compatible with stable, finite probabilities in
[0, 1] on a probe batch; a refusal unloads it again and says why.

TF Serving's label rule shapes every step: a label may only point at a loaded (AVAILABLE)
version. So `start` first loads the candidate beside the stable version (specific version
policy, labels unchanged), waits for GetModelStatus to report it AVAILABLE, and only then
labels it `canary`. `promote` and `rollback` first point *both* labels at the version that
stays, so requests sent by label never meet a missing label while the other version unloads;
routers that still send `canary` afterwards fall back to `stable` (serving/rollout/traffic.py).

Labels other than stable/canary are left alone, and their versions stay loaded.
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np

from serving.api.errors import ServingError
from serving.client.model_client import ModelClient, VersionState
from serving.rollout.fleet import Convergence, Fleet, FleetError
from serving.rollout.preflight import preflight_problems
from serving.api.model_config import (ModelConfigError, ModelServerConfig, find_model,
                                  read_model_config,
                                  set_version_labels, set_version_policy, version_policy,
                                  write_model_config)
from serving.rollout.state import (ModelRollout, read_model_state, rollout_lock,
                                   state_path_for, update_model_state)
from serving.rollout.settings import RolloutSettings

STABLE, CANARY = "stable", "canary"
MANAGED_LABELS = (STABLE, CANARY)


class RolloutError(RuntimeError):
    """A rollout step could not be done; the message says which and why."""


@dataclass
class RolloutStatus:
    """What `mspipe rollout status` shows: config, server and rollout state side by side."""
    model_name: str
    model_config: str
    versions: list[int]                    # models.config version policy (specific)
    labels: dict[str, int]                 # models.config version_labels
    version_states: dict[int, str]         # GetModelStatus: version -> state (or error text)
    served_labels: dict[str, int | str]    # label -> version the server resolves it to
    rollout: ModelRollout
    warnings: list[str] = field(default_factory=list)
    replicas: dict[str, str] = field(default_factory=dict)  # replica -> what it serves

    @property
    def canary_version(self) -> int | None:
        return self.labels.get(CANARY)

    def to_dict(self) -> dict:
        from dataclasses import asdict
        data = asdict(self)
        data["canary_version"] = self.canary_version
        return data


class RolloutController:
    """start / promote / rollback / set_weight / status for one model of one models.config."""

    def __init__(self, settings: RolloutSettings, client: ModelClient | None = None,
                 log: Callable[[str], None] = lambda message: None,
                 fleet: Fleet | None = None):
        self.settings = settings
        replicas = settings.replica_addresses
        # Metadata, pre-flight and analysis calls: any replica will do, the next on failure.
        self.client = client or ModelClient(fleet_target(replicas), settings.model_name,
                                            tls_ca=settings.tls_ca)
        self._owns_client = client is None
        self.fleet = fleet or Fleet(replicas, settings.model_name, tls_ca=settings.tls_ca,
                                    poll_interval_s=settings.poll_interval_s, log=log)
        self._owns_fleet = fleet is None
        self.log = log
        self.last_convergence: Convergence | None = None

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
        if self._owns_fleet:
            self.fleet.close()

    def __enter__(self) -> "RolloutController":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def state_path(self) -> Path:
        return state_path_for(self.settings.model_config)

    # ------------------------------------------------------------------ commands
    def start(self, version: int, weight: float = 0.1,
              probe: np.ndarray | None = None) -> RolloutStatus:
        """Load `version` beside stable on every replica, pre-flight it (on `probe`, uint8
        slices, when given), then label it canary at `weight`."""
        version, weight = int(version), _checked_weight(weight)
        with rollout_lock(self.settings.model_config):
            labels = self._labels()
            if CANARY in labels:
                raise RolloutError(f"a canary is already running (version {labels[CANARY]}); "
                                   "promote or roll it back first")
            stable = self._stable_version(labels)
            if version == stable:
                raise RolloutError(f"version {version} is already the stable version")
            self._check_on_disk(version)
            others = _other_labels(labels)
            if labels.get(STABLE) != stable:
                self._label_stable(stable, others)
            self.log(f"loading version {version} beside stable version {stable}")
            before = self.fleet.version_states(version)
            self._apply({stable, version}, {**others, STABLE: stable})
            try:
                self._wait_available(version, before)
            except RolloutError as error:
                self._abandon(version, stable, others, "start_failed", str(error))
                raise
            problems = preflight_problems(self.client, stable, version, probe)
            if problems:
                reason = "; ".join(problems)
                self._abandon(version, stable, others, "preflight_refused", reason)
                raise RolloutError(f"pre-flight refused version {version}: {reason}")
            self.log(f"pre-flight passed (signatures match stable version {stable}"
                     + (f"; {len(probe)} probe slices finite in [0, 1])" if probe is not None
                        else "; outputs not probed: no held-out data given)"))
            self.log(f"version {version} is AVAILABLE on every replica; labelling it "
                     f"'{CANARY}'")
            self._apply({stable, version}, {**others, STABLE: stable, CANARY: version})
            self._converge_labels({STABLE: stable, CANARY: version})

            def begin(state: ModelRollout) -> None:
                state.stable_version, state.canary_version, state.weight = stable, version, weight
                state.salt, state.analysis = secrets.token_hex(8), None
                state.steps, state.step = [], 0
                state.add_event("start", stable=stable, canary=version, weight=weight)
                state.started_at = state.history[-1]["at"]
            update_model_state(self.settings.model_config, self.settings.model_name, begin)
            self.log(f"canary version {version} receives {weight:.0%} of studies")
        return self.status()

    def set_weight(self, weight: float) -> RolloutStatus:
        weight = _checked_weight(weight)
        with rollout_lock(self.settings.model_config):
            if CANARY not in self._labels():
                raise RolloutError("no canary is running: nothing to weight")

            def change(state: ModelRollout) -> None:
                state.weight = weight
                state.add_event("weight", weight=weight)
            update_model_state(self.settings.model_config, self.settings.model_name, change)
        return self.status()

    def promote(self, reason: str = "") -> RolloutStatus:
        """stable -> canary's version, then unload the old stable version."""
        with rollout_lock(self.settings.model_config):
            labels = self._labels()
            if CANARY not in labels:
                raise RolloutError("no canary to promote: models.config has no "
                                   f"'{CANARY}' label for model {self.settings.model_name}")
            old, new = self._stable_version(labels), labels[CANARY]
            others = _other_labels(labels)
            self._wait_available(new, {})
            self.log(f"pointing '{STABLE}' and '{CANARY}' at version {new}")
            self._apply({old, new}, {**others, STABLE: new, CANARY: new})
            converged = self._converge_labels({STABLE: new, CANARY: new})
            self.log(f"every replica serves version {new} as '{STABLE}' "
                     f"(slowest after {converged.slowest_s():.1f} s)")
            self._end_rollout("promote", old_stable=old, stable=new, reason=reason,
                              converged_s=_rounded(converged))
            self.log(f"unloading version {old}")
            self._apply({new}, {**others, STABLE: new})
            self._converge_labels({STABLE: new})
            self._wait_unloaded([old] if old not in others.values() else [])
        return self.status()

    def rollback(self, reason: str = "") -> RolloutStatus:
        """Drop canary (first pointing it at stable), unload every version but stable's."""
        with rollout_lock(self.settings.model_config):
            labels = self._labels()
            if STABLE not in labels:
                raise RolloutError(f"no rollout to roll back: models.config has no '{STABLE}' "
                                   f"label for model {self.settings.model_name}")
            stable = labels[STABLE]
            others = _other_labels(labels)
            keep = {stable, *others.values()}
            dropped = sorted(set(self._policy_versions()) - keep)
            if CANARY not in labels and not dropped:
                raise RolloutError("no canary to roll back: models.config has no "
                                   f"'{CANARY}' label and no version besides stable {stable}")
            converged = None
            if labels.get(CANARY, stable) != stable:
                self.log(f"pointing '{CANARY}' at stable version {stable}")
                self._apply(set(self._policy_versions()) | keep,
                            {**others, STABLE: stable, CANARY: stable})
                converged = self._converge_labels({STABLE: stable, CANARY: stable})
            self._end_rollout("rollback", stable=stable, dropped=dropped, reason=reason,
                              converged_s=converged and _rounded(converged))
            self.log(f"unloading version(s) {dropped}" if dropped else "dropping the label")
            self._apply(keep, {**others, STABLE: stable})
            self._converge_labels({STABLE: stable})
            self._wait_unloaded(dropped)
        return self.status()

    def status(self) -> RolloutStatus:
        entry = self._entry()
        kind, versions = version_policy(entry)
        labels = dict(entry.version_labels)
        rollout = read_model_state(self.state_path, self.settings.model_name)
        status = RolloutStatus(self.settings.model_name, self.settings.model_config,
                               list(versions) if kind == "specific" else [], labels, {}, {},
                               rollout)
        if kind != "specific":
            status.warnings.append(f"version policy is '{kind}' (not managed by a rollout yet)")
        try:
            status.version_states = {s.version: _state_text(s) for s in self._states()}
        except ServingError as error:
            status.warnings.append(f"server {self.settings.server}: {error}")
            return status
        for label in labels:
            try:
                status.served_labels[label] = self.client.metadata(label=label).model_version
            except ServingError as error:
                status.served_labels[label] = f"{error.code.name}: {error.details}"
        status.warnings.extend(_consistency_warnings(status))
        if len(self.fleet.replicas) > 1:
            status.replicas = self._replica_views(labels)
            status.warnings.extend(f"replica {replica}: {view}" for replica, view
                                   in status.replicas.items() if not view.startswith("ok"))
        return status

    def _replica_views(self, labels: Mapping[str, int]) -> dict[str, str]:
        """Per replica: 'ok: <versions>' when it serves every label as models.config says."""
        views = {}
        for replica, client in self.fleet.clients.items():
            try:
                states = ", ".join(f"{s.version} {s.state}" for s in client.model_status())
                wrong = []
                for label, version in sorted(labels.items()):
                    try:
                        served = client.metadata(label=label).model_version
                    except ServingError as error:
                        served = error.code.name
                    if served != version:
                        wrong.append(f"{label} -> {served}")
            except ServingError as error:
                views[replica] = f"unreachable ({error.code.name})"
                continue
            views[replica] = (f"lags: answers {', '.join(wrong)}; " if wrong else "ok: ") + states
        return views

    def record_analysis(self, report: dict) -> None:
        """Store the (partial or final) analysis so `status` can show it."""
        def change(state: ModelRollout) -> None:
            state.analysis = report
        update_model_state(self.settings.model_config, self.settings.model_name, change)

    # ------------------------------------------------------------------ config changes
    def _config(self) -> ModelServerConfig:
        try:
            return read_model_config(self.settings.model_config)
        except ModelConfigError as error:
            raise RolloutError(str(error)) from None

    def _entry(self, config: ModelServerConfig | None = None):
        config = config or self._config()
        try:
            return find_model(config, self.settings.model_name)
        except KeyError:
            names = [e.name for e in config.model_config_list.config]
            raise RolloutError(f"{self.settings.model_config}: model "
                               f"{self.settings.model_name!r} is not configured (models: "
                               f"{names})") from None

    def _labels(self) -> dict[str, int]:
        return dict(self._entry().version_labels)

    def _policy_versions(self) -> tuple[int, ...]:
        kind, versions = version_policy(self._entry())
        if kind == "specific":
            return versions
        return tuple(s.version for s in self._states() if s.state == "AVAILABLE")

    def _apply(self, versions: Iterable[int], labels: Mapping[str, int]) -> None:
        """Write models.config atomically, then push it to every replica (unless the fleet
        polls); undo both if a replica refuses it. An unreachable replica is no refusal: it
        reads the file when it is back. Every labelled version stays in the policy: a label
        must point at a loaded version."""
        path = self.settings.model_config
        versions = sorted(set(versions) | set(labels.values()))
        config = self._config()
        previous = ModelServerConfig()
        previous.CopyFrom(config)
        entry = self._entry(config)
        set_version_policy(entry, versions=versions)
        set_version_labels(entry, dict(sorted(labels.items())))
        write_model_config(path, config)
        if not self.settings.push_reload:
            return
        errors = self.fleet.push(config)
        refused = {r: e for r, e in errors.items() if e.code != grpc.StatusCode.UNAVAILABLE}
        for replica, error in errors.items():
            if replica not in refused:
                self.log(f"replica {replica} is unreachable ({error.code.name}); it reads "
                         f"{path} when it is back")
        if refused:
            write_model_config(path, previous)
            self.fleet.push(previous)  # replicas keep whatever they had; the file is restored
            who = "; ".join(f"replica {r}: {e}" for r, e in refused.items())
            raise RolloutError(f"the server refused the new config (versions "
                               f"{versions}, labels {dict(labels)}): {who}; "
                               f"{path} was restored")

    def _abandon(self, version: int, stable: int, others: Mapping[str, int], event: str,
                 reason: str) -> None:
        """Unload a candidate that never got a label, and record why."""
        self.log(f"unloading version {version} again: {reason}")
        self._apply({stable}, {**others, STABLE: stable})
        update_model_state(self.settings.model_config, self.settings.model_name,
                           lambda s: s.add_event(event, version=version, reason=reason[:500]))

    def _converge_labels(self, labels: Mapping[str, int]) -> Convergence:
        try:
            self.last_convergence = self.fleet.wait_labels(labels,
                                                           self.settings.converge_timeout_s)
        except FleetError as error:
            raise RolloutError(str(error)) from None
        return self.last_convergence

    def _label_stable(self, stable: int, others: Mapping[str, int]) -> None:
        """Name the stable version before another version loads: TF Serving answers
        unlabelled requests with the newest loaded version, so callers must be able to ask
        for `stable` (routers switch to it once the state file exists) first."""
        self.log(f"labelling version {stable} '{STABLE}'")
        self._apply({stable}, {**others, STABLE: stable})
        self._converge_labels({STABLE: stable})

        def change(state: ModelRollout) -> None:
            state.stable_version = stable
            state.add_event("label_stable", stable=stable)
        update_model_state(self.settings.model_config, self.settings.model_name, change)

    def _end_rollout(self, event: str, **details) -> None:
        def change(state: ModelRollout) -> None:
            state.stable_version = details.get("stable")
            state.canary_version, state.weight = None, 0.0
            state.steps, state.step = [], 0
            state.add_event(event, **{k: v for k, v in details.items() if v not in ("", None)})
        update_model_state(self.settings.model_config, self.settings.model_name, change)

    # ------------------------------------------------------------------ server state
    def _states(self) -> list[VersionState]:
        return self.client.model_status()

    def _stable_version(self, labels: Mapping[str, int]) -> int:
        """The `stable` label; else a single specific version; else the newest AVAILABLE."""
        if STABLE in labels:
            return labels[STABLE]
        kind, versions = version_policy(self._entry())
        if kind == "specific" and len(versions) == 1:
            return versions[0]
        try:
            available = [s.version for s in self._states() if s.state == "AVAILABLE"]
        except ServingError as error:
            raise RolloutError(f"cannot tell the stable version: no '{STABLE}' label and "
                               f"GetModelStatus failed: {error}") from None
        if not available:
            raise RolloutError(f"no version of {self.settings.model_name} is AVAILABLE to "
                               "serve as the stable version")
        return max(available)

    def _check_on_disk(self, version: int) -> None:
        """Fail early when base_path is visible here and the version folder is missing (the
        server would simply never load it); a remote or container path cannot be checked."""
        base = Path(self._entry().base_path)
        if base.is_dir() and not (base / str(version)).is_dir():
            present = sorted(int(p.name) for p in base.iterdir() if p.name.isdigit())
            raise RolloutError(f"version {version} is not under the model's base_path "
                               f"(versions there: {present})")

    def _wait_available(self, version: int, before: Mapping[str, VersionState | None]
                        ) -> None:
        """Every replica has `version` AVAILABLE; a failed load (of this attempt) ends it."""
        try:
            self.last_convergence = self.fleet.wait_available(version, before,
                                                              self.settings.load_timeout_s)
        except FleetError as error:
            raise RolloutError(str(error)) from None

    def _wait_unloaded(self, versions: list[int]) -> None:
        """Wait for dropped versions to reach END; a slow unload is reported, not fatal."""
        if not versions:
            return
        try:
            self.fleet.wait_unloaded(versions, self.settings.unload_timeout_s)
        except FleetError as error:
            self.log(str(error))


def fleet_target(replicas: list[str]) -> str:
    """One gRPC target for several replicas: `ipv4:a:p,b:p` (or ipv6:), else the address."""
    if len(replicas) == 1:
        return replicas[0]
    scheme = "ipv6" if all(r.startswith("[") for r in replicas) else "ipv4"
    return f"{scheme}:{','.join(replicas)}"


def _rounded(convergence: Convergence) -> dict[str, float]:
    return {replica: round(seconds, 2) for replica, seconds in convergence.seconds.items()}


def _checked_weight(weight: float) -> float:
    weight = float(weight)
    if not 0.0 <= weight <= 1.0:
        raise RolloutError(f"weight must be within [0, 1], got {weight}")
    return weight


def _other_labels(labels: Mapping[str, int]) -> dict[str, int]:
    return {label: version for label, version in labels.items() if label not in MANAGED_LABELS}


def _state_text(state: VersionState) -> str:
    if state.error_code:
        return f"{state.state} (error: {state.error_message})"
    return state.state


def _consistency_warnings(status: RolloutStatus) -> list[str]:
    warnings = []
    for label, version in status.labels.items():
        served = status.served_labels.get(label)
        if isinstance(served, str):
            warnings.append(f"label {label} (version {version}): metadata call failed: "
                            f"{served}")
        elif served != version:
            warnings.append(f"models.config labels {label} -> {version} but the server "
                            f"answers {served} (reload pending or refused?)")
    if status.rollout.canary_version != status.canary_version:
        warnings.append(f"rollout state says canary {status.rollout.canary_version}, "
                        f"models.config says {status.canary_version}; models.config wins")
    return warnings

