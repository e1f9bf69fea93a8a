"""What a Slack run has yet to post: replies in order, log records batched into messages.

The caller's threads (and the logging handler) add to it; the posting thread takes from
it, waiting for the next message. After :meth:`SlackOutbox.stop` (a failure) it holds
nothing and takes nothing more.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from xhelpers.notify.messages import records_text

__all__ = ["SlackOutbox"]


class SlackOutbox:
    """A thread-safe queue of ``(text, broadcast)`` messages, log records batched by time."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._messages: deque[tuple[str, bool]] = deque()
        self._lines: list[str] = []
        self._dropped = 0
        self._due = 0.0
        self._closing = False
        self.failure: str | None = None  # set by stop(): why nothing more is posted

    def add_record(self, line: str, *, window: float, limit: int) -> None:
        """Buffer a record line; the buffer becomes a message ``window`` s after its first.

        Beyond ``limit`` buffered lines, records are only counted.
        """
        with self._cond:
            if self.failure is not None:
                return
            if len(self._lines) >= limit:
                self._dropped += 1
                return
            self._lines.append(line)
            if len(self._lines) == 1:
                self._due = time.monotonic() + window
                self._cond.notify_all()

    def add_message(self, text: str, broadcast: bool) -> None:
        """Queue a message after the records buffered so far."""
        with self._cond:
            if self.failure is not None:
                return
            self._cut_locked()
            self._messages.append((text, broadcast))
            self._cond.notify_all()

    def _cut_locked(self) -> None:
        """Turn the buffered records into one message (capped) at the end of the queue."""
        if not self._lines and not self._dropped:
            return
        self._messages.append((records_text(self._lines, self._dropped), False))
        self._lines, self._dropped = [], 0

    def next(self) -> tuple[str, bool] | None:
        """The next message, once there is one; None once closed and empty, or stopped."""
        with self._cond:
            while True:
                if self.failure is not None:
                    return None
                if self._messages:
                    return self._messages.popleft()
                if (self._lines or self._dropped) and (
                    self._closing or time.monotonic() >= self._due
                ):
                    self._cut_locked()
                    continue
                if self._closing:
                    return None
                wait = max(0.0, self._due - time.monotonic()) if self._lines else None
                self._cond.wait(wait)

    def close(self) -> None:
        """Take no more waiting: what is buffered becomes a message now."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def stop(self, failure: str) -> None:
        """Drop everything and take nothing more, because of ``failure`` (the first one kept)."""
        with self._cond:
            if self.failure is not None:
                return
            self.failure = failure
            self._messages.clear()
            self._lines.clear()
            self._dropped = 0
            self._cond.notify_all()
