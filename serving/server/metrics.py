"""Prometheus metrics of the local server: the series `tensorflow_model_server` 2.16 exports.

Names, types, labels, label values and buckets are TF Serving's (and TensorFlow's, for the
SavedModel loader), so a dashboard or alert written for one server reads the other:

- `:tensorflow:serving:request_count` counter {model_name, status}: every Predict, Classify and
  Regress gRPC call; status is the canonical code name ("OK", "INVALID_ARGUMENT", ...)
  (servables/tensorflow/util.cc RecordModelRequestCount, called by prediction_service_impl.cc).
- `:tensorflow:serving:request_latency` histogram {model_name, API, entrypoint}, microseconds,
  successful calls only: gRPC API "Predict"|"Classify"|"Regress", entrypoint "GRPC"; REST API is
  the URL's method ("predict", ...), entrypoint "REST".
- `:tensorflow:serving:runtime_latency` histogram {model_name, API, runtime}: time inside the
  model call alone (runtime "TF1": TF Serving's session runtime, which serves our SavedModels).
- `:tensorflow:serving:request_example_counts` histogram {model} and
  `:tensorflow:serving:request_example_count_total` counter {model}: tf.Examples per
  Classify/Regress request.
- `:tensorflow:cc:saved_model:load_attempt_count` counter {model_path, status="success"|"fail"}
  and `:tensorflow:cc:saved_model:load_latency` counter {model_path}, microseconds
  (tensorflow/cc/saved_model/loader.cc); model_path is the version folder.
- with --enable_batching, the batching-session series (BatchingMetrics below):
  `:tensorflow:serving:batching_session:queuing_latency` {thread_pool_name}, `input_batch_size`,
  `processed_batch_size`, `padding_size` {execution_batch_size}.
Latency buckets are Buckets::Exponential(10, 1.8, 33), example counts Exponential(1, 2, 15).

The page is written like TF Serving's PrometheusExporter (util/prometheus_exporter.cc): a
`# TYPE` line per metric (no HELP), counters without a `_total` suffix, no `_created` series,
numbers as absl::StrCat prints them, Content-Type text/plain. Each server has its own
CollectorRegistry, so several servers in one process (tests) keep separate counts.
"""
from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from serving.api.errors import ServingError
from serving.api.protos import MonitoringConfig

LATENCY_BUCKETS_US = tuple(10 * 1.8 ** i for i in range(33))  # Buckets::Exponential(10, 1.8, 33)
EXAMPLE_COUNT_BUCKETS = tuple(2.0 ** i for i in range(15))    # Buckets::Exponential(1, 2, 15)
QUEUING_BUCKETS_US = tuple(100 * 1.2 ** i for i in range(52))  # Buckets::Exponential(100, 1.2, 52)
BATCH_SIZE_BUCKETS = tuple(2.0 ** i for i in range(14))        # Buckets::Exponential(1, 2, 14)
RUNTIME = "TF1"
CONTENT_TYPE = "text/plain"
DEFAULT_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath
T = TypeVar("T")
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]


@dataclass
class _Request:
    """What one request's handler learns while it runs (read when it ends)."""
    runtime_us: float = 0.0
    ran: bool = False
    examples: int | None = None


_CURRENT: contextvars.ContextVar[_Request | None] = contextvars.ContextVar(
    "serving_metrics_request", default=None)


@contextmanager
def runtime_span() -> Iterator[None]:
    """Around the model call itself: adds its time to the current request's runtime latency
    (a no-op outside a request, e.g. during warm-up)."""
    request = _CURRENT.get()
    started = time.perf_counter()
    try:
        yield
    finally:
        if request is not None:
            request.runtime_us += 1e6 * (time.perf_counter() - started)
            request.ran = True


def runtime_timed(run: Callable) -> Callable:
    """Decorator for the model call (Servable.run, TF Serving's Session::Run)."""
    @functools.wraps(run)
    def wrapper(*args, **kwargs):
        with runtime_span():
            return run(*args, **kwargs)
    return wrapper


def note_examples(count: int) -> None:
    """Tell the current Classify/Regress request how many tf.Examples it carried."""
    request = _CURRENT.get()
    if request is not None:
        request.examples = count


def status_name(error: BaseException | None) -> str:
    """The canonical code name TF Serving puts in the status label."""
    if error is None:
        return "OK"
    if isinstance(error, ServingError):
        return error.code.name
    return grpc.StatusCode.INTERNAL.name


class ServerMetrics:
    """One server's metrics in its own registry; `page()` is the Prometheus text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._exported: list[tuple[str, object]] = []  # (TF Serving name, metric)
        self._batching: BatchingMetrics | None = None
        self.request_count = self._add(Counter, ":tensorflow:serving:request_count",
                                       "The total number of requests.", ("model_name", "status"))
        self.request_latency = self._add(
            Histogram, ":tensorflow:serving:request_latency",
            "Distribution of wall time (in microseconds) for Tensorflow Serving request.",
            ("model_name", "API", "entrypoint"), buckets=LATENCY_BUCKETS_US)
        self.runtime_latency = self._add(
            Histogram, ":tensorflow:serving:runtime_latency",
            "Distribution of wall time (in microseconds) for Tensorflow runtime.",
            ("model_name", "API", "runtime"), buckets=LATENCY_BUCKETS_US)
        self.example_counts = self._add(
            Histogram, ":tensorflow:serving:request_example_counts",
            "The number of tensorflow.Examples per request.", ("model",),
            buckets=EXAMPLE_COUNT_BUCKETS)
        self.example_count_total = self._add(
            Counter, ":tensorflow:serving:request_example_count_total",
            "The total number of tensorflow.Examples.", ("model",))
        self.load_attempt_count = self._add(
            Counter, ":tensorflow:cc:saved_model:load_attempt_count",
            "The number of times a SavedModel was successfully loaded.", ("model_path", "status"))
        self.load_latency = self._add(
            Counter, ":tensorflow:cc:saved_model:load_latency",
            "Latency in microseconds for SavedModels that were successfully loaded.",
            ("model_path",))

    def batching(self, schedule) -> "BatchingMetrics":
        """The batching-session series, registered when a server turns batching on (TF
        registers them at the first batched request; they exist only with batching)."""
        if self._batching is None:
            self._batching = BatchingMetrics(self, schedule.thread_pool_name)
        return self._batching

    def _add(self, kind: type, name: str, documentation: str, labels: tuple[str, ...],
             **options):
        metric = kind(name, documentation, labels, registry=self.registry, **options)
        self._exported.append((name, metric))
        return metric

    # ------------------------------------------------------------------ recording
    @contextmanager
    def request(self, model_name: str, api: str, entrypoint: str, *,
                count: bool) -> Iterator[None]:
        """Around one request: its status (from the exception it ends with, if any) and
        latency, and the runtime/example counts noted while it ran. `count`: whether this
        entrypoint feeds request_count (TF Serving counts gRPC calls only)."""
        record = _Request()
        token = _CURRENT.set(record)
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            yield
        except BaseException as raised:
            error = raised
            raise
        finally:
            _CURRENT.reset(token)
            self._finish(record, model_name, api, entrypoint, count, error,
                         1e6 * (time.perf_counter() - started))

    def _finish(self, record: _Request, model_name: str, api: str, entrypoint: str,
                count: bool, error: BaseException | None, elapsed_us: float) -> None:
        if count:
            self.request_count.labels(model_name, status_name(error)).inc()
        if record.ran:
            self.runtime_latency.labels(model_name, api[:1].upper() + api[1:],
                                        RUNTIME).observe(record.runtime_us)
        if error is not None:
            return
        self.request_latency.labels(model_name, api, entrypoint).observe(elapsed_us)
        if record.examples is not None:
            self.example_counts.labels(model_name).observe(record.examples)
            self.example_count_total.labels(model_name).inc(record.examples)

    def record_load(self, model_path: str, ok: bool, seconds: float) -> None:
        """One SavedModel load attempt, as TensorFlow's LoadSavedModel counts it."""
        self.load_attempt_count.labels(model_path, "success" if ok else "fail").inc()
        self.load_latency.labels(model_path).inc(int(1e6 * seconds))

    def counted_loader(self, loader: Callable[[str, int, Path], T]
                       ) -> Callable[[str, int, Path], T]:
        """The model manager's loader, each call (every retry too) counted as a load attempt."""
        @functools.wraps(loader)
        def load(name: str, version: int, path: Path) -> T:
            started, ok = time.perf_counter(), False
            try:
                servable = loader(name, version, path)
                ok = True
                return servable
            finally:
                self.record_load(str(path), ok, time.perf_counter() - started)
        return load

    # ------------------------------------------------------------------ exposition
    def page(self) -> str:
        """The metrics page in PrometheusExporter::GeneratePage's format."""
        lines: list[str] = []
        for name, metric in sorted(self._exported, key=lambda item: item[0]):
            lines.extend(_serialize(name, metric))
        return "\n".join(lines) + "\n"


class BatchingMetrics:
    """TF Serving's batching-session series (batching_session.cc, batching_util.h):
    `queuing_latency` {thread_pool_name} in microseconds, Exponential(100, 1.2, 52), per request
    from enqueue to its batch starting; `input_batch_size` per input tensor of each request,
    `processed_batch_size` (after padding) and `padding_size` {execution_batch_size} per batch,
    Exponential(1, 2, 14)."""

    def __init__(self, metrics: ServerMetrics, thread_pool_name: str):
        prefix = ":tensorflow:serving:batching_session:"
        self.thread_pool_name = thread_pool_name
        self.queuing_latency = metrics._add(
            Histogram, prefix + "queuing_latency",
            "Distribution of wall time spent (in microseconds) in queuing",
            ("thread_pool_name",), buckets=QUEUING_BUCKETS_US)
        self.input_batch_size = metrics._add(
            Histogram, prefix + "input_batch_size",
            "Tracks the batch size distribution on the inputs.", (), buckets=BATCH_SIZE_BUCKETS)
        self.processed_batch_size = metrics._add(
            Histogram, prefix + "processed_batch_size",
            "Tracks the batch size distribution on processing.", (),
            buckets=BATCH_SIZE_BUCKETS)
        self.padding_size = metrics._add(
            Histogram, prefix + "padding_size", "Tracks the padding size distribution on "
            "batches.", ("execution_batch_size",), buckets=BATCH_SIZE_BUCKETS)

    def input_sizes(self, arrays) -> None:
        for array in arrays.values():
            self.input_batch_size.observe(len(array))

    def processed(self, tasks, started: float, padded: int, padding: int) -> None:
        """One batch starting at `started` (time.monotonic) with these requests."""
        queued = self.queuing_latency.labels(self.thread_pool_name)
        for task in tasks:
            queued.observe(1e6 * (started - task.enqueued))
        self.processed_batch_size.observe(padded)
        self.padding_size.labels(str(padded)).observe(padding)


class MonitoringConfigError(ValueError):
    """--monitoring_config_file cannot be used: the server refuses to start, as TF Serving."""


def read_monitoring_config(path: str | Path) -> MonitoringConfig:
    """The MonitoringConfig text proto (server.cc ParseProtoTextFile, and its error text)."""
    from google.protobuf import text_format

    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise MonitoringConfigError(f"{path}; {error.strerror}") from None
    try:
        return text_format.Parse(text, MonitoringConfig())
    except text_format.ParseError:
        raise MonitoringConfigError(f"Invalid protobuf file: '{path}'") from None


def prometheus_path(config: MonitoringConfig) -> str | None:
    """Where the page is served (an empty path means kPrometheusPath); None: not enabled."""
    prometheus = config.prometheus_config
    if not prometheus.enable:
        return None
    return prometheus.path or DEFAULT_PATH


def metrics_app(metrics: ServerMetrics) -> WSGIApp:
    """The Prometheus handler: the page for any method at its exact path (http_server.cc)."""
    def app(environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = metrics.page().encode("utf-8")
        start_response("200 OK", [("Content-Type", CONTENT_TYPE),
                                  ("Content-Length", str(len(body)))])
        return [body]
    return app


def metrics_routes(settings, metrics: ServerMetrics) -> dict[str, WSGIApp]:
    """The REST port's extra route for ServerSettings: {path: app} when the REST API is on
    and --monitoring_config_file enables Prometheus, else {} (the path then answers 404)."""
    if settings.rest_api_port <= 0 or not settings.monitoring_config_file:
        return {}
    path = prometheus_path(read_monitoring_config(settings.monitoring_config_file))
    return {} if path is None else {path: metrics_app(metrics)}


def observe_grpc(api: str) -> Callable:
    """Decorator for a PredictionService handler (inside the one that maps errors to gRPC
    statuses): counts and times the call under the servicer's `_manager.metrics`."""
    def decorate(handler: Callable) -> Callable:
        @functools.wraps(handler)
        def wrapper(self, request, context):
            return _observed(api, handler, self, request, context)
        return wrapper
    return decorate


def _observed(api: str, handler: Callable, servicer, request, context):
    """Record a gRPC call, unless the REST API called the servicer in process (it records
    the request itself, as entrypoint REST); Classify/Regress note their example count."""
    if api in ("Classify", "Regress"):
        examples = _example_count(request)
    else:
        examples = None
    if _CURRENT.get() is not None:
        if examples is not None:
            note_examples(examples)
        return handler(servicer, request, context)
    with servicer._manager.metrics.request(request.model_spec.name, api, "GRPC", count=True):
        if examples is not None:
            note_examples(examples)
        return handler(servicer, request, context)


def _example_count(request) -> int:
    """tf.Examples in a Classify/Regress request's Input (util.cc NumInputExamples)."""
    kind = request.input.WhichOneof("kind")
    return len(getattr(request.input, kind).examples) if kind else 0


def _serialize(name: str, metric) -> list[str]:
    """TYPE line, then TF's sample lines: counters as `name{labels} int`, histograms as
    cumulative `_bucket` lines (last le="+Inf"), `_sum`, `_count`."""
    family = next(iter(metric.collect()))
    kind = "histogram" if family.type == "histogram" else "counter"
    lines = [f"# TYPE {name} {kind}"]
    for sample in family.samples:
        suffix = sample.name[len(family.name):]
        if suffix in ("_created", "_gcount", "_gsum"):
            continue
        labels = dict(sample.labels)
        if kind == "counter":
            lines.append(f"{name}{_labels(labels)} {int(sample.value)}")
            continue
        if suffix == "_bucket":
            le = float(labels["le"])
            labels["le"] = "+Inf" if le == float("inf") else _six_digits(le)
        value = _six_digits(sample.value) if suffix == "_sum" else str(int(sample.value))
        lines.append(f"{name}{suffix}{_labels(labels)} {value}")
    return lines


def _labels(labels: dict[str, str]) -> str:
    if not labels:
        return ""
    escaped = (value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               for value in labels.values())
    return "{" + ",".join(f'{key}="{value}"' for key, value in zip(labels, escaped)) + "}"


def _six_digits(value: float) -> str:
    """absl::StrCat(double): at most six significant digits, e.g. 32.4, 1.45558e+09."""
    return format(value, ".6g")
