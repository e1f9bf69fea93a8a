"""Every error xhelpers raises, under one root.

Each error is also a standard exception (``ValueError``, ``LookupError``, ...) so
callers can catch what they already know, and each pickles with its attributes,
because errors cross process boundaries (workers, SLURM nodes).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Sequence
from typing import Any

__all__ = [
    "BackendError",
    "CommandError",
    "ConfigError",
    "ExperimentDefinitionError",
    "ExperimentFileError",
    "FileFormatError",
    "MissingDependencyError",
    "PatternError",
    "RemoteError",
    "ResultTreeError",
    "ResultsQueryError",
    "XHelpersError",
]


class XHelpersError(Exception):
    """Root of all xhelpers errors."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only attributes are not in ``args``; carry them in the state.
        return (type(self), self.args, self.__dict__)


class _UsageProblem(XHelpersError):
    """A mistake in what the user wrote (a definition, a pattern, a config): exit code 2.

    Raised while ``run.py`` is imported, before the CLI can catch it, it would end the
    script with a traceback and exit code 1; the first one raised installs a
    ``sys.excepthook`` that prints it as the CLI prints its errors, one line and exit 2,
    when nothing catches it. Every other exception keeps the hook that was there.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        _install_usage_hook()


_previous_hook: Any = None


def _install_usage_hook() -> None:
    global _previous_hook
    if _previous_hook is None:
        _previous_hook = sys.excepthook
        sys.excepthook = _usage_hook


def _usage_hook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
    # (an interactive session must live on: there the traceback is the answer)
    if not isinstance(exc, _UsageProblem) or hasattr(sys, "ps1") or sys.flags.interactive:
        _previous_hook(kind, exc, tb)
        return
    sys.stderr.write(f"Error: {exc}\n")
    sys.stderr.flush()
    sys.stdout.flush()
    atexit._run_exitfuncs()  # what a normal exit runs; os._exit skips it
    os._exit(2)


class ExperimentDefinitionError(_UsageProblem, ValueError):
    """A group or its experiments are defined wrongly (names, duplicates, non-callables)."""

    def __init__(self, message: str, *, offending: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.offending = list(offending)


class PatternError(_UsageProblem, LookupError):
    """A selection pattern matched no experiment."""

    def __init__(self, message: str, *, pattern: str = "", suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.pattern = pattern
        self.suggestions = list(suggestions)


class ConfigError(_UsageProblem, ValueError):
    """A config value, field, file or class is wrong."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class BackendError(XHelpersError, RuntimeError):
    """An execution backend is unknown or could not run what it was given.

    ``usage`` is True when the caller asked for something impossible (an unknown
    backend, one whose package is not installed) rather than the backend failing.
    """

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


class ResultTreeError(XHelpersError, OSError):
    """An experiment's place in the result tree cannot be used safely.

    Its folder (or a parent) is a file, its metafile is not a regular file, or a
    symlink on the way leads out of the output directory. Only that experiment fails;
    ``path`` names the offending entry.
    """

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:  # OSError's own formatting would show the args tuple
        return str(self.args[0]) if self.args else ""


class ExperimentFileError(ExperimentDefinitionError):
    """An experiment file (TOML) is wrong; the message starts with ``file:line:``."""

    def __init__(
        self, message: str, *, path: str = "", line: int | None = None, key: str = ""
    ) -> None:
        super().__init__(message, offending=[key] if key else ())
        self.path = path
        self.line = line
        self.key = key


class CommandError(XHelpersError, RuntimeError):
    """A command experiment exited non-zero, was killed, or timed out.

    ``exit_code`` is the shell's exit code (negative: killed by that signal; None: it
    did not end by itself), ``last_lines`` the last lines of its output.
    """

    def __init__(
        self,
        message: str,
        *,
        exit_code: int | None = None,
        last_lines: Sequence[str] = (),
        command: str = "",
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.last_lines = list(last_lines)
        self.command = command
        self.timed_out = timed_out


class FileFormatError(XHelpersError, ValueError):
    """``xh.save``/``xh.load`` cannot handle a file: no format for its name, or the
    library its format needs is not installed (the message says which to install)."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message)
        self.path = path


class MissingDependencyError(XHelpersError, ImportError):
    """An optional library a feature needs is not installed (``as_frame=True`` needs
    pandas, ``--plot`` matplotlib); the message names what to install."""

    def __init__(self, message: str, *, package: str = "", extra: str = "") -> None:
        super().__init__(message)
        self.package = package
        self.extra = extra


class ResultsQueryError(_UsageProblem, ValueError):
    """A question about results that cannot be answered as asked: an unknown parameter
    or metric, a metric that is not numeric, an experiment to compare that is not there."""


class RemoteError(XHelpersError, RuntimeError):
    """A remote (``--remote``, ``--pull``) cannot be reached or used: SSH refused the
    connection or the host key, the connection was lost, sync or pull failed.
    ``remote`` names it as the config does."""

    def __init__(self, message: str, *, remote: str = "") -> None:
        super().__init__(message)
        self.remote = remote
