"""A third-party backend, as a package would ship one: registered by its entry point
(``xhelpers.backends``: ``inline = xh_inline_backend:InlineBackend``, see the
dist-info beside it), written against the seam alone. The contract suite runs on it.

It runs every task in this process, in order; each task's ref is this process (its
pid and start time), which any later process on this host can ask about and cancel.
"""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator, Sequence

from xhelpers.backends import UNKNOWN_STATUS, Backend, Finished, JobState, JobStatus, Submitted
from xhelpers.core.execution import RunContext, Task, execute

__all__ = ["InlineBackend"]


def _started(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] in ("Z", "X") else fields[19]


def _live(ref: str) -> int | None:
    prefix, _, rest = ref.partition(":")
    pid, _, start = rest.partition(":")
    if prefix != "inline" or not pid.isdigit() or int(pid) <= 0:
        return None
    return int(pid) if start and _started(int(pid)) == start else None


class InlineBackend(Backend):
    name = "inline"

    def __init__(self, ctx: RunContext, *, jobs: int = 1) -> None:
        super().__init__(ctx, jobs=jobs)
        self._tasks: deque[Task] = deque()
        self._stopping = False

    def submit(self, tasks: Sequence[Task]) -> dict[str, Submitted]:
        self._tasks.extend(tasks)
        ref = f"inline:{os.getpid()}:{_started(os.getpid())}"
        return {task.name: Submitted(ref) for task in tasks}

    def reports(self) -> Iterator[Finished]:
        while self._tasks and not self._stopping:
            task = self._tasks.popleft()
            yield Finished(task, execute(task, self.ctx))

    def interrupt(self) -> None:
        self._stopping = True

    @classmethod
    def states(cls, refs: Iterable[str]) -> dict[str, JobStatus]:
        return {ref: JobStatus(JobState.RUNNING) if _live(ref) else UNKNOWN_STATUS for ref in refs}

    @classmethod
    def cancel(cls, refs: Iterable[str]) -> dict[str, bool]:
        out = {}
        for ref in refs:
            pid = _live(ref)
            if pid is not None:
                os.kill(pid, signal.SIGINT)
            out[ref] = pid is not None
        return out
