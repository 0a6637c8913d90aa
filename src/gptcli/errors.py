"""The error types gptcli raises on purpose, each carrying its exit status.

The CLI layer is the one place that catches them: it prints one line to stderr
and exits with ``exit_code``. The terminal layer prints what a person sees (answers,
notes, progress); code below it raises and reports through the use case's
Environment, and never prints or exits.
"""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Documented exit statuses of the ``gptcli`` command."""

    OK = 0
    ERROR = 1
    USAGE = 2
    MODEL = 3
    CONTEXT_OVERFLOW = 4
    SCHEMA_MISMATCH = 5
    REMOTE = 6
    HANGUP = 129  # SIGHUP: the terminal was closed
    INTERRUPTED = 130  # SIGINT: Ctrl-C
    BROKEN_PIPE = 141  # SIGPIPE: the reader of stdout went away
    TERMINATED = 143  # SIGTERM


def signal_status(signum: int) -> ExitStatus:
    """The status of a process ended by ``signum``: 128 + its number, as shells report it."""
    return ExitStatus(128 + signum)


class GptcliError(Exception):
    """A failure with a message meant for the user and an exit status."""

    exit_code: ExitStatus = ExitStatus.ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(GptcliError):
    """The command line or its input cannot be used as given."""

    exit_code = ExitStatus.USAGE


class ConfigError(GptcliError):
    """The configuration file or an environment variable is invalid."""

    exit_code = ExitStatus.USAGE


class ModelError(GptcliError):
    """The model cannot be found, read, validated or loaded."""

    exit_code = ExitStatus.MODEL


class ContextOverflowError(GptcliError):
    """The input does not fit the model's context window."""

    exit_code = ExitStatus.CONTEXT_OVERFLOW

    def __init__(self, message: str, *, needed: int, available: int) -> None:
        super().__init__(message)
        self.needed = needed
        self.available = available


class SchemaMismatchError(GptcliError):
    """The answer does not validate against the requested JSON schema."""

    exit_code = ExitStatus.SCHEMA_MISMATCH


class RemoteError(GptcliError):
    """A model server could not be reached or answered with an error."""

    exit_code = ExitStatus.REMOTE
