"""Options shared by `mspipe` commands: each declared once, with the same spelling and help.

Defaults come from the caller (read from the settings dataclass of the code it runs) or from
the serving contract, so this module imports nothing heavy and `mspipe --help` stays instant.
`add_settings_options` and `settings_from_args` derive a command's options from a settings
dataclass whose fields carry their flag in `metadata` (see serving/server/settings.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from typing import Any, TypeVar

from components.contract import DEFAULT_MODEL_NAME
from mspipe.errors import EXIT_USAGE, CommandError

_Settings = TypeVar("_Settings")


def add_server_address(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--server", required=True, metavar="HOST:PORT",
                        help="gRPC address of the model server, e.g. 127.0.0.1:8500")


def add_model_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=DEFAULT_MODEL_NAME,
                        help="model name (default: %(default)s)")


def add_version_choice(parser: argparse.ArgumentParser, *, exact_version: bool) -> None:
    """--label, and with `exact_version` also --version (one or the other, never both)."""
    help_text = "version label, e.g. stable or canary (default: the server's default version)"
    if not exact_version:
        parser.add_argument("--label", help=help_text)
        return
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--label", help=help_text)
    choice.add_argument("--version", type=int, help="exact model version")


def add_model_config(parser: argparse.ArgumentParser, *, required: bool, help: str) -> None:
    parser.add_argument("--model-config", required=required, metavar="PATH", help=help)


def add_routing_model_config(parser: argparse.ArgumentParser) -> None:
    """Client side of a canary: route whole studies as `mspipe rollout` weighs them."""
    add_model_config(parser, required=False,
                     help="models.config managed by `mspipe rollout`: unless a version is "
                          "asked for, each study goes to stable or canary by the rollout's "
                          "weight (sticky per study)")


def add_tls_ca(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tls-ca", metavar="FILE",
                        help="PEM CA bundle: connect with TLS, verifying the server")


def add_timeout(parser: argparse.ArgumentParser, default: float, what: str) -> None:
    parser.add_argument("--timeout", type=float, default=default,
                        help=f"seconds {what} (default: %(default)s)")


def add_json(parser: argparse.ArgumentParser, what: str = "the result") -> None:
    parser.add_argument("--json", action="store_true",
                        help=f"print {what} as one JSON document on stdout (logs go to stderr)")


def add_image_size(parser: argparse.ArgumentParser, default: int) -> None:
    parser.add_argument("--image-size", type=int, default=default,
                        help="side of the square model input image (default: %(default)s)")


def add_salt(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument("--salt", default=default,
                        help="key of the study/series/file hashes, secret per deployment: "
                             "file:PATH or env:NAME keep it out of metadata and logs")


def add_beam_args(parser: argparse.ArgumentParser, default_runner: str) -> None:
    parser.add_argument("--beam-arg", action="append", default=[], dest="beam_args",
                        metavar="ARG", help="a Beam pipeline argument, repeatable and passed "
                        "through unchanged, e.g. --beam-arg=--runner=FlinkRunner (default: "
                        f"{default_runner})")


def add_log_level(parser: argparse.ArgumentParser, what: str = "") -> None:
    parser.add_argument("--log-level", default="INFO",
                        help=f"INFO, DEBUG{what} or WARNING (default: %(default)s)")


def configure_logging(level: str) -> None:
    """One log format for the long-running commands (serve, web), on stderr."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def add_settings_options(parser: argparse.ArgumentParser, settings_type: type) -> None:
    """One option per field of the dataclass that names a `flag` in its metadata (plus its
    aliases). Options default to None, so the dataclass keeps the one home of each default."""
    for field in _option_fields(settings_type):
        flags = (field.metadata["flag"], *field.metadata.get("aliases", ()))
        parser.add_argument(*flags, dest=field.name, **_argparse_spec(field))


def settings_from_args(settings_type: type[_Settings], args: argparse.Namespace) -> _Settings:
    """The dataclass back from the options of `add_settings_options`: the options given, the
    dataclass's defaults for the others; a value it refuses is a usage error."""
    values = {}
    for field in _option_fields(settings_type):
        value = getattr(args, field.name, None)
        if value is None:
            continue
        unit = field.metadata.get("unit", 1)
        values[field.name] = value * unit if unit != 1 else value
    try:
        return settings_type(**values)
    except ValueError as error:
        raise CommandError(str(error), EXIT_USAGE) from error


def parse_bool(text: str) -> bool:
    """A boolean option's value as TF Serving's flag parser reads it: true/false, 1/0."""
    value = text.strip().lower()
    if value in ("true", "1"):
        return True
    if value in ("false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _option_fields(settings_type: type) -> list[dataclasses.Field]:
    return [field for field in dataclasses.fields(settings_type) if "flag" in field.metadata]


def _argparse_spec(field: dataclasses.Field) -> dict[str, Any]:
    """Type, help (with the default) and requiredness of an option, from the field's default
    and metadata; the argparse default is None (see settings_from_args)."""
    help_text = field.metadata["help"]
    if isinstance(field.default, bool):
        # `--flag` alone means true, as TF Serving's bool flags; `--flag=false` turns it off.
        return {"nargs": "?", "const": True, "type": parse_bool, "metavar": "true|false",
                "help": f"{help_text} (default: {str(field.default).lower()})"}
    spec = {"metavar": field.metadata.get("metavar"), "help": help_text}
    if field.default is dataclasses.MISSING:
        return {**spec, "required": True}
    if field.default is None:
        return {**spec, "type": field.metadata["type"]} if field.metadata.get("type") else spec
    unit = field.metadata.get("unit", 1)
    shown = field.default if unit == 1 else round(field.default / unit, 3)
    if spec["metavar"] is None and isinstance(field.default, (int, float)):
        spec["metavar"] = "N"
    return {**spec, "type": type(field.default), "help": f"{help_text} (default: {shown})"}
