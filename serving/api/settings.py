"""Settings fields that are also command-line options, for the settings dataclasses of serving/.

A field made with `option_field` names its flag, help and unit in its metadata; mspipe/options.py
derives the argparse options from them and builds the settings back, so an option is declared
once, beside its default. Light on purpose: settings modules are read by `--help`.
"""
from __future__ import annotations

from dataclasses import MISSING, field
from typing import Any


def option_field(flag: str, help: str, default: Any = MISSING, *, unit: int = 1,
                 metavar: str | None = None, type: type | None = None,
                 aliases: tuple[str, ...] = ()) -> Any:
    """A settings field that is also the command-line option `flag` (flag value * unit);
    `type` is needed only when the default (None) does not show it. `aliases` are other
    spellings of the same option (e.g. TF Serving's `--model_config_file` and our older
    `--model-config`); a bool field's option takes `--flag`, `--flag=true|false|1|0`."""
    return field(default=default, metadata={"flag": flag, "help": help, "unit": unit,
                                            "metavar": metavar, "type": type,
                                            "aliases": tuple(aliases)})
