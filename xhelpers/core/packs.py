"""Many experiments in one job: a pack, run on a node in a local pool of its CPUs.

The SLURM backend hands a pack of tasks to :func:`run_pack` inside one array task. Each
experiment is run exactly as everywhere else (``execute`` in a worker of the local
pool: own folder, lock, metafile, log; a worker that dies costs only its experiment,
recorded here by the core's :func:`~xhelpers.core.records.record_lost`), with the ref
and members the pack gave it (``Task.job``).

What the pack decides, and nothing else: whether to start the next experiment before
its job's time runs out (:class:`Walltime`, from the durations recorded before), and
whether one was cancelled by ``--cancel`` (:func:`request_cancel`: a request file in
its folder naming its ref, honoured before it starts and, while it runs, within a
second by a Ctrl-C to its worker). What it did not start is handed back to the
caller (the backend requeues its job with them).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xhelpers.backends import Finished, get_backend
from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task, TaskResult
from xhelpers.core.records import lost_error, record_ended, record_lost

__all__ = [
    "CANCEL_REQUEST",
    "DEFAULT_ESTIMATE_S",
    "PackOutcome",
    "Walltime",
    "cancel_requested",
    "request_cancel",
    "run_pack",
]

logger = logging.getLogger(__name__)

CANCEL_REQUEST = ".xhelpers.cancel"  # in an experiment's folder: the ref it cancels
DEFAULT_ESTIMATE_S = 10.0  # an experiment's duration while none is recorded
_CANCEL_CHECK_S = 1.0  # how often a pack looks for requests of its running experiments


def request_cancel(folder: str, ref: str) -> None:
    """Ask whoever runs the experiment in ``folder`` under ``ref`` to stop it (a pack on
    a node; nobody else reads it). A request naming an older ref is ignored."""
    path = os.path.join(folder, CANCEL_REQUEST)
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(ref)
        os.replace(temporary, path)
    except OSError as exc:  # the job is cancelled all the same where that is possible
        logger.debug("cannot write a cancel request in %s: %s", folder, exc)


def cancel_requested(folder: str, ref: str) -> bool:
    """Whether ``--cancel`` asked to stop the experiment in ``folder`` run as ``ref``."""
    try:
        with open(os.path.join(folder, CANCEL_REQUEST), encoding="utf-8") as request:
            return request.read().strip() == ref
    except OSError:
        return False


@dataclass(slots=True)
class Walltime:
    """Whether the next experiment fits in what is left of the job's time.

    ``limit_s`` from the job's start; ``estimates`` by folder (recorded durations); an
    experiment with none is estimated at the mean of those that ended in this pack,
    else :data:`DEFAULT_ESTIMATE_S`. The first experiment of a pack always starts: a
    pack that could start none would be requeued forever.
    """

    limit_s: float
    estimates: Mapping[str, float] = field(default_factory=dict)
    started_at: float = field(default_factory=time.monotonic)
    _ended: int = 0
    _ended_s: float = 0.0
    _started: int = 0

    def estimate(self, task: Task) -> float:
        known = self.estimates.get(task.folder)
        if known is not None:
            return known
        return self._ended_s / self._ended if self._ended else DEFAULT_ESTIMATE_S

    def fits(self, task: Task, now: float | None = None) -> bool:
        if self._started == 0:
            return True
        elapsed = (time.monotonic() if now is None else now) - self.started_at
        return elapsed + self.estimate(task) <= self.limit_s

    def started(self) -> None:
        self._started += 1

    def ended(self, duration: float | None) -> None:
        if duration is not None:
            self._ended += 1
            self._ended_s += duration


@dataclass(slots=True)
class PackOutcome:
    """What became of a pack's tasks: results of those that ran (or were settled), and
    those not started because time ran out (to run in the job's next attempt)."""

    results: dict[str, TaskResult] = field(default_factory=dict)
    left: list[Task] = field(default_factory=list)


def run_pack(
    tasks: Sequence[Task],
    ctx: RunContext,
    *,
    jobs: int,
    walltime: Walltime,
    on_backend: Callable[[Any], None] | None = None,
) -> PackOutcome:
    """Run ``tasks`` (each with its ``job`` ref and members) in a pool of ``jobs``
    workers, starting each only while it fits ``walltime``; see the module.

    ``on_backend`` is handed the local backend once made (the pack's signal handler
    interrupts it on preemption). KeyboardInterrupt is re-raised once the workers
    have recorded their experiments.
    """
    outcome = PackOutcome()
    # The local backend's pool, with the hooks a pack sets (in_process, admit, ...).
    backend: Any = get_backend("local")(ctx, jobs=jobs)
    backend.in_process = False  # faults stay in workers, also at one at a time
    refs = {task.name: (task.job[0] if task.job else "") for task in tasks}
    stopped = False

    def admit(task: Task) -> str:
        nonlocal stopped
        if cancel_requested(task.folder, refs[task.name]):
            outcome.results[task.name] = TaskResult(
                task.name, results.INTERRUPTED, error="cancelled before it started"
            )
            return "skip"
        if stopped or not walltime.fits(task):
            stopped = True
            outcome.left.append(task)
            return "stop"
        walltime.started()
        return "run"

    last_check = time.monotonic()

    def tick() -> None:
        nonlocal last_check
        now = time.monotonic()
        if now - last_check < _CANCEL_CHECK_S:
            return
        last_check = now
        for task in backend.running_tasks():
            if cancel_requested(task.folder, refs[task.name]):
                backend.interrupt_task(task.name)

    backend.admit = admit
    backend.ticker = tick
    backend.tick_interval = _CANCEL_CHECK_S
    if on_backend is not None:
        on_backend(backend)
    try:
        backend.start(list(tasks))
        for report in backend.reports():
            task = report.task
            if isinstance(report, Finished):
                walltime.ended(report.result.duration)
                outcome.results[task.name] = report.result
                continue
            message, error = lost_error(report.exitcode, report.why, report.cause)
            status = results.INTERRUPTED if report.why else results.FAILED
            if not record_lost(task, ctx, report.pid, message, error, status) and task.job:
                # It died before it started: its submitted marker names this pack's ref.
                record_ended(task.folder, status, error, job_id=task.job[0])
            if status == results.FAILED:
                logger.error("[%s] %s", task.name, message)
            outcome.results[task.name] = TaskResult(task.name, status, error=message)
    finally:
        backend.close()
    return outcome
