"""Logging for runs: the runner's console, each experiment's log file, and forwarding.

Library code only calls ``logging.getLogger(__name__)``; the handlers here are
installed by the CLI and the runner, never at import time.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Protocol

__all__ = [
    "EXPERIMENT_LOG",
    "ForwardHandler",
    "console_logging",
    "emit_forwarded",
    "experiment_logging",
    "level_for_verbosity",
    "set_status_line",
]

EXPERIMENT_LOG = "experiment.log"
_FILE_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# The experiment running in this process; the console prefixes records with it.
_current: str | None = None


class StatusLine(Protocol):
    def clear(self) -> None: ...
    def redraw(self) -> None: ...


# A progress line on the terminal below the log; records are printed above it.
_status_line: StatusLine | None = None


def set_status_line(line: StatusLine | None) -> None:
    global _status_line
    _status_line = line


def level_for_verbosity(verbose: int, default: str = "WARNING") -> str:
    """Console level for ``-v`` counts: none = default, 1 = INFO, 2+ = DEBUG."""
    if verbose <= 0:
        return default
    return "INFO" if verbose == 1 else "DEBUG"


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        name = getattr(record, "experiment", None) or _current
        if name:
            text = f"[{name}] {text}"
        return text


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now (click's CliRunner swaps it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(_ConsoleFormatter("%(levelname)s %(message)s"))

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        line = _status_line
        if line is None:
            super().emit(record)
            return
        line.clear()
        super().emit(record)
        line.redraw()


@contextmanager
def console_logging(level: str | int, *, force: bool = True) -> Iterator[None]:
    """Show log records at ``level`` and up on stderr while the block runs.

    With ``force=False`` nothing is installed when the root logger already has
    handlers (the caller configured logging themselves).
    """
    root = logging.getLogger()
    if not force and root.handlers:
        yield
        return
    handler = _ConsoleHandler()
    handler.setLevel(level)
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(min(root.level or logging.WARNING, handler.level))
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


class _ExperimentLogHandler(logging.FileHandler):
    """One per process, pointed at each experiment's log file in turn.

    Made once because a FileHandler costs a lock, a registry entry and a path lookup
    each time, and this runs for every experiment. The file is opened on the first
    record only: an experiment that logs nothing costs no file.
    """

    def __init__(self) -> None:
        super().__init__(os.devnull, delay=True)
        self.setFormatter(logging.Formatter(_FILE_FORMAT))
        self.setLevel(logging.DEBUG)

    def point_at(self, path: str | None) -> None:
        if self.stream is not None:  # the previous experiment's file was opened
            self.close()
        self.baseFilename = path or os.devnull

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # flushing onto a full disk: the log is lost, the run is not
            self.stream = None  # type: ignore[assignment]

    def handleError(self, record: logging.LogRecord) -> None:
        # A record that cannot be written (full disk) is dropped without logging's
        # traceback on stderr; the metafile says what became of the run.
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)


_log_handler: _ExperimentLogHandler | None = None


@contextmanager
def experiment_logging(name: str, folder: str, logger_name: str = "") -> Iterator[None]:
    """Route every record of ``logger_name`` ('' = all) to ``<folder>/experiment.log``."""
    global _current, _log_handler
    logger = logging.getLogger(logger_name or None)
    handler = _log_handler
    if handler is None:
        handler = _log_handler = _ExperimentLogHandler()
    elif handler.baseFilename != os.devnull:  # an experiment running another one inside
        handler = _ExperimentLogHandler()
    handler.point_at(f"{folder}/{EXPERIMENT_LOG}")
    old_level, old_current = logger.level, _current
    logger.addHandler(handler)
    if old_level != logging.DEBUG:  # setLevel clears every logger's cache: skip if we can
        logger.setLevel(logging.DEBUG)
    _current = name
    try:
        yield
    finally:
        _current = old_current
        if old_level != logging.DEBUG:
            logger.setLevel(old_level)
        logger.removeHandler(handler)
        handler.point_at(None)


class ForwardHandler(logging.Handler):
    """In a worker: send records to the runner as plain dicts through ``send``.

    Records emitted by processes forked from the worker (an experiment's own pool)
    are not forwarded: they would write into the worker's pipe concurrently.
    They still reach ``experiment.log`` through the inherited file handler.
    """

    def __init__(self, send: Callable[[dict[str, Any]], None], level: int) -> None:
        super().__init__(level)
        self._send = send
        self._pid = os.getpid()

    def emit(self, record: logging.LogRecord) -> None:
        if os.getpid() != self._pid:
            return
        try:
            data = dict(record.__dict__)
            data["msg"] = record.getMessage()
            data["args"] = None
            if record.exc_info:
                data["exc_text"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
            data["exc_info"] = None
            data["experiment"] = getattr(record, "experiment", None) or _current
            data = {k: v for k, v in data.items() if _plain(v)}
            self._send(data)
        except Exception:
            self.handleError(record)


def _plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def emit_forwarded(data: dict[str, Any]) -> None:
    """In the runner: hand a forwarded record to the local handlers."""
    record = logging.makeLogRecord(data)
    logging.getLogger(record.name).handle(record)
