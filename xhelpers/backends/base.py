"""The seam between the core and where experiments run: the whole contract.

A backend receives tasks, runs each one somewhere by calling the core's
:func:`xhelpers.core.execution.execute`, and reports what became of it. For each task
it hands over an opaque string reference (:class:`Submitted`); the core stores it in
the task's metafile, and any later process asks the backend's class about it
(:meth:`Backend.states`, :meth:`Backend.cancel`) without a run context.

A backend never writes a metafile, posts to Slack or prints: the core turns its
reports and answers into metafile updates, views and notifications.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from xhelpers.core.execution import RunContext, Task, TaskResult

if TYPE_CHECKING:
    from xhelpers.config import BaseConfig

__all__ = [
    "UNKNOWN_STATUS",
    "Backend",
    "Finished",
    "JobState",
    "JobStatus",
    "Lost",
    "Report",
    "Submitted",
]


class JobState(str, enum.Enum):
    """Where a backend's job stands: the one vocabulary every backend maps its own to."""

    PENDING = "pending"  # may still start (queued, held, requeued, suspended)
    RUNNING = "running"
    COMPLETED = "completed"  # ended on its own; the metafile says how the task went
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    # The backend cannot tell: never seen (yet), garbage, or gone without a trace.
    # Never an error and never counted as completed: the caller decides what it means.
    UNKNOWN = "unknown"

    @property
    def final(self) -> bool:
        """Whether a job in this state will not run (again)."""
        return self in _FINAL

    @property
    def active(self) -> bool:
        """Whether a job in this state runs or may still run."""
        return self in (JobState.PENDING, JobState.RUNNING)


_FINAL = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED, JobState.TIMEOUT})


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's normalized state and the backend's own word for it (``NODE_FAIL``).

    ``blocked``: the job ended without ever running because a job it waited for (its
    task's ``after``) did not succeed; the core records such a task ``blocked``, not
    interrupted or failed. ``reason``: the backend's word for why, when it gives one
    (SLURM: ``DependencyNeverSatisfied``).
    """

    state: JobState
    raw: str = ""
    reason: str = ""
    blocked: bool = False

    @property
    def final(self) -> bool:
        return self.state.final

    @property
    def word(self) -> str:
        """The backend's word when it has one, for messages ("ended NODE_FAIL")."""
        return self.raw or self.state.name


UNKNOWN_STATUS = JobStatus(JobState.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Submitted:
    """What a backend hands over for one submitted task.

    ``ref`` identifies the task's job across processes (SLURM: ``123`` or ``123_4``).
    ``members`` are metafile members the backend knows of the task (its log files, ids
    under their legacy names); the core writes them beside ``ref``.
    """

    ref: str
    members: Mapping[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Finished:
    """``execute`` returned for the task: its result says how it ended."""

    task: Task
    result: TaskResult


@dataclass(slots=True)
class Lost:
    """The process running the task ended without a result (crash, kill, interrupt)."""

    task: Task
    pid: int | None  # of a process on this host (tasks elsewhere are known by a ref)
    exitcode: int | None
    why: str | None = None  # set when the backend itself stopped the task
    cause: str | None = None  # set when the task never reached execute (and why)
    state: JobStatus | None = None  # set when the backend's queue says how the job ended


Report = Finished | Lost


class Backend(ABC):
    """Runs tasks and reports each exactly once as :class:`Finished` or :class:`Lost`.

    The runner calls :meth:`check`, then :meth:`submit`, then iterates :meth:`reports`.
    On Ctrl-C it calls :meth:`interrupt` and iterates :meth:`reports` again to collect
    what is left; finally :meth:`close`. Tasks never started produce no report. A
    backend that does not ``chain`` may get :meth:`submit` again from the body of that
    loop (a pipeline's tasks, as their upstreams succeed): it reports those too, in the
    same iteration or in the next one the runner starts when the first ends.

    With ``marks_submitted``, and for every :attr:`detached` submission, the runner holds
    every task's lock around :meth:`submit` and writes each ``submitted`` metafile before
    releasing it, so no task can start before its reference is recorded (a task that
    starts waits for its lock: ``RunContext.job_id``).
    """

    name: ClassVar[str]
    label: ClassVar[str]  # how messages name it: "SLURM job 12_3 ended NODE_FAIL"
    # Capabilities, declared: the core reads these, never probes for attributes.
    can_detach: ClassVar[bool] = False  # its jobs run on after this process ends (--no-wait)
    can_requeue: ClassVar[bool] = False  # a job may come back after it was seen ended
    marks_submitted: ClassVar[bool] = False  # refs before any task starts (see above)
    # Pipelines: True if it holds a task back until every task of its ``after`` (in the
    # same submit() call) succeeded, and never starts it if one did not (SLURM job
    # dependencies); such a task is then reported Lost, and the core records it
    # ``blocked``. False: the runner submits a task only once its upstreams succeeded.
    chains: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "label" not in cls.__dict__ and "name" in cls.__dict__:  # messages name it so
            cls.label = cls.name

    def __init__(self, ctx: RunContext, *, jobs: int = 1) -> None:
        self.ctx = ctx
        self.jobs = jobs
        # Called at least every ``tick_interval`` seconds while reports() waits, so
        # the runner can show progress during long experiments without a thread.
        self.ticker: Callable[[], None] | None = None
        self.tick_interval = 1.0

    @property
    def detached(self) -> bool:
        """Whether this submission's jobs go on without this process: a backend that can
        detach does so when the run does not wait (``ctx.submitter_waits`` False); one
        that also marks its jobs submitted (SLURM) runs them apart even while it waits."""
        return self.can_detach and (self.marks_submitted or not self.ctx.submitter_waits)

    @property
    def max_array_size(self) -> int | None:
        """Most tasks one submission may group (SLURM: an array); None: no arrays."""
        return None

    @abstractmethod
    def submit(self, tasks: Sequence[Task]) -> dict[str, Submitted]:
        """Accept the tasks: {task name: what identifies its job}.

        They may start at once or as reports are consumed. Raises BackendError when
        nothing could be submitted; nothing it submitted then stays submitted.
        """

    @abstractmethod
    def reports(self) -> Iterator[Report]:
        """Yield one report per started task as it ends."""

    def check(self, tasks: Sequence[Task]) -> None:
        """Raise ConfigError if a task asks for what this backend can never give it (the
        local one: more GPUs than the run has). The runner asks once, with every task of
        the run (a pipeline's later stages too), before it submits any."""

    def preview(self, tasks: Sequence[Task]) -> list[str]:
        """How :meth:`submit` would send ``tasks``, a line each (``--dry-run``); it
        submits nothing. [] when there is nothing to say beyond the plan itself."""
        return []

    def withdraw(self, refs: Sequence[str]) -> None:
        """Take back jobs :meth:`submit` just handed over, when the core could not
        record them: nothing may run unrecorded. Cancels them by default."""
        self.cancel(refs)

    def running(self) -> int | None:
        """How many of its tasks run at this moment; None when the backend cannot tell."""
        return None

    def interrupt(self) -> None:
        """Start nothing new and stop waiting; detached jobs run on, others stop."""

    def close(self) -> None:
        """Release every resource; no process of the backend outlives this call
        (but the jobs of a backend that can detach)."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- asked by any later process, about refs any earlier one was handed ----------------
    @classmethod
    @abstractmethod
    def states(cls, refs: Iterable[str]) -> dict[str, JobStatus]:
        """{ref: status} for every given ref, in one batched query.

        A ref the backend does not know (or cannot parse) is :data:`UNKNOWN_STATUS`.
        Raises BackendError only when the backend cannot be asked at all.
        """

    @classmethod
    @abstractmethod
    def cancel(cls, refs: Iterable[str]) -> dict[str, bool]:
        """Cancel in one call: {ref: True if it was cancelled, False if it had ended
        already (or was never known)}. Raises BackendError when it cannot be asked."""

    @classmethod
    def tidy(cls, config: BaseConfig, group: str) -> None:
        """Remove what this backend's earlier runs of ``group`` left on disk that no job
        needs any more (SLURM: submitit's files of jobs whose experiments succeeded).

        The runner calls it at the start of every run on this backend, whether or not
        anything is to run; views never do (they write nothing). It must be cheap when
        there is nothing to remove, never remove a file a job that may still run needs,
        and never raise for a file it cannot remove. Nothing by default.
        """

    @classmethod
    def handles(cls, refs: Iterable[str]) -> list[str]:
        """What a person calls these jobs, few and in order (SLURM: the array ids)."""
        return list(dict.fromkeys(refs))

    @classmethod
    def follow_hint(cls, handles: Sequence[str]) -> str | None:
        """A command of the backend's own that follows these jobs, if it has one."""
        return None
