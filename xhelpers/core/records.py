"""Metafile updates made for an experiment from outside its own run.

``execute`` records an experiment's own run. These record what it cannot: that its
process died under it (recorded by the runner), that its backend's job ended without a
word or was cancelled, and that it was submitted (the ``submitted`` marker, with the
backend's reference). Each replaces only what it is sure of, under the experiment's
lock. Backends write none of this: they hand the core what to write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import resource
import signal
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task, TaskResult, blocked_text
from xhelpers.core.summary import BUSY, SKIPPED
from xhelpers.errors import BackendError

if TYPE_CHECKING:
    from xhelpers.backends.base import Backend

__all__ = [
    "lost_error",
    "record_ended",
    "record_lost",
    "record_submitted",
    "ref_of",
    "submit_marked",
]

logger = logging.getLogger(__name__)

_FD_RESERVE = 256  # descriptors left free while every selected experiment's lock is held


def ref_of(meta: Mapping[str, Any]) -> tuple[str | None, str] | None:
    """(backend name, ref) of the job a metafile names; None when it names none.

    The backend is the run's (every metafile has ``backend``). Metafiles from before
    the seam name only ``slurm_job_id``: backend slurm, that id as the ref.
    """
    ref = meta.get("ref")
    if isinstance(ref, str) and ref:
        backend = meta.get("backend")
        return (backend if isinstance(backend, str) else None), ref
    job_id = meta.get("slurm_job_id")
    if isinstance(job_id, str) and job_id:
        return "slurm", job_id
    return None


def submit_marked(
    backend: Backend, tasks: Sequence[Task], ctx: RunContext
) -> tuple[dict[str, str], list[tuple[Task, TaskResult]]]:
    """Lock every task, submit, mark each ``submitted`` with its ref, unlock.

    For backends that declare ``marks_submitted``: no task can start before its
    reference is recorded (its job waits for the lock, see execution). Tasks running
    elsewhere, done meanwhile, or whose folder cannot be made are not submitted: they
    come back with their result. Returns ({name: ref}, those). If a marker cannot be
    written, everything this call submitted is withdrawn.
    """
    _ensure_descriptors(len(tasks))
    locks: list[results.ExperimentLock] = []
    settled: list[tuple[Task, TaskResult]] = []
    refs: dict[str, str] = {}
    try:
        claimed = _claim(tasks, ctx, locks, settled)
        handed = backend.submit(claimed)
        try:
            for task in claimed:
                if task.name in handed:
                    got = handed[task.name]
                    record_submitted(task, ctx, got.ref, got.members)
                    refs[task.name] = got.ref
        except BaseException:
            backend.withdraw([got.ref for got in handed.values()])
            raise
    finally:
        for lock in locks:
            lock.release()
    return refs, settled


def _claim(
    tasks: Sequence[Task],
    ctx: RunContext,
    locks: list[results.ExperimentLock],
    settled: list[tuple[Task, TaskResult]],
) -> list[Task]:
    """Take each task's lock; busy or finished ones are settled at once, not submitted."""
    claimed = []
    root = ctx.root or results.real_root(ctx.config.output_directory)
    for task in tasks:
        lock = results.ExperimentLock(task.folder)
        try:
            existed = results.prepare_folder(task.folder, root)
            taken = lock.acquire()
        except OSError as exc:  # a file or a link out of the tree in its place
            logger.error("[%s] not submitted: %s", task.name, exc)
            settled.append((task, TaskResult(task.name, results.FAILED, error=str(exc))))
            continue
        if not taken:
            settled.append((task, TaskResult(task.name, BUSY)))
            continue
        locks.append(lock)
        if existed and not task.force and results.read_status(task.folder) == results.DONE:
            settled.append((task, TaskResult(task.name, SKIPPED)))
            continue
        claimed.append(task)
    return claimed


def _ensure_descriptors(n: int) -> None:
    """Make room for ``n`` lock descriptors held at once, or raise BackendError."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = n + _FD_RESERVE
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < needed:
            raise BackendError(
                f"submitting {n} experiments at once needs {needed} open files, but the limit "
                f"is {hard}; select fewer experiments per run"
            )


def record_submitted(
    task: Task, ctx: RunContext, ref: str, members: Mapping[str, Any] | None = None
) -> None:
    """Mark an experiment ``submitted`` as the backend's job ``ref``; the caller holds
    its lock (see :func:`submit_marked`).

    A job that starts meanwhile waits for the lock (RunContext.job_id), so the marker
    can never replace the job's own status, and the submitter holds no lock while the
    job runs. ``members`` are the backend's extra members (its log files, say); the
    backend's name is the run's ``backend`` member.
    """
    runs = results.runs_so_far(results.read_metafile(task.folder))  # execute adds its own
    body = (
        f'{task.description}, "group": {json.dumps(ctx.group)}, '
        f'"name": {json.dumps(task.name)}, "submitted": "{results.now()}", '
        f'"ref": {json.dumps(ref)}, "runs": {runs}, {ctx.run_info}'
    )
    if members:
        body += ", " + json.dumps(dict(members), default=str)[1:-1]
    if task.after:  # held by its backend until these succeed: -l tells blocked from cancelled
        body += f', "waits_for": {json.dumps(list(task.after))}'
    results.write_metafile(task.folder, results.encode_metafile(results.SUBMITTED, body))


def lost_error(
    exitcode: int | None, why: str | None = None, cause: str | None = None
) -> tuple[str, dict[str, Any]]:
    """Describe a process that died under an experiment (segfault, kill, os._exit), or
    (``cause``) a task that never reached its process."""
    if why:
        return why, {"type": "Interrupted", "message": why}
    if cause:
        return cause, {"type": "NotStarted", "message": cause}
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        message = f"worker process killed by {name} ({-exitcode})"
        return message, {"type": "WorkerDied", "message": message, "signal": -exitcode}
    message = f"worker process exited with code {exitcode} (os._exit?)"
    return message, {"type": "WorkerDied", "message": message, "exit_code": exitcode}


def record_lost(
    task: Task,
    ctx: RunContext,
    pid: int | None,
    message: str,
    error: dict[str, Any],
    status: str,
    job_id: str | None = None,
) -> bool:
    """Record an experiment whose process died under it; True if the metafile was written.

    Under the lock, only what that process left unfinished is replaced: its own
    ``running`` metafile, or (it died before it wrote one: while it received the task,
    say) a missing one or an older failure, so the experiment reads ``failed`` with
    this cause. A result it finished just before dying is kept, and so is anything
    another runner wrote. With ``job_id`` (the backend's ref of a job that ended
    without a result), a ``running`` or ``submitted`` metafile of that job.
    """
    if job_id is not None:
        return record_ended(task.folder, status, error, pid=pid, job_id=job_id)
    lock = results.ExperimentLock(task.folder)
    try:
        results.prepare_folder(
            task.folder, ctx.root or results.real_root(ctx.config.output_directory)
        )
        if not _acquire(lock, 5.0):
            return False
    except OSError:  # the folder is a file or a link out of the tree: nothing to write
        return False
    try:
        meta = results.read_metafile(task.folder)
        previous = meta.get("status") if meta is not None else None
        mine = pid is not None and meta is not None and meta.get("pid") == pid
        if meta is None or (previous in (results.FAILED, results.INTERRUPTED) and not mine):
            # It died before its running record (written only after a moment): this
            # run's record, from what the runner knows of it.
            runs = results.runs_so_far(meta) + 1
            where = (
                "" if pid is None else f'"host": {json.dumps(os.uname().nodename)}, "pid": {pid}, '
            )
            body = (
                f'{task.description}, "group": {json.dumps(ctx.group)}, '
                f'"name": {json.dumps(task.name)}, {where}"ended": "{results.now()}", '
                f'"runs": {runs}, {ctx.run_info}, "error": {json.dumps(error)}'
            )
            results.write_metafile(task.folder, results.encode_metafile(status, body))
            return True
        if previous == results.RUNNING and not mine:
            return False  # a dead run of someone else's: it reads as interrupted already
        if previous not in (results.RUNNING, results.FAILED, results.INTERRUPTED) or (
            previous != results.RUNNING and mine  # it recorded its own end before dying
        ):
            return False
        meta["status"] = status
        meta["ended"] = results.now()
        meta["error"] = error
        results.write_metafile(task.folder, meta)
        return True
    except OSError:  # (a full disk) the summary still says what happened
        return False
    finally:
        lock.release()


def record_blocked(task: Task, ctx: RunContext, by: list[str]) -> bool:
    """Record ``task`` blocked by upstreams ``by`` that did not succeed in this run; True
    if written. Under its lock; never over a result (another runner may have made one)."""
    lock = results.ExperimentLock(task.folder)
    try:
        results.prepare_folder(
            task.folder, ctx.root or results.real_root(ctx.config.output_directory)
        )
        if not lock.acquire():
            return False  # another runner is on it
    except OSError:
        return False
    try:
        meta = results.read_metafile(task.folder) or {}
        if meta.get("status") == results.DONE:  # (forced): nothing ran, the result stays
            return False
        runs = results.runs_so_far(meta or None)
        results.write_metafile(task.folder, blocked_text(task, ctx, by, runs))
        return True
    except OSError:
        return False
    finally:
        lock.release()


def _acquire(lock: results.ExperimentLock, wait_s: float) -> bool:
    deadline = time.monotonic() + wait_s
    while not lock.acquire():  # the dead process' children may hold it for a moment
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def record_ended(
    folder: str,
    status: str,
    error: dict[str, Any],
    *,
    pid: int | None = None,
    job_id: str | None = None,
    wait_s: float = 5.0,
) -> bool:
    """Replace an unfinished metafile (``running``, or ``submitted`` with ``job_id``: the
    ref it names) by ``status`` with ``error``, under the lock; waits up to ``wait_s``."""
    lock = results.ExperimentLock(folder)
    try:
        if not _acquire(lock, wait_s):
            return False
    except OSError:  # no folder (nothing was recorded), or it is a file
        return False
    try:
        meta = results.read_metafile(folder)
        if meta is None:
            return False
        if job_id is not None:  # a backend's job may have died pending or running
            if meta.get("status") not in (results.RUNNING, results.SUBMITTED):
                return False
            named = ref_of(meta)
            if named is None or named[1] != job_id:
                return False
        elif meta.get("status") != results.RUNNING:
            return False
        if pid is not None and meta.get("pid") != pid:
            return False
        meta["status"] = status
        meta["ended"] = results.now()
        meta["error"] = error
        results.write_metafile(folder, meta)
        return True
    finally:
        lock.release()
