"""`mspipe web --server HOST:PORT [--host 127.0.0.1] [--port 8080]`: the clinicians' page.

Prints the page's URL and serves until Ctrl-C (or SIGTERM). The page reaches the model server
only through the thin gRPC client; this process loads no model and no TensorFlow.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading

from serving.web.settings import MB, WebSettings

DEFAULTS = WebSettings(server="")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="HOST:PORT",
                        help="gRPC address of the model server, e.g. 127.0.0.1:8500")
    parser.add_argument("--host", default=DEFAULTS.host,
                        help="address to listen on (default 127.0.0.1: this machine only; "
                             "the page has no login)")
    parser.add_argument("--port", type=int, default=DEFAULTS.port,
                        help="port to listen on (default 8080; 0 picks a free one)")
    parser.add_argument("--model", default=DEFAULTS.model_name, help="model name (ms_mri)")
    parser.add_argument("--label", help="version label to ask for, e.g. stable (default: the "
                                        "server's default version)")
    parser.add_argument("--model-config", metavar="PATH",
                        help="models.config managed by `mspipe rollout`: without --label, each "
                             "study goes to stable or canary by the rollout's weight (sticky "
                             "per study), as `mspipe predict --model-config` does")
    parser.add_argument("--threshold", type=float, default=DEFAULTS.threshold,
                        help="decision threshold shown with the study probability (0.5)")
    parser.add_argument("--max-upload-mb", type=int, default=DEFAULTS.max_upload_bytes // MB,
                        help="largest upload, in MB (default 100)")
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="PEM CA bundle: talk TLS to the model server")
    parser.add_argument("--timeout", type=float, default=DEFAULTS.timeout_s,
                        help="seconds per model-server call (60)")
    parser.add_argument("--log-level", default="INFO", help="INFO, DEBUG (one line per "
                                                            "request), WARNING")


def run(args: argparse.Namespace) -> int:
    import logging

    from serving.client.model_client import ServerError
    from serving.web.app import start_web

    logging.basicConfig(level=getattr(logging, args.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        handle = start_web(args.server, args.host, args.port, model_name=args.model,
                           label=args.label, model_config=args.model_config,
                           threshold=args.threshold,
                           max_upload_bytes=args.max_upload_mb * MB, tls_ca=args.tls_ca,
                           timeout_s=args.timeout)
    except (OSError, ValueError) as error:
        print(f"error: cannot start the web page on {args.host}:{args.port}: {error}",
              file=sys.stderr)
        return 1
    print(f"Web page for clinicians: {handle.url}  (model server {args.server}; "
          "Ctrl-C to stop)", flush=True)
    try:
        handle.client.metadata(label=args.label)
    except ServerError as error:
        print(f"warning: the model server {args.server} does not answer yet ({error.code.name});"
              " the page will say so until it does", file=sys.stderr, flush=True)
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
