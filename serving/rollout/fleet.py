"""The replicas of one model server deployment, and waiting until every one of them agrees.

models.config (one file, on a volume every replica mounts) is the fleet's one source of truth:
the rollout tool replaces it atomically and each replica re-reads it every
`--model_config_file_poll_wait_seconds`, as TF Serving does. With `push` the tool also sends
the same config to every replica it reaches (HandleReloadConfigRequest), so the change does not
wait for the next poll; a replica it cannot reach picks the file up when it polls or restarts.
Either way, a change counts as done only when **every** replica says so through the TF
Serving API (GetModelStatus for versions, GetModelMetadata for labels); a replica that lags
past the timeout, or whose load failed, is named.

Replicas come from repeated `--server HOST:PORT`, or from one name that resolves to several
addresses (a Kubernetes headless Service gives one A record per ready pod). A name resolving
to IPv4 addresses uses those only (`localhost` is 127.0.0.1 and ::1 for one server).

A failed load is judged from the current attempt only: GetModelStatus keeps the END state and
error of a version's earlier failed load until the replica starts loading it again (and a
polling replica starts only at its next poll), so an END-with-error that is exactly what the
replica showed before the config changed counts only once the replica has been seen loading
it since, or was restarted; until then the replica is "not yet started loading".
"""
from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from serving.api.errors import ServingError
from serving.client.model_client import ModelClient, VersionState

LOADING_STATES = ("START", "LOADING")


class FleetError(RuntimeError):
    """Some replica did not reach the wanted state; the message names it and why."""


def resolve_replicas(servers: Iterable[str],
                     resolve: Callable[..., list] = socket.getaddrinfo) -> list[str]:
    """gRPC addresses of the replicas: each HOST:PORT as given when HOST is an address, else
    every address the name resolves to (IPv4 when it has any), deduplicated, in order."""
    replicas: list[str] = []
    for server in servers:
        host, port = _split_address(server)
        try:
            ipaddress.ip_address(host)
            found = [server]
        except ValueError:
            try:
                infos = resolve(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as error:
                raise FleetError(f"--server {server}: cannot resolve {host!r}: "
                                 f"{error.strerror}") from None
            ipv4 = [info[4][0] for info in infos if info[0] == socket.AF_INET]
            addresses = ipv4 or [info[4][0] for info in infos]
            found = [f"{a}:{port}" if ":" not in a else f"[{a}]:{port}" for a in addresses]
        replicas.extend(r for r in found if r not in replicas)
    if not replicas:
        raise FleetError("no model server address given (--server HOST:PORT)")
    return replicas


def _split_address(server: str) -> tuple[str, str]:
    host, sep, port = server.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise FleetError(f"--server {server!r}: expected HOST:PORT")
    return host.strip("[]"), port


@dataclass
class _Watch:
    """What the wait has seen of one replica."""
    detail: str = "not asked yet"
    reachable: bool | None = None
    done_after_s: float | None = None
    seen_loading: bool = False


@dataclass
class Convergence:
    """Seconds until each replica reported the wanted state (from the start of the wait)."""
    what: str
    seconds: dict[str, float] = field(default_factory=dict)

    def slowest_s(self) -> float:
        return max(self.seconds.values(), default=0.0)


class Fleet:
    """One ModelClient per replica, and the waits the rollout controller needs."""

    def __init__(self, replicas: Sequence[str], model_name: str, *,
                 tls_ca: str | None = None, clients: Mapping[str, ModelClient] | None = None,
                 poll_interval_s: float = 0.2, log: Callable[[str], None] = lambda m: None):
        if not replicas:
            raise FleetError("a fleet needs at least one replica")
        given = dict(clients or {})
        # Status calls fail fast (no retries, short deadline): a dead replica must not stall
        # the wait for the others, and the wait itself repeats the question.
        self.clients = {r: given.get(r) or ModelClient(r, model_name, tls_ca=tls_ca,
                                                       retries=0, timeout_s=5.0)
                        for r in replicas}
        self._owned = [c for r, c in self.clients.items() if r not in given]
        self.poll_interval_s = poll_interval_s
        self.log = log

    @property
    def replicas(self) -> list[str]:
        return list(self.clients)

    def close(self) -> None:
        for client in self._owned:
            client.close()

    # ------------------------------------------------------------------ config
    def push(self, config) -> dict[str, ServingError]:
        """HandleReloadConfigRequest to every replica; the errors by replica (none: {})."""
        errors = {}
        for replica, client in self.clients.items():
            try:
                client.reload_config(config)
            except ServingError as error:
                errors[replica] = error
        return errors

    def version_states(self, version: int) -> dict[str, VersionState | None]:
        """Each reachable replica's state of `version` (None: it has never seen it)."""
        states = {}
        for replica, client in self.clients.items():
            try:
                (states[replica],) = client.model_status(version=version)
            except ServingError as error:
                if error.code == grpc.StatusCode.NOT_FOUND:
                    states[replica] = None
        return states

    # ------------------------------------------------------------------ waits
    def wait_available(self, version: int, before: Mapping[str, VersionState | None],
                       timeout_s: float) -> Convergence:
        """Every replica has `version` AVAILABLE; FleetError at once when a replica's current
        load attempt failed (`before`: each replica's state before the config changed)."""
        def check(replica: str, client: ModelClient, watch: _Watch) -> bool:
            try:
                (state,) = client.model_status(version=version)
            except ServingError as error:
                if error.code != grpc.StatusCode.NOT_FOUND:
                    raise
                watch.detail = f"version {version} not known yet"
                return False
            watch.detail = _state_text(state)
            if state.state in LOADING_STATES:
                watch.seen_loading = True
            if state.state == "AVAILABLE":
                return True
            if state.state == "END" and state.error_code:
                earlier = before.get(replica)
                stale = (not watch.seen_loading and earlier is not None
                         and (earlier.state, earlier.error_message)
                         == (state.state, state.error_message))
                if stale:
                    watch.detail = (f"not loading version {version} yet (still shows an "
                                    f"earlier attempt's error: {state.error_message})")
                    return False
                raise FleetError(f"replica {replica}: version {version} failed to load: "
                                 f"{state.error_message}")
            return False
        return self._wait(f"version {version} AVAILABLE", check, timeout_s)

    def wait_labels(self, labels: Mapping[str, int], timeout_s: float) -> Convergence:
        """Every replica resolves each label to its version (GetModelMetadata by label)."""
        def check(replica: str, client: ModelClient, watch: _Watch) -> bool:
            wrong = []
            for label, version in sorted(labels.items()):
                try:
                    served = client.metadata(label=label).model_version
                except ServingError as error:
                    if error.code == grpc.StatusCode.UNAVAILABLE:
                        raise
                    served = f"{error.code.name}"
                if served != version:
                    wrong.append(f"{label} -> {served}")
            watch.detail = ("answers " + ", ".join(wrong)) if wrong else "done"
            return not wrong
        wanted = ", ".join(f"{label} -> {version}" for label, version in sorted(labels.items()))
        return self._wait(f"labels {wanted}", check, timeout_s)

    def wait_unloaded(self, versions: Iterable[int], timeout_s: float) -> Convergence:
        versions = sorted(set(versions))

        def check(replica: str, client: ModelClient, watch: _Watch) -> bool:
            states = {s.version: s.state for s in client.model_status()}
            left = [v for v in versions if states.get(v, "END") != "END"]
            watch.detail = f"still has {left}" if left else "done"
            return not left
        return self._wait(f"version(s) {versions} unloaded", check, timeout_s)

    def _wait(self, what: str, check: Callable[[str, ModelClient, _Watch], bool],
              timeout_s: float) -> Convergence:
        """Ask every replica not done yet, every poll interval, until all are or time's up.
        An unreachable replica is reported once (and its return), never fatal before the
        timeout: it reads models.config when it comes back."""
        started = time.monotonic()
        watches = {replica: _Watch() for replica in self.clients}
        while True:
            for replica, client in self.clients.items():
                watch = watches[replica]
                if watch.done_after_s is not None:
                    continue
                try:
                    done = check(replica, client, watch)
                    reachable = True
                except ServingError as error:
                    done, reachable = False, False
                    watch.detail = f"unreachable ({error.code.name}: {error.details})"
                    watch.seen_loading = False  # a restarted replica starts a new history
                if reachable is not watch.reachable and watch.reachable is not None:
                    self.log(f"replica {replica} is {'back' if reachable else watch.detail}")
                elif not reachable and watch.reachable is None:
                    self.log(f"replica {replica} is {watch.detail}")
                watch.reachable = reachable
                if done:
                    watch.done_after_s = time.monotonic() - started
                    if len(self.clients) > 1:
                        self.log(f"replica {replica}: {what} after "
                                 f"{watch.done_after_s:.1f} s")
            pending = {r: w for r, w in watches.items() if w.done_after_s is None}
            if not pending:
                return Convergence(what, {r: w.done_after_s for r, w in watches.items()})
            if time.monotonic() - started >= timeout_s:
                lagging = "; ".join(f"{r}: {w.detail}" for r, w in pending.items())
                raise FleetError(f"{len(pending)} of {len(watches)} replica(s) did not report "
                                 f"{what} within {timeout_s:.0f} s: {lagging}")
            time.sleep(self.poll_interval_s)


def _state_text(state: VersionState) -> str:
    if state.error_code:
        return f"{state.state} (error: {state.error_message})"
    return state.state
