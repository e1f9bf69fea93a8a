"""Metafile updates made for an experiment from outside its own run.

``execute`` records an experiment's own run. These record what it cannot: that its
process died under it (recorded by the runner), that its SLURM job ended without a
word or was cancelled, and that it was submitted to SLURM (the ``submitted`` marker).
Each replaces only what it is sure of, under the experiment's lock.
"""

from __future__ import annotations

import json
import signal
import time
from typing import Any

from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task

__all__ = ["lost_error", "record_ended", "record_lost", "record_submitted"]


def record_submitted(task: Task, ctx: RunContext, job_id: str, members: str = "") -> None:
    """Mark an experiment ``submitted`` as SLURM job ``job_id``; the caller holds its lock.

    The submitter takes the lock of every experiment before it submits, writes this
    marker once the job ids are known, then releases the locks. A job that starts
    meanwhile waits for the lock (RunContext.job_id), so the marker can never replace
    the job's own status, and the submitter holds no lock while the job runs.
    ``members`` are extra JSON members (e.g. the job's log files).
    """
    previous = results.read_metafile(task.folder)
    runs = 0  # runs so far; execute counts this one on top
    if previous is not None:
        if previous.get("status") == results.SUBMITTED:
            runs = int(previous.get("runs") or 0)
        else:
            runs = int(previous.get("runs") or 1)
    body = (
        f'{task.description}, "group": {json.dumps(ctx.group)}, '
        f'"name": {json.dumps(task.name)}, "submitted": "{results.now()}", '
        f'"slurm_job_id": {json.dumps(job_id)}, "runs": {runs}, {ctx.run_info}'
    )
    if members:
        body += ", " + members
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
    another runner wrote. With ``job_id`` (SLURM: a job that ended without a result),
    a ``running`` or ``submitted`` metafile of that job.
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
        if meta is None:
            body = (
                f'{task.description}, "group": {json.dumps(ctx.group)}, '
                f'"name": {json.dumps(task.name)}, "ended": "{results.now()}", '
                f'"runs": 1, {ctx.run_info}, "error": {json.dumps(error)}'
            )
            results.write_metafile(task.folder, results.encode_metafile(status, body))
            return True
        previous = meta.get("status")
        mine = pid is not None and meta.get("pid") == pid
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
    """Replace an unfinished metafile (``running``, or ``submitted`` with ``job_id``) by
    ``status`` with ``error``, under the lock; waits up to ``wait_s`` for the lock."""
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
        if job_id is not None:  # SLURM: the job may have died pending or running
            if meta.get("status") not in (results.RUNNING, results.SUBMITTED):
                return False
            if meta.get("slurm_job_id") != job_id:
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
