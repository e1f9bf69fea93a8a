"""The local backend: in this process, in a pool of workers, or detached."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

from xhelpers.backends.base import (
    UNKNOWN_STATUS,
    Backend,
    Finished,
    JobState,
    JobStatus,
    Lost,
    Report,
    Submitted,
)
from xhelpers.backends.local.pool import Worker, WorkerPool
from xhelpers.backends.local.processes import (
    DETACHED_SUFFIX,
    boot_clock,
    killpg,
    live_pid,
    process_ref,
    stop_children_since,
)
from xhelpers.core import execution
from xhelpers.core.detached import command as detached_command
from xhelpers.core.detached import write_payload
from xhelpers.core.execution import RunContext, Task, execute
from xhelpers.errors import BackendError

__all__ = ["DETACHED_SUFFIX", "LOCAL_FOLDER", "LocalBackend"]

logger = logging.getLogger(__name__)

INTERRUPT_GRACE_S = 10.0  # how long interrupted experiments get to record themselves
LOCAL_FOLDER = ".local"  # detached runs' logs (and, until read, payloads): <group>/.local/

# Detached runs this process started, kept so each is reaped once it ends (a zombie would
# otherwise stay until this process exits) and none warns that it still runs.
_launched: dict[str, subprocess.Popen[bytes]] = {}


class LocalBackend(WorkerPool, Backend):
    """``jobs=1``: in order, in this process (pdb works); ``jobs>1``: a pool of processes;
    not waiting: in a detached process that does one of those."""

    name = "local"
    label = "local"
    # Waiting, its workers end with this process (the reaper sees to it); a run that
    # does not wait is handed to a detached process (marked submitted, as SLURM's jobs).
    can_detach = True

    def __init__(self, ctx: RunContext, *, jobs: int = 1) -> None:
        super().__init__(ctx, jobs=jobs)
        self._mp = multiprocessing.get_context(ctx.config.start_method)
        # Workers forward what the console or Slack may show, whichever wants more.
        self._console_level = min(
            logging.getLevelName(ctx.config.loglevel),
            logging.getLevelName(ctx.config.slack_loglevel),
        )
        self._pending: deque[Task] = deque()
        self._workers: list[Worker] = []
        # Every worker's pipe and sentinel, registered once (not a selector per wait).
        self._poller = select.poll()
        self._by_fd: dict[int, Worker] = {}
        self._stopping = False
        self._deadline: float | None = None
        self._current: Task | None = None  # inline: the task being executed
        self._done = 0
        self._busy_time = 0.0
        self._longest = 0.0
        self._reaper: subprocess.Popen[bytes] | None = None
        self._refused: deque[Report] = deque()  # tasks that could not be sent to a worker

    def start(self, tasks: Sequence[Task]) -> None:
        self._pending.extend(tasks)

    def submit(self, tasks: Sequence[Task]) -> dict[str, Submitted]:
        """Queue the tasks; each one's ref is this process, which runs them or owns the
        workers that do (they die with it). Not waiting: see :meth:`_detach`."""
        if self.detached:
            return self._detach(tasks)
        self.start(tasks)
        ref = process_ref(os.getpid())
        if ref is None:  # no /proc: nothing that outlives us could ask anyway
            return {}
        handed = Submitted(ref)
        return {task.name: handed for task in tasks}

    def _detach(self, tasks: Sequence[Task]) -> dict[str, Submitted]:
        """Start the process that runs ``tasks`` without us; its ref stands for each.

        The runner holds every task's lock meanwhile and marks them ``submitted``; the
        process waits for each lock (``RunContext.job_id``) before it runs the task.
        """
        if not tasks:
            return {}
        for gone, old in list(_launched.items()):  # reap the ones that ended
            if old.poll() is not None:
                del _launched[gone]
        root = self.ctx.root or os.path.realpath(self.ctx.config.output_directory)
        folder = os.path.join(root, self.ctx.group, LOCAL_FOLDER)
        payload = log = ""
        try:
            os.makedirs(folder, exist_ok=True)
            fd, payload = tempfile.mkstemp(
                prefix=time.strftime("%Y%m%d-%H%M%S-"), suffix=".pkl", dir=folder
            )
            os.close(fd)
            log = payload.removesuffix(".pkl") + ".log"
            members = {"local_log": log}
            write_payload(payload, type(self), self.ctx, tasks, self.jobs, members)
            with open(log, "ab") as out:
                proc = subprocess.Popen(
                    detached_command(payload),
                    stdin=subprocess.PIPE,  # its ref comes this way, then it reads nothing
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # no terminal: the shell's SIGHUP cannot reach it
                    cwd=os.getcwd(),
                )
        except BaseException as exc:
            for path in (payload, log):
                if path:
                    with contextlib.suppress(OSError):
                        os.unlink(path)
            if isinstance(exc, OSError):
                raise BackendError(f"cannot start a detached run: {exc}") from None
            raise
        started = process_ref(proc.pid)
        ref = None if started is None else started + DETACHED_SUFFIX
        try:
            if ref is None:  # no /proc: nobody could follow or cancel it
                raise BackendError("a detached local run needs /proc (Linux)")
            assert proc.stdin is not None
            proc.stdin.write(ref.encode() + b"\n")
            proc.stdin.close()
        except (BackendError, OSError) as exc:
            killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            if isinstance(exc, BackendError):
                raise
            raise BackendError(f"the detached run ended at once; see {log}") from None
        _launched[ref] = proc
        logger.info("detached run %s of %d experiments; its log: %s", ref, len(tasks), log)
        return {task.name: Submitted(ref, members) for task in tasks}

    def withdraw(self, refs: Sequence[str]) -> None:
        """A detached run just started, nothing of it recorded: killed, not interrupted
        (an interrupted task would record itself ``interrupted``)."""
        others = []
        for ref in dict.fromkeys(refs):
            proc = _launched.pop(ref, None)
            if proc is None:
                others.append(ref)
                continue
            killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if others:
            super().withdraw(others)

    # -- the seam's questions, from any process on this host --------------------------
    @classmethod
    def states(cls, refs: Iterable[str]) -> dict[str, JobStatus]:
        """RUNNING while the process lives (same pid and start time), PENDING for a
        detached run's (a task's own lock says when it runs); otherwise unknown: a
        process that is gone left no word on how it ended (its metafiles have it)."""
        out: dict[str, JobStatus] = {}
        for ref in refs:
            if live_pid(ref) is None:
                out[ref] = UNKNOWN_STATUS
            elif ref.endswith(DETACHED_SUFFIX):
                out[ref] = JobStatus(JobState.PENDING)
            else:
                out[ref] = JobStatus(JobState.RUNNING)
        return out

    @classmethod
    def cancel(cls, refs: Iterable[str]) -> dict[str, bool]:
        """Ctrl-C for each live process (it records its experiments as interrupted)."""
        out: dict[str, bool] = {}
        for ref in refs:
            pid = live_pid(ref)
            sent = False
            if pid is not None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGINT)
                    sent = True
            out[ref] = sent
        return out

    def running(self) -> int:
        if self.jobs == 1:
            return 0 if self._current is None else 1
        return sum(1 for worker in self._workers if worker.inflight)

    def reports(self) -> Iterator[Report]:
        if self.jobs == 1:
            return self._inline()
        return self._pool()

    # -- in this process -------------------------------------------------------------
    def _inline(self) -> Iterator[Report]:
        if self._current is not None:  # interrupted inside execute
            task, self._current = self._current, None
            yield Lost(task, os.getpid(), None, "interrupted")
        with _interrupt_handler():
            while self._pending and not self._stopping:
                if execution.stop_requested():  # Ctrl-C between two experiments
                    raise KeyboardInterrupt
                task = self._pending.popleft()
                self._current = task
                since = boot_clock()
                try:
                    result = execute(task, self.ctx)
                except KeyboardInterrupt:
                    stop_children_since(since)
                    raise
                self._current = None
                yield Finished(task, result)

    # -- in worker processes --------------------------------------------------------------
    def interrupt(self) -> None:
        if self._stopping:  # a second Ctrl-C: stop waiting for anyone
            self._kill_all()
            self._deadline = time.monotonic()
            return
        self._stopping = True
        self._pending.clear()
        self._deadline = time.monotonic() + INTERRUPT_GRACE_S
        for worker in self._workers:
            if worker.inflight:
                killpg(worker.pid, signal.SIGINT)
            else:
                self._retire(worker)

    def close(self) -> None:
        for worker in self._workers:
            self._retire(worker)
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            worker.proc.join(max(0.0, deadline - time.monotonic()))
            killpg(worker.pid, signal.SIGKILL)
            worker.proc.join()
            self._forget(worker)
        self._workers.clear()
        self._stop_reaper()


@contextmanager
def _interrupt_handler() -> Iterator[None]:
    """Ctrl-C as in workers: KeyboardInterrupt inside experiments, a stop request
    elsewhere, so an experiment that catches it is still recorded as interrupted."""
    try:
        previous = signal.signal(signal.SIGINT, execution.on_interrupt_signal)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    execution.reset_stop()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        execution.reset_stop()
