"""Feeding a backend that does not chain: a task goes out once its upstreams succeeded.

With ``-jN`` the pool keeps N experiments running while every edge holds: a downstream
is handed over as soon as its own upstreams are done, not when a whole stage is. When
an upstream does not succeed, everything that needs it (transitively) is blocked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task, blocked_line
from xhelpers.core.records import record_blocked
from xhelpers.core.summary import BUSY, NOT_STARTED, QUEUED, SKIPPED, SUCCESS, ExperimentOutcome

__all__ = ["Feeder"]

# How an upstream ended, for its downstreams: usable, never (block them), or not now.
OK, NEVER, NOT_NOW = "ok", "never", "not now"


class Feeder:
    """Holds back the tasks whose ``after`` has not succeeded yet."""

    def __init__(self, tasks: Sequence[Task], labels: Mapping[str, str]) -> None:
        self._missing: dict[str, set[str]] = {}  # folder -> upstream folders not done
        self._held: dict[str, Task] = {}
        self._needed_by: dict[str, list[str]] = {}
        self._names = labels  # folder -> how the run names it
        self.ready: list[Task] = []
        for task in tasks:
            if task.after:
                self._held[task.folder] = task
                self._missing[task.folder] = set(task.after)
                for up in task.after:
                    self._needed_by.setdefault(up, []).append(task.folder)
            else:
                self.ready.append(task)

    @property
    def held(self) -> int:
        return len(self._held)

    def take_ready(self) -> list[Task]:
        ready, self.ready = self.ready, []
        return ready

    def ended(self, task: Task, status: str, ctx: RunContext) -> list[ExperimentOutcome]:
        """``task`` ended with outcome ``status``: its downstreams whose upstreams have
        all succeeded join :attr:`ready`; those it blocks are recorded ``blocked`` (their
        outcomes returned) and never go out; those that need one running elsewhere wait
        for a later run."""
        if status in (SUCCESS, SKIPPED):
            how = OK
        elif status in (BUSY, QUEUED, NOT_STARTED):
            how = NOT_NOW
        else:
            how = NEVER
        outcomes = []
        for down, by in self._release(task.folder, how):
            if record_blocked(down, ctx, by):
                outcomes.append(
                    ExperimentOutcome(
                        self._names.get(down.folder, down.name),
                        results.BLOCKED,
                        down.folder,
                        None,
                        blocked_line(by),
                    )
                )
        return outcomes

    def _release(self, folder: str, how: str) -> list[tuple[Task, list[str]]]:
        blocked: list[tuple[Task, list[str]]] = []
        if how == OK:
            for down in self._needed_by.pop(folder, ()):
                missing = self._missing.get(down)
                if missing is None:
                    continue
                missing.discard(folder)
                if not missing:
                    del self._missing[down]
                    self.ready.append(self._held.pop(down))
            return blocked
        shown = self._names.get(folder, folder)
        stack = [(down, shown) for down in self._needed_by.pop(folder, ())]
        while stack:
            down, by = stack.pop()
            task = self._held.pop(down, None)
            self._missing.pop(down, None)
            if task is None:
                continue
            if how == NEVER:
                blocked.append((task, [by]))
            below = self._names.get(down, down)
            stack.extend((d, below) for d in self._needed_by.pop(down, ()))
        return blocked

    def left(self) -> list[Task]:
        """Tasks still held (their upstreams never ended in this run: Ctrl-C, say)."""
        left = list(self._held.values())
        self._held.clear()
        return left
