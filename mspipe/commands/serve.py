"""`mspipe serve --model_config_file models.config`: the local TF-Serving-compatible server.

Its options are the fields of ServerSettings (serving/server/settings.py declares each one, with
TF Serving's spellings), plus the TF Serving flags that mean nothing here
(serving/server/tf_serving_flags.py: accepted with a warning, or refused).
"""
from __future__ import annotations

import argparse
import logging

from mspipe import options
from mspipe.errors import EXIT_USAGE, CommandError
from serving.server.settings import ServerSettings  # light: no gRPC, no TensorFlow
from serving.server.tf_serving_flags import FOREIGN_FLAGS, ForeignFlag, is_default

LOG = logging.getLogger("mspipe.serve")
LABEL_FLAG = "--allow_version_labels_for_unavailable_models=true"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_settings_options(parser, ServerSettings)
    parser.add_argument("--version", nargs="?", const=True, type=options.parse_bool,
                        metavar="true|false", help="print the versions and exit")
    options.add_log_level(parser)
    _add_foreign_flags(parser)


def run(args: argparse.Namespace) -> int:
    if args.version:
        return _print_version()
    settings = options.settings_from_args(ServerSettings, args)  # usage errors before TF loads
    foreign = _given_foreign_flags(args)
    from serving.api.errors import ServingError
    from serving.api.model_config import ModelConfigError
    from serving.server.grpc_server import ModelServer

    options.configure_logging(args.log_level)
    if foreign:
        LOG.warning("TF Serving flags without effect on the local server, ignored: %s",
                    ", ".join(f"--{name}" for name in foreign))
    try:
        server = ModelServer(settings).start()
    except (ServingError, ModelConfigError, OSError) as error:
        raise CommandError(f"cannot start the server: {error}{_hint(settings, error)}") from error
    server.install_signal_handlers()
    print(f"Serving {sorted(server.manager.model_names())} on {server.address}", flush=True)
    server.wait()
    return 0


def _hint(settings: ServerSettings, error: Exception) -> str:
    """TF Serving refuses, at startup, labels of versions not loaded yet unless told; the
    error text stays TF Serving's, the command adds which flag to give."""
    if settings.allow_version_labels_for_unavailable_models or \
            "Request to assign label to version" not in str(error):
        return ""
    return (f" (a models.config with version_labels at startup needs {LABEL_FLAG}, as "
            f"tensorflow_model_server)")


def _add_foreign_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "TF Serving flags without meaning here",
        "accepted and ignored (with a warning): " +
        " ".join(f"--{f.name}" for f in FOREIGN_FLAGS if not f.refused_because) +
        "; refused unless given TF Serving's default: " +
        " ".join(f"--{f.name}" for f in FOREIGN_FLAGS if f.refused_because))
    for flag in FOREIGN_FLAGS:
        spec = {"nargs": "?", "const": True, "type": options.parse_bool} \
            if flag.kind is bool else {"type": flag.kind}
        group.add_argument(f"--{flag.name}", dest=_dest(flag), help=argparse.SUPPRESS, **spec)


def _given_foreign_flags(args: argparse.Namespace) -> list[str]:
    """Names of the ignored flags given; a refused one with another value is a usage error."""
    given = []
    for flag in FOREIGN_FLAGS:
        value = getattr(args, _dest(flag))
        if value is None:
            continue
        if flag.refused_because and not is_default(flag, value):
            raise CommandError(f"--{flag.name} is not supported by the local server: "
                               f"{flag.refused_because}", EXIT_USAGE)
        given.append(flag.name)
    return given


def _dest(flag: ForeignFlag) -> str:
    return f"tf_serving_{flag.name}"


def _print_version() -> int:
    """As `tensorflow_model_server --version`: the server, then the TensorFlow library."""
    from importlib import metadata

    try:
        library = metadata.version("tensorflow")
    except metadata.PackageNotFoundError:
        library = "not installed"
    print(f"TensorFlow ModelServer: mspipe local server (TF Serving 2.16 flags and API)\n"
          f"TensorFlow Library: {library}")
    return 0
