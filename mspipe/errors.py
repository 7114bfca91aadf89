"""Exit codes and the one exception of `mspipe` commands (the convention: mspipe/main.py)."""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1         # the operation failed; one line on stderr says why
EXIT_USAGE = 2          # argparse's own code, and arguments that cannot be acted on
EXIT_ROLLED_BACK = 3    # `mspipe rollout analyze --auto` rolled the canary back
EXIT_INCONCLUSIVE = 4   # `mspipe rollout analyze` could not decide (an outage hit stable too)


class CommandError(Exception):
    """An expected failure: main prints `mspipe <command>: error: <message>`, no traceback.

    Commands turn the errors they expect (a server that refuses, a bad config file) into this,
    so anything else still shows its traceback: that is a bug. The message names options,
    configuration files and counts, never patient data (raw UIDs, input file names).
    """

    def __init__(self, message: str, exit_code: int = EXIT_FAILED):
        super().__init__(message)
        self.exit_code = exit_code


def file_error(error: OSError) -> CommandError:
    """For a file the user named as an option (a CA bundle, models.config), not an input."""
    return CommandError(f"{error.filename or ''}: {error.strerror or error}")
