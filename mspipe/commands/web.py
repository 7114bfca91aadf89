"""`mspipe web --server HOST:PORT [--host 127.0.0.1] [--port 8080]`: the clinicians' page.

Prints the page's URL and serves until Ctrl-C (or SIGTERM). The page reaches the model server
only through the thin gRPC client; this process loads no model and no TensorFlow.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from mspipe import options
from mspipe.errors import CommandError
from serving.web.settings import MB, WebSettings

DEFAULTS = WebSettings(server="")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_server_address(parser)
    parser.add_argument("--host", default=DEFAULTS.host,
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "the page has no login)")
    parser.add_argument("--port", type=int, default=DEFAULTS.port,
                        help="port to listen on (default %(default)s; 0 picks a free one)")
    options.add_model_name(parser)
    options.add_version_choice(parser, exact_version=False)
    options.add_routing_model_config(parser)
    parser.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                        help="decision threshold shown with the study probability (default: "
                             "the served model's own operating threshold; 0.5 for models "
                             "exported without one)")
    parser.add_argument("--max-upload-mb", type=int, default=DEFAULTS.max_upload_bytes // MB,
                        help="largest upload, in MB (default %(default)s)")
    options.add_tls_ca(parser)
    options.add_timeout(parser, DEFAULTS.timeout_s, "per model-server call")
    options.add_log_level(parser, " (one line per request)")


def run(args: argparse.Namespace) -> int:
    from serving.api.errors import ServingError
    from serving.web.app import start_web

    options.configure_logging(args.log_level)
    try:
        handle = start_web(args.server, args.host, args.port, model_name=args.model,
                           label=args.label, model_config=args.model_config,
                           threshold=args.threshold,
                           max_upload_bytes=args.max_upload_mb * MB, tls_ca=args.tls_ca,
                           timeout_s=args.timeout)
    except (OSError, ValueError) as error:
        raise CommandError(f"cannot start the web page on {args.host}:{args.port}: "
                           f"{error}") from error
    print(f"Web page for clinicians: {handle.url}  (model server {args.server}; "
          "Ctrl-C to stop)", flush=True)
    try:
        handle.client.metadata(label=args.label)
    except ServingError as error:
        print(f"mspipe web: warning: the model server {args.server} does not answer yet "
              f"({error.code.name}); the page will say so until it does", file=sys.stderr,
              flush=True)
    wait_for_signal()
    handle.stop()
    return 0


def wait_for_signal() -> None:
    """Block until SIGINT or SIGTERM (Ctrl-C, or a process manager stopping us)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(timeout=1.0):
        pass
