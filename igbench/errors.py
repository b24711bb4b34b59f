"""Errors that the CLI prints as one line (``Error: ...``) instead of a traceback.

Every message should say what went wrong *and* how to fix it.
"""

from __future__ import annotations

from typing import Iterable


def did_you_mean(word: str, choices: Iterable[str], cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` with ``x`` the closest of ``choices`` to ``word``, or ``""`` when none is
    close enough: the suggestion every "unknown name" message ends with."""
    import difflib

    hint = difflib.get_close_matches(word, list(dict.fromkeys(choices)), n=1, cutoff=cutoff)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


class IgbenchError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    exit_code = 1


class UsageError(IgbenchError):
    """Bad command-line input (unknown plugin, bad parameter value...)."""

    exit_code = 2


def check_at_least(value, minimum: int, what: str) -> None:
    """``<what> must be >= <minimum>, got <value>`` as a :class:`UsageError` unless ``value >= minimum``: the
    check of every count an option gives (``--steps``, ``--n-test``, ``--trials-per-pair``...)."""
    if value < minimum:
        raise UsageError(f"{what} must be >= {minimum}, got {value}")


class UnknownPluginError(UsageError):
    """A name that no registered plugin of that kind has."""


class ParamError(UsageError):
    """A plugin parameter that is unknown, of the wrong type or out of range."""


class PluginError(IgbenchError):
    """A plugin that is broken: fails to import, registers a duplicate name, returns the wrong type."""


class PluginCrashed(PluginError):
    """An unexpected exception inside a third-party plugin's own code (:mod:`igbench.plugin_calls`);
    ``original`` is that exception."""

    def __init__(self, message: str, original: BaseException) -> None:
        super().__init__(message)
        self.original = original


class DataError(IgbenchError):
    """A data set that is missing, corrupted (checksum mismatch) or malformed."""


class DatasetNotFound(DataError):
    """A data set that is in none of the searched places and could not be downloaded."""


class TrainingError(IgbenchError):
    """Training failed (for example the loss became NaN)."""


class ResultError(IgbenchError):
    """A result file that does not validate against the schema, or cannot be read."""


def with_article(word: str) -> str:
    """``word`` with its indefinite article: "an architecture", "a defense"."""
    return f"{'an' if word[:1].lower() in 'aeiou' else 'a'} {word}"
