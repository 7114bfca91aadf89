"""The local model server: TF Serving's gRPC API over SavedModels, for tests, demo and dev.

`tensorflow_model_server` cannot be installed here, so this server speaks the same API
(PredictionService, ModelService from `tensorflow_serving.apis`; grpc.health.v1 with
--enable_grpc_healthcheck_service, as TF Serving: serving/server/health.py), reads the
same models.config and follows TF Serving's version, label and status-code rules (see
serving/server/model_manager.py and serving/server/servable.py). Production runs the real
`tensorflow/serving` image with serving/deploy/; clients cannot tell the two apart.

Knowingly different from TF Serving:
- a version folder without saved_model.pb is skipped (TF Serving would try and fail to load
  it); the Pusher writes atomically, so this only hides half-copied folders;
- the config file is re-applied when its content changes (TF Serving re-applies it every poll
  period, silently reverting a HandleReloadConfigRequest); tools should write the file *and*
  send the reload, which is correct for both servers.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc

from serving.api.errors import ServingError
from serving.server.grpc_services import ModelService, PredictionService
from serving.api.model_config import ModelConfigError, parse_model_config, read_model_config_text
from serving.server.health import add_health_service
from serving.server.metrics import ServerMetrics, metrics_routes
from serving.server.model_manager import LoadRetries, ModelManager
from serving.server.batching import BatchScheduler, batch_limits
from serving.server.servable import servable_loader
from serving.server.rest import RestServer, WSGIApp
from serving.api.protos import model_service_pb2_grpc, prediction_service_pb2_grpc
from serving.server.settings import ServerSettings
from serving.server.startup import configure_tensorflow_threads, initial_config

LOG = logging.getLogger(__name__)


class ModelServer:
    """grpc.server + ModelManager + a poller thread; start(), then wait() or stop()."""

    def __init__(self, settings: ServerSettings):
        self.settings = settings
        metrics = ServerMetrics()
        limits = batch_limits(settings.enable_batching, settings.batching_parameters_file)
        scheduler = (BatchScheduler(limits.schedule, metrics) if limits.schedule is not None
                     else None)
        self.manager = ModelManager(allow_version_labels_for_unavailable_models=(
            settings.allow_version_labels_for_unavailable_models),
            loader=servable_loader(limits, scheduler), metrics=metrics,
            load_retries=LoadRetries.from_flags(settings.max_num_load_retries,
                                                settings.load_retry_interval_micros))
        self.health = None  # grpc.health.v1 servicer, with --enable_grpc_healthcheck_service
        self._grpc: grpc.Server | None = None
        self._stopped = threading.Event()
        self._poller: threading.Thread | None = None
        self._config_text: str | None = None
        self._next_config_poll = 0.0
        self._last_config_error: str | None = None
        self.port: int | None = None
        self._services: tuple[PredictionService, ModelService] | None = None
        self._rest: RestServer | None = None
        # Other handlers on the REST port, {exact path: WSGI app} (e.g. Prometheus metrics).
        self.rest_routes: dict[str, WSGIApp] = {}

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.port}"

    @property
    def rest_address(self) -> str | None:
        """host:port of the REST API, None unless --rest_api_port > 0."""
        return None if self._rest is None else f"{self.settings.host}:{self._rest.port}"

    def start(self) -> "ModelServer":
        """Load the config (as TF Serving: labels checked, first versions loaded), then
        listen. Raises ServingError / ModelConfigError when the config cannot be served."""
        self.rest_routes.update(metrics_routes(self.settings, self.manager.metrics))
        configure_tensorflow_threads(self.settings)  # before the first load starts TensorFlow
        config, self._config_text = initial_config(self.settings)
        self.manager.reload_config(config)
        self._grpc = self._build_grpc_server()
        self.port = self._bind(self._grpc)
        if not self.port:
            raise OSError(f"cannot bind {self.settings.host}:{self.settings.port}")
        self._grpc.start()
        self._start_rest()
        self._poller = threading.Thread(target=self._poll_forever, name="model-poller",
                                        daemon=True)
        self._poller.start()
        LOG.info("Serving %s on %s", sorted(self.manager.model_names()), self.address)
        return self

    def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting calls, let in-flight ones finish (up to grace_s), unload models."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.manager.cancel_load_retries()
        self.manager.config_changed.set()
        if self.health is not None:
            self.health.enter_graceful_shutdown()
        if self._rest is not None:
            self._rest.stop()
        if self._grpc is not None:
            grace = self.settings.grace_seconds if grace_s is None else grace_s
            self._grpc.stop(grace).wait()
        if self._poller is not None:
            self._poller.join(timeout=30)
        self.manager.unload_all()
        LOG.info("Server stopped")

    def wait(self) -> None:
        """Block until stop(); SIGTERM/SIGINT (when installed) call stop()."""
        self._stopped.wait()
        if self._grpc is not None:
            self._grpc.wait_for_termination()

    def install_signal_handlers(self) -> None:
        def handle(signum, _frame):
            LOG.info("Received %s: draining in-flight calls", signal.Signals(signum).name)
            threading.Thread(target=self.stop, name="shutdown").start()
        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    # ------------------------------------------------------------------ internals
    def _bracketed_host(self) -> str:
        host = self.settings.host
        return f"[{host}]" if ":" in host and not host.startswith("[") else host

    def _bind(self, server: grpc.Server) -> int:
        address = f"{self._bracketed_host()}:{self.settings.port}"
        if self.settings.tls_cert_file is None:
            return server.add_insecure_port(address)
        key = Path(self.settings.tls_key_file).read_bytes()
        chain = Path(self.settings.tls_cert_file).read_bytes()
        return server.add_secure_port(address, grpc.ssl_server_credentials([(key, chain)]))

    def _start_rest(self) -> None:
        """TF Serving's HTTP server, on the same services, when --rest_api_port > 0."""
        if self.settings.rest_api_port > 0:
            self._rest = RestServer(
                self.manager, *self._services, host=self.settings.host,
                port=self.settings.rest_api_port, num_threads=self.settings.rest_api_num_threads,
                extra_routes=self.rest_routes, max_body_bytes=self.settings.max_message_bytes
            ).start()

    def _build_grpc_server(self) -> grpc.Server:
        self._services = (PredictionService(self.manager, self.settings.max_decoded_bytes),
                          ModelService(self.manager))
        limit = self.settings.max_message_bytes
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.settings.max_workers,
                                       thread_name_prefix="rpc"),
            options=[("grpc.max_receive_message_length", limit),
                     ("grpc.max_send_message_length", limit),
                     ("grpc.so_reuseport", 0)],
            maximum_concurrent_rpcs=self.settings.max_workers * 8)
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(
            self._services[0], server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(
            self._services[1], server)
        self.health = add_health_service(server, self.settings.enable_grpc_healthcheck_service)
        return server

    def _poll_period(self) -> float | None:
        """Wake-up period of the poller: the shorter of the two TF Serving poll flags that are
        on (> 0); None: only a config change (HandleReloadConfigRequest, stop) wakes it."""
        periods = [p for p in (self.settings.poll_seconds, self.settings.config_poll_seconds)
                   if p > 0]
        return min(periods) if periods else None

    def _poll_forever(self) -> None:
        while not self._stopped.is_set():
            self.manager.config_changed.wait(timeout=self._poll_period())
            self.manager.config_changed.clear()
            if self._stopped.is_set():
                return
            try:
                self._maybe_reload_config_file()
                self.manager.reconcile()
            except Exception:  # noqa: BLE001 - keep polling whatever one pass hit
                LOG.exception("model poll pass failed")

    def _maybe_reload_config_file(self) -> None:
        """Every --model_config_file_poll_wait_seconds (0: never), re-apply a changed file."""
        period = self.settings.config_poll_seconds
        if period <= 0 or not self.settings.model_config or \
                time.monotonic() < self._next_config_poll:
            return
        self._next_config_poll = time.monotonic() + period
        path = self.settings.model_config
        try:
            text = read_model_config_text(path)
        except ModelConfigError as error:
            self._log_config_error(str(error))
            return
        if text == self._config_text:
            return
        try:
            self.manager.reload_config(parse_model_config(text, path))
        except (ServingError, ModelConfigError) as error:
            self._log_config_error(f"models.config reload failed, keeping the previous "
                                   f"config: {error}")
            return
        self._config_text = text
        self._last_config_error = None
        LOG.info("Applied %s", path)

    def _log_config_error(self, message: str) -> None:
        if message != self._last_config_error:  # once per distinct error, not every period
            LOG.error("%s", message)
        self._last_config_error = message
