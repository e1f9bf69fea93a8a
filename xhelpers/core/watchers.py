"""What watches a run, as the core sees it: protocols the views and notify implement.

The core calls these and imports neither: the live progress line
(:class:`xhelpers.views.progress.Progress`) and the run's Slack thread
(:class:`xhelpers.notify.SlackRun`) are handed in by whoever starts the run
(:func:`xhelpers.framework.run`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from xhelpers.core.execution import RunContext, Task, TaskResult

__all__ = ["MakeProgress", "ProgressLine", "RunWatcher", "TaskWatcher"]


class TaskWatcher(Protocol):
    """Wraps each task's execute where it runs (a SLURM node): e.g. posts its records.

    Shipped with the run's context, so it pickles small and holds no secret.
    """

    def __call__(
        self, task: Task, ctx: RunContext, run: Callable[[Task, RunContext], TaskResult]
    ) -> TaskResult: ...


class RunWatcher(Protocol):
    """Told how a run starts, and asked for what its tasks take along."""

    def start(
        self, group: str, *, selected: int, to_run: int, skipped: int, backend: str, jobs: int
    ) -> None: ...

    def task_watcher(self, outcomes: bool) -> TaskWatcher | None:
        """For tasks that run elsewhere; ``outcomes``: they also say how they ended."""
        ...


class ProgressLine(Protocol):
    """The live counts of a run while it goes on."""

    interval: float
    running: Callable[[], int | None]

    def __enter__(self) -> Any: ...
    def __exit__(self, *exc: object) -> None: ...
    def update(self, status: str) -> None: ...
    def tick(self, force: bool = False) -> None: ...


MakeProgress = Callable[..., ProgressLine]  # (group, total, jobs, interval=...)
