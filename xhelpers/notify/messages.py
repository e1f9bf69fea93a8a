"""The texts xhelpers posts to Slack: a run's parent message, log records, outcomes, summary.

Every function returns text ready to post: Slack-escaped and clipped to Slack's limits.
"""

from __future__ import annotations

import getpass
import logging
import os
import traceback
from typing import Protocol

from xhelpers.core import logs
from xhelpers.core.summary import show_path

__all__ = [
    "MAX_LISTED",
    "MAX_MESSAGE_CHARS",
    "MAX_RECORD_CHARS",
    "SummaryLike",
    "outcome_text",
    "parent_text",
    "record_line",
    "records_text",
    "summary_text",
]

MAX_MESSAGE_CHARS = 3000  # of log lines or summary per message (Slack truncates at 40,000)
MAX_RECORD_CHARS = 500  # per log record
MAX_LISTED = 20  # failures listed in the summary message

_ICONS = {"success": ":white_check_mark:", "failed": ":x:", "blocked": ":no_entry_sign:"}
_WORDS = {
    "success": "succeeded",
    "failed": "failed",
    "interrupted": "interrupted",
    "blocked": "blocked (an upstream did not succeed)",
}


class SummaryLike(Protocol):
    """What :func:`summary_text` needs of a :class:`~xhelpers.summary.RunSummary`."""

    group: str
    interrupted: bool

    def counts(self) -> dict[str, int]: ...


def _escape(text: str) -> str:
    """Slack's text escaping: the three characters it reserves for markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str) -> str:
    return "```\n" + _escape(text).replace("```", "'''") + "\n```"


def _exception_line(record: logging.LogRecord) -> str | None:
    """The first line of the exception a record carries ('ValueError: bad value')."""
    if record.exc_info and record.exc_info[1] is not None:
        etype, value = record.exc_info[0], record.exc_info[1]
        text = "".join(traceback.format_exception_only(etype, value))
    elif record.exc_text:
        # After the last indented frame line come the exception's own lines.
        lines = record.exc_text.rstrip().splitlines()
        tail = 0
        for i, line in enumerate(lines):
            if line.startswith(" "):
                tail = i + 1
        text = "\n".join(lines[tail:])
    else:
        return None
    first = text.strip().splitlines()
    return first[0] if first else None


def record_line(record: logging.LogRecord) -> str:
    """One log record as a line: ``[experiment] LEVEL message (exception)``."""
    name = getattr(record, "experiment", None) or logs._current
    message = record.getMessage()
    exc = _exception_line(record)
    if exc and exc not in message:
        message += f" ({exc})"
    line = f"[{name}] {record.levelname} {message}" if name else f"{record.levelname} {message}"
    return _clip(line, MAX_RECORD_CHARS)


def records_text(lines: list[str], dropped: int) -> str:
    """One message of record lines (as many as fit), noting those left out or ``dropped``."""
    body: list[str] = []
    used = 0
    for line in lines:
        if body and used + len(line) + 1 > MAX_MESSAGE_CHARS:
            break
        body.append(line)
        used += len(line) + 1
    dropped += len(lines) - len(body)
    text = _code("\n".join(body)) if body else ""
    if dropped:
        text += (
            f"\n_{dropped} more record{'s' if dropped != 1 else ''} not posted; "
            "each experiment's experiment.log has them all_"
        )
    return text.lstrip("\n")


def summary_text(summary: SummaryLike) -> tuple[str, bool]:
    """The summary message (``str(summary)`` as the console shows it) and whether to broadcast."""
    counts = summary.counts()
    failed, interrupted = counts.get("failed", 0), counts.get("interrupted", 0)
    blocked = counts.get("blocked", 0)
    if summary.interrupted:
        head = f":warning: *{summary.group}* stopped by Ctrl-C"
    elif failed:
        head = f":x: *{summary.group}* finished: {failed} failed"
        if blocked:
            head += f", {blocked} blocked"
    elif blocked:
        head = f":no_entry_sign: *{summary.group}* finished: {blocked} blocked"
    elif interrupted:
        head = f":warning: *{summary.group}* finished: {interrupted} interrupted"
    else:
        head = f":white_check_mark: *{summary.group}* finished"
    lines = str(summary).splitlines()
    if len(lines) > MAX_LISTED + 1:
        more = len(lines) - 1 - MAX_LISTED
        lines = [*lines[: MAX_LISTED + 1], f"  ... and {more} more"]
    return f"{head}\n{_code(_clip(chr(10).join(lines), MAX_MESSAGE_CHARS))}", failed > 0


def parent_text(
    group: str, *, selected: int, to_run: int, skipped: int, backend: str, jobs: int = 1
) -> str:
    """The message a run's thread hangs from."""
    where = f"{backend}, -j{jobs}" if backend == "local" else backend
    return (
        f":arrow_forward: *{_escape(group)}* started by {_escape(_user())} on "
        f"{_escape(os.uname().nodename)} ({_escape(where)}): {selected} selected, "
        f"{to_run} to run, {skipped} skipped"
    )


def outcome_text(
    name: str,
    status: str,
    folder: str,
    duration: float | None = None,
    error: str | None = None,
) -> str:
    """One experiment's outcome, as a SLURM task posts it into the run's thread."""
    text = f"{_ICONS.get(status, ':warning:')} [{name}] {_WORDS.get(status, status)}"
    text += f" on {os.uname().nodename}"
    if duration is not None:
        text += f" after {duration:.1f}s"
    if error and error.strip() and error != status:
        text += f": {error.strip().splitlines()[0]}"
    return _escape(_clip(f"{text}  ({show_path(folder)})", MAX_MESSAGE_CHARS))


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers without a passwd entry)
        return str(os.getuid())
