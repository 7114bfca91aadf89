"""`mspipe serve --model-config models.config`: the local TF-Serving-compatible server."""
from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from serving.server.settings import ServerSettings  # light: no TensorFlow at --help
    defaults = ServerSettings(model_config="")
    parser.add_argument("--model-config", required=True,
                        help="models.config (TF Serving ModelServerConfig text proto)")
    parser.add_argument("--host", default=defaults.host,
                        help="address to bind (default loopback; 0.0.0.0 exposes the "
                             "unauthenticated API to the network)")
    parser.add_argument("--port", type=int, default=defaults.port,
                        help="gRPC port (0 picks a free one)")
    parser.add_argument("--poll-seconds", type=float, default=defaults.poll_seconds,
                        help="how often base paths are scanned for new versions")
    parser.add_argument("--config-poll-seconds", type=float,
                        default=defaults.config_poll_seconds,
                        help="how often models.config is checked for changes (0: never)")
    parser.add_argument("--max-workers", type=int, default=defaults.max_workers,
                        help="concurrent RPC threads")
    parser.add_argument("--max-message-mib", type=int,
                        default=defaults.max_message_bytes >> 20,
                        help="largest request/response in MiB")
    parser.add_argument("--grace-seconds", type=float, default=defaults.grace_seconds,
                        help="how long SIGTERM waits for in-flight calls")
    parser.add_argument("--allow-version-labels-for-unavailable-models", action="store_true",
                        help="as TF Serving's flag: a new label may point at a version that "
                             "is not loaded yet (needed when models.config has labels at "
                             "startup); moving an existing label still needs it loaded")
    parser.add_argument("--tls-cert", help="PEM certificate chain: serve gRPC over TLS")
    parser.add_argument("--tls-key", help="PEM private key for --tls-cert")
    parser.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    from serving.api.errors import ServingError
    from serving.api.model_config import ModelConfigError
    from serving.server.grpc_server import ModelServer, ServerSettings, configure_logging  # noqa: F401

    configure_logging(args.log_level)
    if (args.tls_cert is None) != (args.tls_key is None):
        print("error: --tls-cert and --tls-key go together", file=sys.stderr)
        return 2
    settings = ServerSettings(
        model_config=args.model_config, host=args.host, port=args.port,
        poll_seconds=args.poll_seconds, config_poll_seconds=args.config_poll_seconds,
        max_workers=args.max_workers, max_message_bytes=args.max_message_mib << 20,
        grace_seconds=args.grace_seconds,
        allow_version_labels_for_unavailable_models=(
            args.allow_version_labels_for_unavailable_models),
        tls_cert_file=args.tls_cert, tls_key_file=args.tls_key)
    server = ModelServer(settings)
    try:
        server.start()
    except (ServingError, ModelConfigError, OSError) as error:
        print(f"Failed to start server. Error: {error}", file=sys.stderr)
        return 1
    server.install_signal_handlers()
    print(f"Serving {sorted(server.manager.model_names())} on {server.address}", flush=True)
    server.wait()
    return 0
