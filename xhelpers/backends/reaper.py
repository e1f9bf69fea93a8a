"""The local pool's guard: ends its workers when the runner dies, however it dies.

A worker cannot tell that its runner is gone while an experiment runs (and, forked,
it inherits the other workers' pipe ends, so even an idle one never reads EOF). This
small process can: the runner starts it with ``python -I -S reaper.py RUNNER_PID``
in a session of its own (a signal to the runner's process group spares it), tells it
each worker's pid on stdin (``-PID`` once that worker has ended), and says ``stop``
when it closes the pool normally. When its parent changes instead (the runner was
SIGKILLed, crashed, lost its terminal), it interrupts every worker's process group like
Ctrl-C does, so experiments record themselves ``interrupted``, then kills what is left
after a grace period.

Standard library only, nothing of xhelpers: it starts in a few milliseconds with
``-I -S`` and must not depend on what the runner had imported.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time

__all__ = ["GRACE_S", "POLL_S", "main"]

POLL_S = 0.2  # how often the parent is checked
GRACE_S = 4.0  # between the interrupt and SIGKILL


def _signal_groups(pgids: set[int], sig: int) -> set[int]:
    """Send ``sig`` to each group; the groups that still exist."""
    alive = set()
    for pgid in pgids:
        try:
            os.killpg(pgid, sig)
        except (ProcessLookupError, PermissionError):
            continue
        alive.add(pgid)
    return alive


def _end_all(pgids: set[int]) -> None:
    alive = _signal_groups(pgids, signal.SIGINT)
    deadline = time.monotonic() + GRACE_S
    while alive and time.monotonic() < deadline:
        time.sleep(POLL_S / 2)
        alive = _signal_groups(alive, 0)
    _signal_groups(alive, signal.SIGKILL)


class _Told:
    """What the runner said so far: the worker groups to guard, and whether to stop."""

    def __init__(self) -> None:
        self.pgids: set[int] = set()
        self.stopped = False
        self.closed = False
        self._rest = b""

    def read(self, fd: int, timeout: float) -> None:
        """Take in what arrives within ``timeout``, and everything already there."""
        while not (self.stopped or self.closed):
            ready, _, _ = select.select([fd], [], [], timeout)
            if not ready:
                return
            timeout = 0.0  # (drain what is there, wait no longer)
            chunk = os.read(fd, 4096)
            if not chunk:
                self.closed = True
                return
            *lines, self._rest = (self._rest + chunk).split(b"\n")
            for line in lines:
                if line == b"stop":
                    self.stopped = True
                elif line.isdigit():
                    self.pgids.add(int(line))
                elif line[:1] == b"-" and line[1:].isdigit():  # ended: its pid may be reused
                    self.pgids.discard(int(line[1:]))


def main(argv: list[str]) -> int:
    parent = int(argv[1])
    told = _Told()
    stdin = sys.stdin.fileno()
    while True:
        if os.getppid() != parent:
            told.read(stdin, 0.0)  # pids written just before the runner died count too
            if not told.stopped:
                _end_all(told.pgids)
            return 0
        told.read(stdin, POLL_S)
        if told.stopped:
            return 0
        if told.closed:  # every writer is gone: the runner too, or it is exiting
            time.sleep(POLL_S)  # (a normal exit says stop first: this is a death)
            _end_all(told.pgids)
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
