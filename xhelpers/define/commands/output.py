"""A command's stdout and stderr, read as they come, split into lines and logged.

``\\r`` ends a line too (progress bars); a line longer than 64 KiB without
an end is logged in pieces. The last lines are kept for the error message.
"""

from __future__ import annotations

import logging
import os
import re
import selectors
from collections import deque
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import subprocess

__all__ = ["CommandOutput"]

_MAX_LINE = 65536  # bytes; a longer line without a newline is logged in pieces
_READ_SIZE = 65536
_LINE_END = re.compile(rb"\r\n|\r|\n")


class CommandOutput:
    """The command's stdout and stderr, split into lines as they arrive and logged."""

    def __init__(
        self, proc: subprocess.Popen[bytes], out: logging.Logger, err: logging.Logger, keep: int
    ) -> None:
        """Read ``proc``'s pipes, logging to ``out`` and ``err``; keep the last ``keep`` lines."""
        self.selector: selectors.BaseSelector = selectors.DefaultSelector()
        self.pending: dict[int, bytes] = {}
        self.after_cr: dict[int, bool] = {}
        self.last: deque[str] = deque(maxlen=keep)
        for stream, log in ((proc.stdout, out), (proc.stderr, err)):
            assert stream is not None
            fd = stream.fileno()
            self.selector.register(fd, selectors.EVENT_READ, log)
            self.pending[fd] = b""
            self.after_cr[fd] = False
        self.open = 2
        self.pidfd: int | None = None
        try:  # wakes select() when the leader exits (Linux 5.3+), even if pipes stay open
            self.pidfd = os.pidfd_open(proc.pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ, None)
        except (AttributeError, OSError):
            pass

    def pump(self, timeout: float) -> None:
        """Read what is there (waiting up to ``timeout`` for something) and log its lines."""
        for key, _ in self.selector.select(timeout):
            fd, log = key.fd, key.data
            if log is None:  # the leader's pidfd: it has exited
                self.selector.unregister(fd)
                os.close(fd)
                continue
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                self._feed(fd, data, log)
            else:
                rest = self.pending[fd]
                if rest:
                    self._emit(rest, log)
                self.pending[fd] = b""
                self.selector.unregister(fd)
                self.open -= 1

    def _feed(self, fd: int, data: bytes, log: logging.Logger) -> None:
        if self.after_cr[fd] and data.startswith(b"\n"):  # the \n of a \r\n cut in two
            data = data[1:]
        self.after_cr[fd] = data.endswith(b"\r")
        buffer = self.pending[fd] + data
        *lines, rest = _LINE_END.split(buffer)
        for line in lines:
            self._emit(line, log)
        while len(rest) > _MAX_LINE:
            self._emit(rest[:_MAX_LINE], log)
            rest = rest[_MAX_LINE:]
        self.pending[fd] = rest

    def _emit(self, raw: bytes, log: logging.Logger) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if text:
            self.last.append(text)
            log.info("%s", text)

    def close(self) -> None:
        if self.pidfd is not None and self.pidfd in self.selector.get_map():
            os.close(self.pidfd)
        self.selector.close()
