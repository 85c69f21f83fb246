"""The project's user-error exceptions.

A :class:`UserError` is a failure the user can fix (a missing or foreign file, a bad config value,
an out-of-range flag). Its message is one line: ``<file>: <problem> (<what to do>)``. Top-level
scripts turn it into that line on stderr and a non-zero exit (:func:`common.cli.run_main`); no
traceback. Library code raises the specific subclasses (``CheckpointError``, ``AudioError``,
``ConfigError``, ...), which also subclass the built-in type older callers catch.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake the user can fix; ``str(e)`` is the one line shown to them."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        message = " ".join(str(message).split())  # always one line
        if hint:
            message = f"{message} ({hint})"
        super().__init__(message)

    def __str__(self) -> str:  # also when mixed with KeyError (which would quote the text)
        return str(self.args[0]) if self.args else ""


class UsageError(UserError, ValueError):
    """A command-line flag is missing, malformed or out of range."""

    exit_code = 2


class InputError(UserError, ValueError):
    """An input file or value is unusable (missing, unreadable, of the wrong kind)."""


class ConfigError(UserError, ValueError):
    """A config file (config.json / diffusion.yaml) is missing a key or has a bad value."""


class PartialFailure(UserError):
    """A batch finished, but some of its inputs failed (each was reported as it happened)."""

    exit_code = 3
