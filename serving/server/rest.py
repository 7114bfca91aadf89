"""TF Serving's HTTP/REST API on --rest_api_port, over the same services as gRPC.

Routes (tensorflow_serving/model_servers/http_rest_api_util.cc; matched case-insensitively,
model names and labels percent-decoded):
    GET  /v1/models/NAME[/versions/N | /labels/L]            model status (GetModelStatus)
    GET  /v1/models/NAME[/versions/N | /labels/L]/metadata   signature defs (GetModelMetadata)
    POST /v1/models/NAME[/versions/N | /labels/L]:predict    row `instances` / columnar `inputs`
    POST /v1/models/NAME[/versions/N | /labels/L]:classify   tf.Example `examples` (+ `context`)
    POST /v1/models/NAME[/versions/N | /labels/L]:regress
Each call is turned into the gRPC request proto and handed to the very servicer objects the gRPC
server uses (serving/server/grpc_services.py), so validation, batching, metrics and error texts
are shared; JSON in and out follows serving/server/rest_json.py. Errors reply
`{"error": "<message>"}` with TF Serving's HTTP code for the status (http_server.cc):
INVALID_ARGUMENT / FAILED_PRECONDITION / OUT_OF_RANGE 400, NOT_FOUND 404, RESOURCE_EXHAUSTED
429, UNIMPLEMENTED 501, UNAVAILABLE 503, DEADLINE_EXCEEDED 504, others 500 (see HTTP_CODES).
Any other method or /v1/ path: 400 "Malformed request: METHOD PATH"; paths outside /v1/: 404.

Other handlers on this port (the Prometheus page at the --monitoring_config_file path) are WSGI
apps given as `extra_routes={exact_path: wsgi_app}`: `RestServer(..., extra_routes=...)`, or,
through ModelServer, `server.rest_routes[path] = app` before `start()`. They are matched before
the /v1/ API, as TF Serving registers its Prometheus handler before the REST dispatcher.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import unquote

import grpc
from google.protobuf import json_format
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler
from werkzeug.wsgi import get_input_stream

from components.contract import SERVING_DEFAULT
from serving.api.errors import ServingError, invalid_argument
from serving.api.protos import (SIGNATURE_DEF_FIELD, classification_pb2, get_model_metadata_pb2,
                                get_model_status_pb2, model_pb2, predict_pb2, regression_pb2)
from serving.api.tensor_codec import from_tensor_proto
from serving.server import rest_examples, rest_json, rest_reply

LOG = logging.getLogger(__name__)
WSGIApp = Callable[[dict, Callable], Iterable[bytes]]

_LOCATOR = r"(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICTION_PATH = re.compile(rf"/v1/models/([^/:]+){_LOCATOR}:(classify|regress|predict)",
                             re.IGNORECASE)
STATUS_PATH = re.compile(rf"/v1/models(?:/([^/:]+))?{_LOCATOR}(?:/(metadata))?", re.IGNORECASE)
API_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)
INT64_MAX = (1 << 63) - 1

S = grpc.StatusCode
HTTP_CODES = {S.OK: 200, S.CANCELLED: 499, S.UNKNOWN: 500, S.INVALID_ARGUMENT: 400,
              S.DEADLINE_EXCEEDED: 504, S.NOT_FOUND: 404, S.ALREADY_EXISTS: 409,
              S.PERMISSION_DENIED: 403, S.RESOURCE_EXHAUSTED: 429, S.FAILED_PRECONDITION: 400,
              S.ABORTED: 409, S.OUT_OF_RANGE: 400, S.UNIMPLEMENTED: 501, S.INTERNAL: 500,
              S.UNAVAILABLE: 503, S.DATA_LOSS: 500, S.UNAUTHENTICATED: 401}
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
           404: "Not Found", 409: "Conflict", 429: "Too Many Requests",
           499: "Client Closed Request",
           500: "Internal Server Error", 501: "Not Implemented", 503: "Service Unavailable",
           504: "Gateway Timeout"}


class _RestContext:
    """Stands in for grpc.ServicerContext: abort() raises the ServingError it describes."""

    def __init__(self):
        self.code, self.details = S.OK, ""

    def abort(self, code: grpc.StatusCode, details: str):
        raise ServingError(code, details)

    def set_code(self, code: grpc.StatusCode) -> None:
        self.code = code

    def set_details(self, details: str) -> None:
        self.details = details

    def invocation_metadata(self) -> tuple:
        return ()

    def time_remaining(self) -> None:
        return None

    def is_active(self) -> bool:
        return True

    def peer(self) -> str:
        return "rest"

    def __getattr__(self, name: str):  # any other context call: accepted, no effect
        return lambda *args, **kwargs: None


class RestApi:
    """The WSGI app: routes, JSON <-> protos, status -> HTTP code."""

    def __init__(self, manager, prediction_service, model_service, *,
                 extra_routes: dict[str, WSGIApp] | None = None,
                 max_body_bytes: int | None = None):
        self._manager = manager
        self._prediction = prediction_service
        self._model = model_service
        self.extra_routes = extra_routes if extra_routes is not None else {}
        self._max_body_bytes = max_body_bytes

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        path = _raw_path(environ)
        extra = self.extra_routes.get(path) or self.extra_routes.get(environ.get("PATH_INFO"))
        if extra is not None:
            return extra(environ, start_response)
        if not API_PATH.fullmatch(path):
            return _reply(start_response, 404, b"", "text/plain")
        method = environ.get("REQUEST_METHOD", "")
        try:
            body = self._read_body(environ)
            status, text = 200, self.handle(method, path, body)
        except ServingError as error:
            LOG.debug("REST %s %s refused: %s", method, path, error)
            status, text = HTTP_CODES.get(error.code, 500), rest_reply.error_json(error.details)
        except Exception as error:  # noqa: BLE001 - the server must outlive any request
            LOG.exception("REST %s %s failed", method, path)
            status = 500
            text = rest_reply.error_json(f"{type(error).__name__}: {error}")
        return _reply(start_response, status, text.encode("utf-8"), "application/json")

    def _read_body(self, environ: dict) -> bytes:
        length = environ.get("CONTENT_LENGTH") or ""
        if self._max_body_bytes and length.isdigit() and int(length) > self._max_body_bytes:
            raise ServingError(S.RESOURCE_EXHAUSTED, f"Request body of {length} bytes is larger "
                               f"than the {self._max_body_bytes} byte limit")
        return get_input_stream(environ).read()

    # ------------------------------------------------------------------ dispatch
    def handle(self, method: str, path: str, body: bytes) -> str:
        """HttpRestApiHandler::ProcessRequest: the JSON reply, or a ServingError."""
        if method == "POST" and (match := PREDICTION_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            spec = _model_spec(name, version, label)
            handlers = {"predict": self._predict, "classify": self._classify,
                        "regress": self._regress}
            if verb in handlers:
                with self._manager.metrics.request(spec.name, verb, "REST", count=False):
                    return handlers[verb](spec, body)
        elif method == "GET" and (match := STATUS_PATH.fullmatch(path)):
            name, version, label, subresource = match.groups()
            if not name:
                raise invalid_argument("Missing model name in request.")
            spec = _model_spec(name, version, label)
            if subresource == "metadata":
                return self._metadata(spec)
            return self._status(spec)
        raise invalid_argument(f"Malformed request: {method} {path}")

    def _predict(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        doc = rest_json.parse_json(body, arrays=True)
        request = predict_pb2.PredictRequest()
        request.model_spec.CopyFrom(spec)
        form = rest_json.fill_predict_request(doc, request,
                                              lambda name: self._input_infos(spec, name))
        response = _call(self._prediction.Predict, request)
        outputs = {alias: from_tensor_proto(proto, name=alias)
                   for alias, proto in response.outputs.items()}
        return rest_reply.outputs_json(outputs, form)

    def _input_infos(self, spec: model_pb2.ModelSpec, signature_name: str) -> dict:
        """HttpRestApiHandler::GetInfoMap: the signature's inputs, to type the JSON values."""
        servable = self._manager.resolve(spec)
        name = signature_name or SERVING_DEFAULT
        if name not in servable.signature_defs:
            raise invalid_argument(f'Serving signature name: "{name}" not found in signature def')
        return dict(servable.signature_defs[name].inputs)

    def _classify(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        request = classification_pb2.ClassificationRequest()
        self._fill_examples_request(request, spec, body)
        return rest_examples.classification_json(_call(self._prediction.Classify, request).result)

    def _regress(self, spec: model_pb2.ModelSpec, body: bytes) -> str:
        request = regression_pb2.RegressionRequest()
        self._fill_examples_request(request, spec, body)
        return rest_examples.regression_json(_call(self._prediction.Regress, request).result)

    @staticmethod
    def _fill_examples_request(request, spec: model_pb2.ModelSpec, body: bytes) -> None:
        doc = rest_json.parse_json(body)
        request.model_spec.CopyFrom(spec)
        request.model_spec.signature_name = rest_json.signature_name(doc)
        rest_examples.examples_input(doc, request.input)

    def _status(self, spec: model_pb2.ModelSpec) -> str:
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
        response = _call(self._model.GetModelStatus, request)
        return json_format.MessageToJson(response, including_default_value_fields=True,
                                         indent=1)

    def _metadata(self, spec: model_pb2.ModelSpec) -> str:
        request = get_model_metadata_pb2.GetModelMetadataRequest(model_spec=spec)
        request.metadata_field.append(SIGNATURE_DEF_FIELD)
        response = _call(self._prediction.GetModelMetadata, request)
        signatures = get_model_metadata_pb2.SignatureDefMap()
        if not response.metadata[SIGNATURE_DEF_FIELD].Unpack(signatures):
            raise ServingError(S.INTERNAL, "Failed to unpack 'Any' object to 'SignatureDefMap'.")
        as_dict = lambda message: json_format.MessageToDict(  # noqa: E731
            message, including_default_value_fields=True, preserving_proto_field_name=True)
        return json.dumps({"model_spec": as_dict(response.model_spec),
                           "metadata": {SIGNATURE_DEF_FIELD: as_dict(signatures)}}, indent=1)


def _call(method: Callable, request):
    """A gRPC servicer method called in process; its abort() becomes a ServingError."""
    context = _RestContext()
    response = method(request, context)
    if context.code != S.OK:
        raise ServingError(context.code, context.details)
    return response


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    """ParseModelInfo + FillModelSpecWithNameVersionAndLabel."""
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version:
        if int(version) > INT64_MAX:
            raise invalid_argument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = int(version)
    if label:
        spec.version_label = unquote(label)
    return spec


def _raw_path(environ: dict) -> str:
    """The path as sent (before percent-decoding), which TF Serving matches its routes on."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw:
        return raw.split("?", 1)[0]
    return environ.get("PATH_INFO", "")


def _reply(start_response: Callable, status: int, body: bytes, content_type: str):
    start_response(f"{status} {REASONS.get(status, 'Error')}",
                   [("Content-Type", content_type), ("Content-Length", str(len(body)))])
    return [body]


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request (werkzeug logs each at INFO): TF Serving logs none."""
    timeout = 60  # seconds an idle keep-alive connection may hold a worker thread

    def log_request(self, *args, **kwargs) -> None:
        pass


class _PooledWSGIServer(BaseWSGIServer):
    """werkzeug's WSGI server with a fixed pool of --rest_api_num_threads request threads."""
    multithread = True  # werkzeug then speaks HTTP/1.1 (keep-alive)

    def __init__(self, host: str, port: int, app: WSGIApp, threads: int):
        super().__init__(host, port, app, handler=_QuietHandler)
        self._pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="rest")

    def process_request(self, request, client_address) -> None:
        self._pool.submit(self._handle, request, client_address)

    def _handle(self, request, client_address) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception:  # noqa: BLE001 - one broken connection must not stop the server
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        self._pool.shutdown(wait=False, cancel_futures=True)


class RestServer:
    """The REST API on host:port in a background thread; start(), then stop()."""

    def __init__(self, manager, prediction_service, model_service, *, host: str, port: int,
                 num_threads: int, extra_routes: dict[str, WSGIApp] | None = None,
                 max_body_bytes: int | None = None):
        self.app = RestApi(manager, prediction_service, model_service,
                           extra_routes=extra_routes, max_body_bytes=max_body_bytes)
        self._host, self._port, self._threads = host, port, num_threads
        self._server: _PooledWSGIServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int | None:
        return self._server.server_port if self._server is not None else None

    def start(self) -> "RestServer":
        """Bind (OSError if the port is taken) and serve in a daemon thread."""
        self._server = _PooledWSGIServer(self._host, self._port, self.app, self._threads)
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest-server",
                                        kwargs={"poll_interval": 0.2}, daemon=True)
        self._thread.start()
        LOG.info("Exporting HTTP/REST API at:%s:%d ...", self._host, self.port)
        return self

    def stop(self) -> None:
        """Stop accepting connections; requests already running finish in their threads."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._server = None
