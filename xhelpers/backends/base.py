"""The seam between the core and where experiments run.

A backend receives tasks, runs each one somewhere by calling the core's
:func:`xhelpers.execution.execute`, and reports what became of it. It never writes
a metafile: a :class:`Lost` report (the process under a task died) is turned into
a metafile by the runner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import ClassVar

from xhelpers.core.execution import RunContext, Task, TaskResult

__all__ = ["Backend", "Finished", "Lost", "Report"]


@dataclass(slots=True)
class Finished:
    """``execute`` returned for the task: its result says how it ended."""

    task: Task
    result: TaskResult


@dataclass(slots=True)
class Lost:
    """The process running the task ended without a result (crash, kill, interrupt)."""

    task: Task
    pid: int | None
    exitcode: int | None
    why: str | None = None  # set when the backend itself stopped the task
    cause: str | None = None  # set when the task never reached execute (and why)


Report = Finished | Lost


class Backend(ABC):
    """Runs tasks and reports each exactly once as :class:`Finished` or :class:`Lost`.

    The runner calls :meth:`start`, then iterates :meth:`reports`. On Ctrl-C it calls
    :meth:`interrupt` and iterates :meth:`reports` again to collect what is left;
    finally :meth:`close`. Tasks never started produce no report.
    """

    name: ClassVar[str]

    def __init__(self, ctx: RunContext, *, jobs: int = 1) -> None:
        self.ctx = ctx
        self.jobs = jobs
        # Called at least every ``tick_interval`` seconds while reports() waits, so
        # the runner can show progress during long experiments without a thread.
        self.ticker: Callable[[], None] | None = None
        self.tick_interval = 1.0

    @abstractmethod
    def start(self, tasks: Sequence[Task]) -> None:
        """Accept the tasks; they may start at once or as reports are consumed."""

    @abstractmethod
    def reports(self) -> Iterator[Report]:
        """Yield one report per started task as it ends."""

    def running(self) -> int | None:
        """How many of its tasks run at this moment; None when the backend cannot tell."""
        return None

    def interrupt(self) -> None:
        """Start nothing new and stop what runs; later reports say how each ended."""

    def close(self) -> None:
        """Release every resource; no process of the backend outlives this call."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
