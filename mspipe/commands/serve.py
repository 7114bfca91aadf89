"""`mspipe serve --model-config models.config`: the local TF-Serving-compatible server.

Its options are the fields of ServerSettings (serving/server/settings.py declares each one).
"""
from __future__ import annotations

import argparse

from mspipe import options
from mspipe.errors import CommandError
from serving.server.settings import ServerSettings  # light: no gRPC, no TensorFlow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_settings_options(parser, ServerSettings)
    options.add_log_level(parser)


def run(args: argparse.Namespace) -> int:
    settings = options.settings_from_args(ServerSettings, args)  # usage errors before TF loads
    from serving.api.errors import ServingError
    from serving.api.model_config import ModelConfigError
    from serving.server.grpc_server import ModelServer

    options.configure_logging(args.log_level)
    server = ModelServer(settings)
    try:
        server.start()
    except (ServingError, ModelConfigError, OSError) as error:
        raise CommandError(f"cannot start the server: {error}") from error
    server.install_signal_handlers()
    print(f"Serving {sorted(server.manager.model_names())} on {server.address}", flush=True)
    server.wait()
    return 0
