"""Live progress of a run: one updating line on a terminal, plain lines elsewhere.

On a terminal the line is redrawn in place, and log records are printed above it
(the console handler clears it first and redraws it after), so log lines are never
garbled. Without a terminal (a log file, SLURM, CI) a plain line is printed every
``interval`` seconds instead.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from xhelpers.core import logs, results
from xhelpers.core.summary import SKIPPED, SUCCESS

__all__ = ["Progress", "format_duration"]


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Counts of a run's experiments as they end, shown as they change."""

    def __init__(
        self,
        group: str,
        total: int,
        jobs: int,
        *,
        stream: TextIO | None = None,
        interval: float = 30.0,
    ) -> None:
        self.group = group
        self.total = total
        self.jobs = jobs
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = 0.25 if self.tty else interval
        self.done = self.failed = self.interrupted = self.blocked = self.other = 0
        # How many experiments run now, as the backend knows it (None: it cannot tell,
        # and as many as may run are shown while experiments are left).
        self.running: Callable[[], int | None] = lambda: None
        self.start = time.monotonic()
        self._last = self.start
        self._shown = False

    # -- what the runner calls --------------------------------------------------------
    def __enter__(self) -> Progress:
        if self.tty:
            logs.set_status_line(self)
            self.redraw()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tty:
            self.clear()
            logs.set_status_line(None)
        else:  # a log file ends with where the run ended, not where it was a while ago
            print(self.text(), file=self.stream, flush=True)

    def update(self, status: str) -> None:
        if status == SUCCESS:
            self.done += 1
        elif status == results.FAILED:
            self.failed += 1
        elif status == results.INTERRUPTED:
            self.interrupted += 1
        elif status == results.BLOCKED:
            self.blocked += 1
        elif status != SKIPPED:
            self.other += 1
        self.tick(force=self.tty)

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            self.redraw()
        else:
            print(self.text(), file=self.stream, flush=True)

    # -- the line -----------------------------------------------------------------------
    def text(self) -> str:
        finished = self.done + self.failed + self.interrupted + self.blocked + self.other
        left = max(0, self.total - finished)
        known = self.running()
        running = min(self.jobs, left) if known is None else min(known, left)
        elapsed = time.monotonic() - self.start
        parts = [f"{self.group}: {self.done}/{self.total} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.interrupted:
            parts.append(f"{self.interrupted} interrupted")
        if self.blocked:
            parts.append(f"{self.blocked} blocked")
        parts += [
            f"{running} running",
            f"{left - running} left",
            f"{format_duration(elapsed)} elapsed",
        ]
        if finished and left:
            parts.append(f"~{format_duration(elapsed / finished * left)} to go")
        return ", ".join(parts)

    def redraw(self) -> None:
        width = shutil.get_terminal_size((100, 20)).columns
        self.stream.write("\r" + self.text()[: max(10, width - 1)] + "\x1b[K")
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False
