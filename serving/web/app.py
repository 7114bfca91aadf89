"""The clinicians' web page: a small werkzeug WSGI app in front of the model server.

    handle = start_web("127.0.0.1:8500", port=0)   # port 0: a free one
    print(handle.url); ...; handle.stop()

Routes: `GET /` (the page), `GET /static/<file>`, `GET /api/info` (which model answers, the
limits), `POST /api/predict` (multipart field `files`: .dcm files, zips of study folders,
.jpg/.png; JSON answer, see serving/web/analysis.py), `POST /api/explain` (JSON: a study's
thumbnails and the version that scored them -> that version's heat maps, asked for when the
user turns them on), `GET /healthz` (200 while the model server answers, 503 when it does
not).

The web process holds no model and never imports TensorFlow: it reaches the model server only
through the thin gRPC client, as any other client. Uploads are parsed into memory (bounded by
the upload limit) and dropped when the answer is sent; logs carry counts and reason codes,
never file names (they can be patient names), UIDs or pixel data. There is no login: it binds
loopback unless told otherwise, like the model server.
"""
from __future__ import annotations

import io
import json
import logging
import mimetypes
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from werkzeug.exceptions import HTTPException, RequestEntityTooLarge
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from serving.api.errors import ServingError
from serving.client.model_client import ModelClient
from serving.web.analysis import analyze, explain_thumbnails, summary_for_log
from serving.web.messages import DISCLAIMER
from serving.web.scoring import Scorer
from serving.web.settings import MB, WebSettings
from serving.web.timing import PhaseTimer
from serving.web.uploads import UploadError, expand_uploads, too_large_message

LOG = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"
FORM_OVERHEAD_BYTES = 1 * MB  # multipart boundaries and part headers on top of the files
SECURITY_HEADERS = {
    "Content-Security-Policy": ("default-src 'self'; img-src 'self' data:; "
                                "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class InMemoryRequest(Request):
    """Uploaded files go to memory, never to a temp file on disk.

    Built with `populate_request=False`: werkzeug's default stores the request in its own
    environ (`environ["werkzeug.request"]`), a reference cycle that kept every upload (up to
    the limit, ~100 MB) alive until the garbage collector happened to run; the process grew by
    one upload per request. Without the cycle, and with `close()` after the answer, reference
    counting frees the upload as soon as the request is done.
    """

    def __init__(self, environ) -> None:
        super().__init__(environ, populate_request=False)

    def _get_file_stream(self, total_content_length, content_type, filename=None,
                         content_length=None):
        return io.BytesIO()


class WebApp:
    """The WSGI callable: routing, limits, and turning every failure into a readable answer."""

    def __init__(self, settings: WebSettings, client: ModelClient):
        self.settings = settings
        self.scorer = Scorer.for_settings(client, settings)
        self.slots = threading.BoundedSemaphore(settings.max_concurrent)
        self.static = load_static(STATIC_DIR)
        self.routes = Map([
            Rule("/", endpoint="page", methods=["GET"]),
            Rule("/static/<name>", endpoint="static", methods=["GET"]),
            Rule("/api/info", endpoint="info", methods=["GET"]),
            Rule("/api/predict", endpoint="predict", methods=["POST"]),
            Rule("/api/explain", endpoint="explain", methods=["POST"]),
            Rule("/healthz", endpoint="health", methods=["GET"]),
        ])

    def __call__(self, environ, start_response):
        request = InMemoryRequest(environ)
        request.max_content_length = self.settings.max_upload_bytes + FORM_OVERHEAD_BYTES
        request.max_form_parts = self.settings.max_files + 100
        try:
            response = self.dispatch(request, environ)
        finally:
            request.close()  # the uploaded files' buffers go now, not at the next collection
        response.headers.update(SECURITY_HEADERS)
        return response(environ, start_response)

    def dispatch(self, request: Request, environ) -> Response:
        try:
            endpoint, values = self.routes.bind_to_environ(environ).match()
            return getattr(self, f"on_{endpoint}")(request, **values)
        except HTTPException as error:
            return json_response({"error": error.description or error.name}, error.code)
        except Exception as error:  # noqa: BLE001 - the page gets an answer, the server lives
            log_unexpected(error)
            return json_response({"error": "Something went wrong on our side; nothing was "
                                             "stored. Please try again."}, 500)

    # ------------------------------------------------------------------ endpoints
    def on_page(self, request: Request) -> Response:
        return self.on_static(request, "index.html")

    def on_static(self, request: Request, name: str) -> Response:
        if name not in self.static:
            return json_response({"error": "not found"}, 404)
        body, mimetype = self.static[name]
        return Response(body, mimetype=mimetype, headers={"Cache-Control": "no-cache"})

    def on_info(self, request: Request) -> Response:
        limits = {"max_upload_bytes": self.settings.max_upload_bytes,
                  "max_files": self.settings.max_files,
                  "explain_batch": self.settings.explain_batch}
        common = {"threshold": self.settings.threshold, "limits": limits,
                  "disclaimer": DISCLAIMER, "requested_label": self.settings.label}
        try:
            return json_response({**common, "model": self.model_info()})
        except ServingError as error:
            return json_response({**common, "model": None,
                                  "error": server_error_message(error, "info")}, 503)

    def on_health(self, request: Request) -> Response:
        try:
            model = self.model_info()
        except ServingError as error:
            return json_response({"status": "model server unavailable",
                                  "detail": error.code.name}, 503)
        return json_response({"status": "ok", "model": model})

    def on_predict(self, request: Request) -> Response:
        def work(timer: PhaseTimer) -> dict:
            with timer.phase("upload"):
                uploads = expand_uploads(read_files(request, self.settings), self.settings)
            return analyze(self.scorer, uploads, self.settings, timer)
        return self._model_request(request, "predict", work, summary_for_log)

    def on_explain(self, request: Request) -> Response:
        def work(timer: PhaseTimer) -> dict:
            with timer.phase("upload"):
                try:
                    document = json.loads(request.get_data(cache=False))
                except ValueError:
                    raise UploadError("The heat map request is not JSON.") from None
            return explain_thumbnails(self.scorer, document, self.settings, timer)

        def summary(result: dict, seconds: float) -> str:
            return (f"explain: {len(result['heatmaps'])} heat maps from version "
                    f"{result['version']}, {seconds:.2f} s")
        return self._model_request(request, "explain", work, summary)

    def _model_request(self, request: Request, during: str,
                       work: Callable[[PhaseTimer], dict],
                       summary: Callable[[dict, float], str]) -> Response:
        """A request that calls the model server: one of the `max_concurrent` slots (503 when
        none frees in time), the size limit checked before the body is read, refusals as
        readable JSON, and the answer with its Server-Timing phases."""
        if not self.slots.acquire(timeout=self.settings.busy_wait_s):
            return json_response({"error": "The page is busy with other uploads. Please try "
                                           "again in a minute."}, 503)
        started = time.monotonic()
        timer = PhaseTimer()
        try:
            if request.content_length and request.content_length > request.max_content_length:
                raise RequestEntityTooLarge()
            result = work(timer)
        except UploadError as error:  # the message may name the zip: shown, never logged
            LOG.info("%s: request refused (HTTP %d)", during, error.status)
            return json_response({"error": str(error)}, error.status)
        except RequestEntityTooLarge:
            LOG.info("%s: request refused (HTTP 413)", during)
            return json_response({"error": too_large_message(
                request.content_length or 0, self.settings.max_upload_bytes)}, 413)
        except ServingError as error:
            return json_response({"error": server_error_message(error, during)}, 502)
        finally:
            self.slots.release()
        LOG.info("%s", summary(result, time.monotonic() - started))
        with timer.phase("render"):
            response = json_response(result)
        response.headers["Server-Timing"] = timer.server_timing()
        return response

    def model_info(self) -> dict:
        metadata = self.scorer.metadata()
        return {"name": metadata.model_name, "version": metadata.model_version,
                "labels": self.scorer.labels_answering(metadata.model_version),
                "routing": self.scorer.routing(), "image_size": metadata.image_size}


def read_files(request: Request, settings: WebSettings) -> list[tuple[str, bytes]]:
    """(name, bytes) of every uploaded file (the declared size was checked before parsing)."""
    files = []
    for storage in request.files.getlist("files"):
        data = storage.stream.getvalue()  # the parsed buffer itself, not a second copy
        if storage.filename or data:  # a form sent with no file chosen has one empty part
            files.append((storage.filename or "unnamed file", data))
    total = sum(len(data) for _, data in files)
    if total > settings.max_upload_bytes:
        raise UploadError(too_large_message(total, settings.max_upload_bytes), status=413)
    return files


UNREACHABLE_CODES = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})  # down, restarting, or
# still reconnecting: gRPC says "failed to connect ... Connection refused" or times out
UNREACHABLE_MESSAGE = "The model server is not reachable; try again in a minute."


def server_error_message(error: ServingError, during: str) -> str:
    """Plain words for the page; gRPC's own text (addresses, errno) goes to the log only."""
    LOG.warning("%s: model server error %s: %s", during, error.code.name, error.details)
    if error.code.name in UNREACHABLE_CODES:
        return UNREACHABLE_MESSAGE
    return ("The model server could not answer this request; try again in a minute. If this "
            "persists, tell the administrator (the page's log has the details).")


def json_response(document: dict, status: int = 200) -> Response:
    return Response(json.dumps(document), status=status, mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


def load_static(folder: Path) -> dict[str, tuple[bytes, str]]:
    """The page's files, read once; only these names are ever served."""
    served = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            mimetype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            served[path.name] = (path.read_bytes(), mimetype)
    return served


def log_unexpected(error: Exception) -> None:
    """Type and code locations only: an exception's message could quote uploaded data."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    LOG.error("unexpected %s while serving a request:\n%s", type(error).__name__, frames)


class QuietRequestHandler(WSGIRequestHandler):
    """One log line per request with method, path (no query string) and status."""

    def log_request(self, code="-", size="-") -> None:
        LOG.debug("%s %s %s", self.command, self.path.split("?", 1)[0], code)

    def log(self, type: str, message: str, *args) -> None:  # noqa: A002 - werkzeug's name
        getattr(LOG, type if type in ("info", "warning", "error") else "info")(message, *args)


class WebHandle:
    """A running page: `.url`, `.stop()`; also a context manager."""

    def __init__(self, server: BaseWSGIServer, client: ModelClient, url: str):
        self.server, self.client, self.url = server, client, url
        self.thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
        self.client.close()

    def __enter__(self) -> "WebHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_web(server_target: str, host: str = "127.0.0.1", port: int = 8080,
              **options) -> WebHandle:
    """Serve the page on host:port (0: a free port) in a background thread. `options` are
    further WebSettings fields (label, threshold, max_upload_bytes, tls_ca, ...)."""
    settings = WebSettings(server=server_target, host=host, port=port, **options)
    client = ModelClient(settings.server, settings.model_name, timeout_s=settings.timeout_s,
                         tls_ca=settings.tls_ca)
    try:
        server = make_server(settings.host, settings.port, WebApp(settings, client),
                             threaded=True, request_handler=QuietRequestHandler)
    except BaseException:
        client.close()
        raise
    return WebHandle(server, client, page_url(settings.host, server.server_port))


def page_url(host: str, port: int) -> str:
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://[{shown}]:{port}/" if ":" in shown else f"http://{shown}:{port}/"
