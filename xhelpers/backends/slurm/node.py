"""What a SLURM job of the backend runs on its node: one experiment (:class:`SlurmTask`)
or a pack of them (:class:`PackTask`); both submitit-checkpointable.

A :class:`SlurmTask` calls the core's ``execute`` as the local backend does. A
:class:`PackTask` runs its experiments in a local pool of the task's CPUs
(:func:`xhelpers.core.packs.run_pack`), each recorded under its own ref
``<job id>/<slot>``; it starts an experiment only while its estimated duration fits in
what is left of the job's time, and requeues its own job with what it did not start.
On timeout or preemption (submitit's ``USR2`` handler calls :meth:`PackTask.checkpoint`)
its running experiments are recorded ``submitted`` again and the job is requeued with
every experiment not finished.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import pickle
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

from xhelpers.backends.slurm import source_pickle
from xhelpers.backends.slurm.refs import pack_ref
from xhelpers.backends.threads import threads_member
from xhelpers.core import execution, results
from xhelpers.core.execution import RunContext, Task, TaskResult, execute
from xhelpers.core.snapshot import snapshot
from xhelpers.core.summary import SKIPPED
from xhelpers.errors import BackendError

if TYPE_CHECKING:
    import submitit

__all__ = [
    "PackResult",
    "PackTask",
    "RequeueLimitReached",
    "SlurmTask",
    "node_succeeded",
    "submitit_module",
    "submitit_utils",
]

logger = logging.getLogger(__name__)

_node_status: str | None = None  # on the node: the status of the experiment this job ran


def node_succeeded() -> bool:
    """On the node, once the job's task returned: whether its experiment succeeded (or
    had, by another run, before this job reached it: its downstreams may start)."""
    return _node_status in (results.DONE, SKIPPED)


def submitit_module() -> ModuleType:
    """submitit, imported on first use; BackendError (usage) when it is not installed."""
    try:
        import submitit
        import submitit.core.utils
    except ModuleNotFoundError as exc:
        raise BackendError(
            f"the slurm backend needs {exc.name}, which is not installed "
            f"(xhelpers depends on it): pip install {exc.name}",
            usage=True,
        ) from None
    return submitit


def submitit_utils() -> Any:
    return submitit_module().core.utils


class RequeueLimitReached(BackendError):
    """Raised inside an experiment signalled for timeout/preemption once requeues are used up."""


class _ShippedWithSource:
    """Pickled as one payload of :mod:`.source_pickle`; shallow under ``copy.copy``.

    submitit pickles its callables with plain cloudpickle, which (3.1.3 on) names the
    code of run.py's functions "<dynamic-code>": a failure on the node would record no
    file and no source line. ``_transient`` attributes stay home (None on arrival).
    """

    _transient: tuple[str, ...] = ()

    def __getstate__(self) -> dict[str, bytes]:
        state = {k: v for k, v in self.__dict__.items() if k not in self._transient}
        return {"payload": source_pickle.dumps(self._shipped(state))}

    def _shipped(self, state: dict[str, Any]) -> dict[str, Any]:
        """What of ``state`` travels (a subclass may lighten it)."""
        return state

    def __setstate__(self, state: dict[str, bytes]) -> None:
        self.__dict__.update(pickle.loads(state["payload"]))
        for name in self._transient:
            setattr(self, name, None)

    def __copy__(self) -> Any:
        # shallow (checkpoint copies): it would otherwise pickle through __getstate__
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone


class SlurmTask(_ShippedWithSource):
    """The callable a SLURM job runs: ``execute(task, ctx)``; submitit-checkpointable.

    Small and picklable: the task, the run's context and the requeue budget.
    """

    def __init__(self, task: Task, ctx: RunContext, max_requeues: int) -> None:
        self.task = task
        self.ctx = ctx
        self.max_requeues = max_requeues
        self.attempt = 1  # this run of the job; checkpoint() hands on attempt + 1
        self.result: TaskResult | None = None

    def _shipped(self, state: dict[str, Any]) -> dict[str, Any]:
        # The config as plain values: the task unpickles it (and imports pydantic) only
        # if its experiment asks for it (see xhelpers.core.snapshot).
        ctx = state["ctx"]
        config = snapshot(ctx.config, source_pickle.dumps)
        return {**state, "ctx": dataclasses.replace(ctx, config=config)}

    def __call__(self) -> TaskResult:
        if self.result is not None:  # finished just before a signal requeued the job
            return self._finished(self.result)
        env = submitit_module().JobEnvironment()
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)  # requeued by SLURM itself
        self.attempt = max(self.attempt, restarts + 1)
        paths = env.paths
        node = os.environ.get("SLURMD_NODENAME") or env.hostname
        members = {
            "ref": env.job_id,  # the seam's reference; slurm_job_id for older readers
            "slurm_job_id": env.job_id,
            "node": node,
            "attempts": self.attempt,
            "slurm_stdout": str(paths.stdout),
            "slurm_stderr": str(paths.stderr),
        }
        ctx = dataclasses.replace(
            self.ctx,
            job_id=env.job_id,
            job_members=json.dumps(members)[1:-1],
            env_members=_env_members(os.environ),
        )
        task = self.task
        if self.attempt > 1 and task.force:  # --force empties the folder once, not per attempt
            task = dataclasses.replace(task, force=False)
        self.result = execute(task, ctx)
        return self._finished(self.result)

    @staticmethod
    def _finished(result: TaskResult) -> TaskResult:
        global _node_status
        _node_status = result.status
        return result

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on USR2 (timeout, preemption): the job to requeue."""
        if self.result is None and self.attempt > self.max_requeues:
            raise RequeueLimitReached(
                f"timed out or preempted on run {self.attempt}; not requeued: "
                f"slurm_max_requeues={self.max_requeues} reached"
            )
        following = copy.copy(self)
        following.attempt = self.attempt + 1
        execution.expect_requeue()  # submitit's sys.exit that follows is a requeue
        delayed: submitit.helpers.DelayedSubmission = submitit_module().helpers.DelayedSubmission(
            following
        )
        return delayed

    def __repr__(self) -> str:
        return f"SlurmTask({self.task.name!r}, attempt={self.attempt})"


@dataclass(slots=True)
class PackResult:
    """What a pack's job returns: the result of each of its experiments."""

    results: list[TaskResult] = field(default_factory=list)


class PackTask(_ShippedWithSource):
    """The callable of a SLURM job that runs many experiments: see the module.

    ``slots``: each task's number in the pack (its ref is ``<job id>/<slot>``);
    ``running``: how many run at once; ``estimates``: recorded durations by folder.
    Requeues for time (a pack that did not start everything) do not count against
    ``max_requeues``; a signal (timeout, preemption) in an attempt that finished no
    experiment does.
    """

    _transient = ("_backend",)

    def __init__(
        self,
        tasks: list[Task],
        slots: list[int],
        ctx: RunContext,
        *,
        max_requeues: int,
        running: int,
        limit_s: float,
        estimates: dict[str, float],
        timeout_min: int = 60,
    ) -> None:
        self.tasks = tasks
        self.slots = slots
        self.ctx = ctx
        self.max_requeues = max_requeues
        self.running = running
        self.limit_s = limit_s
        self.estimates = estimates
        self.timeout_min = timeout_min
        self.attempt = 1
        self.stalled = 0  # signals in a row with no experiment finished between them
        self.results: dict[str, TaskResult] = {}  # of earlier attempts
        self._backend: Any = None  # this attempt's local pool, while it runs

    # -- on the node -----------------------------------------------------------------
    def __call__(self) -> PackResult:
        from xhelpers.core.packs import Walltime, run_pack

        started = time.monotonic()
        env = submitit_module().JobEnvironment()
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        self.attempt = max(self.attempt, restarts + 1)
        job_id = str(env.job_id)
        common = {
            "slurm_job_id": job_id,
            "node": os.environ.get("SLURMD_NODENAME") or env.hostname,
            "attempts": self.attempt,
            "slurm_stdout": str(env.paths.stdout),
            "slurm_stderr": str(env.paths.stderr),
            "slurm_pack": {"job": job_id, "size": len(self.slots), "running": self.running},
        }
        tasks = []
        for task, slot in zip(self.tasks, self.slots, strict=True):
            ref = pack_ref(job_id, slot)
            members = json.dumps({"ref": ref, **common, "slurm_pack_slot": slot})[1:-1]
            if self.attempt > 1 and task.force:  # --force empties the folder once
                task = dataclasses.replace(task, force=False)
            tasks.append(dataclasses.replace(task, job=(ref, members)))
        # The GPUs are SLURM's (CUDA_VISIBLE_DEVICES of this job), not the submitter's.
        # Forked workers: a config class of run.py's could not be pickled to a spawned one.
        method = self.ctx.config.start_method or "fork"
        config = self.ctx.config.model_copy(update={"gpus": None, "start_method": method})
        ctx = dataclasses.replace(self.ctx, config=config, job_id=None, job_members="")
        walltime = Walltime(self.limit_s, self.estimates, started_at=started)
        outcome = run_pack(tasks, ctx, jobs=self.running, walltime=walltime, on_backend=self._hold)
        self._backend = None
        self.results.update(outcome.results)
        if outcome.left:
            self._requeue_for_time(env, outcome.left)
        return self._finished()

    def _hold(self, backend: Any) -> None:
        backend.requeue_signal = signal.SIGUSR2
        # run.py's functions came by value (no module to import them from): on as such.
        backend.task_dumps = source_pickle.dumps
        self._backend = backend

    def _finished(self) -> PackResult:
        out = list(self.results.values())  # this attempt's and earlier attempts' results
        global _node_status
        ok = all(r.status in (results.DONE, SKIPPED) for r in out)
        _node_status = results.DONE if ok else results.FAILED
        return PackResult(out)

    def _following(self, tasks: list[Task]) -> PackTask:
        keep = {t.name for t in tasks}
        following = copy.copy(self)
        following.tasks = tasks
        following.slots = [s for t, s in zip(self.tasks, self.slots, strict=True) if t.name in keep]
        following.attempt = self.attempt + 1
        following.results = dict(self.results)
        following._backend = None
        return following

    def _requeue_for_time(self, env: Any, left: list[Task]) -> None:
        """Requeue this job with the experiments it had no time to start (same job id:
        their ``submitted`` markers stay true); then end this attempt without a result."""
        logger.warning(
            "pack: %d experiment(s) not started before the time limit; requeueing the job",
            len(left),
        )
        following = self._following(left)
        following.stalled = 0
        delayed = submitit_module().helpers.DelayedSubmission(following)
        # submitit reads these at the next signal: the whole budget, as at submission
        # (the pack counts what matters itself: signals without progress).
        delayed.set_timeout(self.timeout_min, self.max_requeues)
        delayed.dump(env.paths.submitted_pickle)
        env._requeue(self.max_requeues)  # submitit's own call: scontrol requeue <this job>
        raise SystemExit(-1)  # as submitit's handler ends a requeued job

    def checkpoint(self, *args: Any, **kwargs: Any) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on USR2 (timeout, preemption): running experiments are
        recorded ``submitted`` again, and the job requeued with all that did not finish."""
        backend, self._backend = self._backend, None
        if backend is not None:
            backend.requeue_running()
            deadline = time.monotonic() + 30.0
            for worker in list(backend._workers):  # their experiments record themselves
                worker.proc.join(max(0.0, deadline - time.monotonic()))
        unfinished = [t for t in self.tasks if _unfinished(t.folder)]
        # This attempt's tasks were all unfinished when it started: did any finish?
        stalled = 0 if len(unfinished) < len(self.tasks) else self.stalled + 1
        if stalled > self.max_requeues:
            raise RequeueLimitReached(
                f"pack timed out or preempted {stalled} times without finishing an experiment; "
                f"not requeued: slurm_max_requeues={self.max_requeues} reached"
            )
        left = {t.name for t in unfinished}
        for task in self.tasks:
            if task.name not in left and task.name not in self.results:
                status = str(results.read_status(task.folder))
                self.results[task.name] = TaskResult(task.name, status)
        following = self._following(unfinished)
        following.stalled = stalled
        delayed: submitit.helpers.DelayedSubmission = submitit_module().helpers.DelayedSubmission(
            following
        )
        return delayed

    def __repr__(self) -> str:
        return f"PackTask({len(self.tasks)} experiments, attempt={self.attempt})"


def _env_members(environ: Mapping[str, str]) -> str:
    """An unpacked task's GPUs (SLURM's ``CUDA_VISIBLE_DEVICES``, when it set one) and
    thread counts (its job script's, see :func:`~xhelpers.backends.threads.export_line`),
    as its metafile records them."""
    threads = threads_member(environ)
    devices = environ.get("CUDA_VISIBLE_DEVICES")
    if devices is None:
        return threads
    return f'"gpus": {json.dumps([d for d in devices.split(",") if d])}, {threads}'


def _unfinished(folder: str) -> bool:
    """Whether the experiment in ``folder`` still has to run: queued, requeued, or left
    ``running`` by a worker that was killed."""
    return results.read_status(folder) in (None, results.SUBMITTED, results.RUNNING)
