"""The waiting half of a run that did not wait, in a process of its own on this machine.

A backend whose jobs run on this machine (the local one) detaches a ``--no-wait`` run
by starting ``python -m xhelpers.core.detached PAYLOAD`` in a session of its own, its
output going to a log file: closing the shell or the SSH session does not reach it.
That process is the run's job. It runs the tasks on the same backend, waiting, and
records what becomes of them through the same code as a waiting run (``execute`` for
each experiment, the runner's ``_record`` for a worker that died under one); what it
never started because it was cancelled, it marks ``interrupted``.

The payload (:func:`write_payload`) holds how to rebuild the submitter's ``__main__``
as a spawned multiprocessing worker does (``sys.path``, the working directory, run.py
imported as ``__mp_main__``), so functions of run.py unpickle here and in the pool's
workers under every start method; then the tasks' folders; then, pickled on their own,
the backend class, the run's context, the tasks, how many run at once and the metafile
members the backend adds. The launcher writes the process' ref on its stdin once it
knows it (the pid is part of it) and closes it; with nothing written (the launcher died,
or took the job back) the process exits at once. The payload is deleted once read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import multiprocessing.spawn
import os
import pickle
import signal
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xhelpers.core.execution import RunContext, Task
from xhelpers.errors import BackendError

if TYPE_CHECKING:
    from xhelpers.backends.base import Backend

__all__ = ["command", "main", "write_payload"]

logger = logging.getLogger(__name__)


def command(payload: str) -> list[str]:
    """The command line of the detached process for ``payload``."""
    return [sys.executable, "-m", "xhelpers.core.detached", payload]


def _preparation() -> dict[str, Any]:
    """What ``multiprocessing.spawn.prepare`` needs to rebuild this process' ``__main__``.

    Not ``sys.argv``: a run.py without its ``__main__`` guard would run the submitter's
    command line again; with no arguments it only prints its usage.
    """
    cwd = os.getcwd()
    data: dict[str, Any] = {
        "sys_path": [cwd if entry == "" else entry for entry in sys.path],
        "dir": cwd,
    }
    main_module = sys.modules.get("__main__")
    spec_name = getattr(getattr(main_module, "__spec__", None), "name", None)
    main_path = getattr(main_module, "__file__", None)
    if isinstance(spec_name, str):
        data["init_main_from_name"] = spec_name  # python -m package.run
    elif isinstance(main_path, str):
        data["init_main_from_path"] = os.path.abspath(main_path)
    return data


def write_payload(
    path: str,
    backend: type[Backend],
    ctx: RunContext,
    tasks: Sequence[Task],
    jobs: int,
    members: Mapping[str, Any],
) -> None:
    """Write what the detached process runs to ``path`` (owner-only); BackendError
    naming the first experiment that cannot be pickled, before anything is written."""
    for task in tasks:  # one by one, to name the culprit
        try:
            pickle.dumps(task, pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise BackendError(
                f"experiment {task.name!r} cannot be sent to a detached run: "
                f"{type(exc).__name__}: {exc} (define its function at module level of "
                "run.py or a module, as for -jN)"
            ) from None
    body = pickle.dumps((backend, ctx, list(tasks), jobs, dict(members)), pickle.HIGHEST_PROTOCOL)
    data = pickle.dumps(
        (_preparation(), [task.folder for task in tasks], body), pickle.HIGHEST_PROTOCOL
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


# -- the detached process ---------------------------------------------------------------------
def main(argv: Sequence[str]) -> int:
    path = argv[1]
    ref = sys.stdin.readline().strip()  # the launcher's word: our ref, once it knows it
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        with open(path, "rb") as f:
            preparation, folders, body = pickle.load(f)
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        print(f"xhelpers: detached run: cannot read {path}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # it holds the run's context: no copy stays in the result tree
    if not ref:  # taken back before it was handed over: nothing of it was recorded
        return 1
    # Cancelling sends SIGINT, which a shell's background job (and so we) may ignore.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        multiprocessing.spawn.prepare(preparation)
        backend, ctx, tasks, jobs, members = pickle.loads(body)
    except BaseException as exc:  # run.py cannot be imported here, a class is missing, ...
        from xhelpers.core import records, results

        interrupted = isinstance(exc, KeyboardInterrupt)
        why = "cancelled before it started" if interrupted else f"{type(exc).__name__}: {exc}"
        if not interrupted:
            traceback.print_exc()
        print(f"xhelpers: the detached run cannot start: {why}", file=sys.stderr, flush=True)
        error = {
            "type": "Interrupted" if interrupted else "NotStarted",
            "message": f"the detached run could not start: {why}",
        }
        status = results.INTERRUPTED if interrupted else results.FAILED
        for folder in folders:  # the submitter may still hold their locks: wait
            records.record_ended(folder, status, error, job_id=ref, wait_s=60)
        return 130 if interrupted else 1
    return _run(backend, ctx, tasks, jobs, ref, members)


def _run(
    backend_cls: type[Backend],
    ctx: RunContext,
    tasks: list[Task],
    jobs: int,
    ref: str,
    members: Mapping[str, Any],
) -> int:
    """Run the tasks as a waiting run does; each first waits for the submitter to let
    go of its lock (``job_id``: the submitter writes the ``submitted`` markers meanwhile)."""
    from xhelpers.backends.base import Lost
    from xhelpers.core import records, results, runner
    from xhelpers.core.logs import console_logging
    from xhelpers.core.summary import QUEUED, ExperimentOutcome, RunSummary

    start = time.perf_counter()
    ctx = dataclasses.replace(
        ctx,
        job_id=ref,
        job_members=json.dumps({"ref": ref, **members})[1:-1],
        submitter_waits=True,  # this process is the one that waits
    )
    refs = dict.fromkeys((task.name for task in tasks), ref)
    done: dict[str, ExperimentOutcome] = {}
    interrupted = False
    with console_logging(ctx.config.loglevel):
        logger.warning("detached run of %d experiments, as %s", len(tasks), ref)
        backend = backend_cls(ctx, jobs=jobs)
        try:
            backend.submit(tasks)
            while True:
                try:
                    for report in backend.reports():
                        outcome = runner._record(report, ctx, backend, refs)
                        if outcome.status == QUEUED and isinstance(report, Lost):
                            # it never reached execute: its metafile is still our marker
                            message, error = records.lost_error(
                                report.exitcode, report.why, report.cause
                            )
                            status = results.INTERRUPTED if report.why else results.FAILED
                            task = report.task
                            if records.record_ended(task.folder, status, error, job_id=ref):
                                outcome = ExperimentOutcome(
                                    task.name, status, task.folder, None, message
                                )
                        done[outcome.name] = outcome
                    break
                except KeyboardInterrupt:  # --cancel
                    interrupted = True
                    logger.warning("cancelled: stopping running experiments")
                    backend.interrupt()
        finally:
            backend.close()
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second cancel: nothing left to stop
        never = {"type": "Interrupted", "message": "cancelled before it started"}
        for task in tasks:
            outcome = done.get(task.name) or runner._from_disk(task.name, task.folder)
            if outcome.status == QUEUED and interrupted:  # still marked submitted, as ours
                records.record_ended(task.folder, results.INTERRUPTED, never, job_id=ref)
                outcome = runner._from_disk(task.name, task.folder)
            done[task.name] = outcome
    outcomes = [done[task.name] for task in tasks]
    summary = RunSummary(ctx.group, outcomes, time.perf_counter() - start, interrupted)
    print(summary, flush=True)
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
