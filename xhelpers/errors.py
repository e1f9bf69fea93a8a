"""Every error xhelpers raises, under one root.

Each error is also a standard exception (``ValueError``, ``LookupError``, ...) so
callers can catch what they already know, and each pickles with its attributes,
because errors cross process boundaries (workers, SLURM nodes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BackendError",
    "ConfigError",
    "ExperimentDefinitionError",
    "PatternError",
    "XHelpersError",
]


class XHelpersError(Exception):
    """Root of all xhelpers errors."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes are not in ``args``; carry them in the state.
        return (type(self), self.args, self.__dict__)


class ExperimentDefinitionError(XHelpersError, ValueError):
    """A group or its experiments are defined wrongly (names, duplicates, non-callables)."""

    def __init__(self, message: str, *, offending: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.offending = list(offending)


class PatternError(XHelpersError, LookupError):
    """A selection pattern matched no experiment."""

    def __init__(self, message: str, *, pattern: str = "", suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.pattern = pattern
        self.suggestions = list(suggestions)


class ConfigError(XHelpersError, ValueError):
    """A config value, field, file or class is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BackendError(XHelpersError, RuntimeError):
    """An execution backend is unknown or could not run what it was given."""
