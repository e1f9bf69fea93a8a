"""Run experiments on this machine: in the main process (``jobs=1``) or in worker processes.

The pool is our own rather than ``concurrent.futures``: a dead worker must cost only
the experiment it was running (a broken ``ProcessPoolExecutor`` loses every pending
future), experiments must be allowed to start processes of their own (``multiprocessing.Pool``
workers are daemonic and may not), and Ctrl-C must reach each experiment and every
process it started. Each worker leads its own process group for that last reason.

A run that does not wait (``--no-wait``) is detached: :meth:`LocalBackend.submit` starts
one process in a session of its own (see :mod:`xhelpers.core.detached`) that runs the
tasks with this same backend, waiting, and outlives the terminal; every task's ref is
that process' (``host:pid:start:detached``), so any later process can ask about it and
cancel it (SIGINT, as Ctrl-C). Its output goes to ``<group>/.local/<stamp>.log``.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from xhelpers.backends import reaper
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
from xhelpers.core import execution
from xhelpers.core.detached import command as detached_command
from xhelpers.core.detached import write_payload
from xhelpers.core.execution import RunContext, Task, TaskResult, execute
from xhelpers.core.logs import ForwardHandler, emit_forwarded
from xhelpers.core.results import INTERRUPTED
from xhelpers.errors import BackendError

__all__ = ["DETACHED_SUFFIX", "LOCAL_FOLDER", "LocalBackend"]

logger = logging.getLogger(__name__)

INTERRUPT_GRACE_S = 10.0  # how long interrupted experiments get to record themselves
# A worker writes an experiment's running record only once it has run this long: the
# runner records a dead worker's experiment itself (see RunContext.running_record_delay).
RUNNING_RECORD_DELAY_S = 0.5
_BIG_TASK = 32 * 1024  # bytes; a larger task is only sent to an idle worker (no pipe deadlock)
LOCAL_FOLDER = ".local"  # detached runs' logs (and, until read, payloads): <group>/.local/
DETACHED_SUFFIX = ":detached"  # ends the ref of a detached run: its tasks wait in it

# Detached runs this process started, kept so each is reaped once it ends (a zombie would
# otherwise stay until this process exits) and none warns that it still runs.
_launched: dict[str, subprocess.Popen[bytes]] = {}


class _Worker:
    __slots__ = ("conn", "fd", "inflight", "more", "pid", "proc", "retired", "sentinel", "since")

    def __init__(self, proc: Any, conn: Connection) -> None:
        self.proc = proc
        self.conn = conn
        self.fd = conn.fileno()
        self.sentinel: int = proc.sentinel
        self.pid: int = proc.pid
        self.inflight: deque[Task] = deque()
        self.since = float("inf")  # when its current task started (inf: none yet reported)
        self.retired = False  # told to exit: it takes no task any more
        # "Is another message waiting?" in one syscall: Connection.poll builds a
        # selector per call, which at thousands of short experiments shows.
        self.more = select.poll()
        self.more.register(self.fd, select.POLLIN)


class LocalBackend(Backend):
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
        self._workers: list[_Worker] = []
        # Every worker's pipe and sentinel, registered once (not a selector per wait).
        self._poller = select.poll()
        self._by_fd: dict[int, _Worker] = {}
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
            _killpg(proc.pid, signal.SIGKILL)
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
            _killpg(proc.pid, signal.SIGKILL)
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
            if _live_pid(ref) is None:
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
            pid = _live_pid(ref)
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
                since = _boot_clock()
                try:
                    result = execute(task, self.ctx)
                except KeyboardInterrupt:
                    _stop_children_since(since)
                    raise
                self._current = None
                yield Finished(task, result)

    # -- in worker processes --------------------------------------------------------------
    def _spawn(self) -> _Worker:
        here, there = self._mp.Pipe()
        # A forked worker inherits the runner's end of its own pipe and of every other
        # worker's: closed there, so each sees EOF when the runner dies (spawn and
        # forkserver children inherit nothing).
        inherited = (
            [here.fileno(), *(w.conn.fileno() for w in self._workers)]
            if self._mp.get_start_method() == "fork"
            else []
        )
        proc = self._mp.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(there, self.ctx, self._console_level, inherited),
            name="xhelpers-worker",
            daemon=False,
        )
        proc.start()
        there.close()
        pid = proc.pid
        assert pid is not None  # started
        try:  # also done by the child; whichever runs first wins the race
            os.setpgid(pid, pid)
        except OSError:
            pass
        worker = _Worker(proc, here)
        self._workers.append(worker)
        for fd in (worker.fd, worker.sentinel):
            self._poller.register(fd, select.POLLIN)
            self._by_fd[fd] = worker
        self._guard(pid)
        return worker

    def _guard(self, pid: int) -> None:
        """Tell the reaper (started with the first worker) to end ``pid``'s group if we die."""
        try:
            if self._reaper is None:
                self._reaper = subprocess.Popen(
                    [sys.executable, "-I", "-S", reaper.__file__, str(os.getpid())],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    start_new_session=True,
                )
            assert self._reaper.stdin is not None
            self._reaper.stdin.write(b"%d\n" % pid)
            self._reaper.stdin.flush()
        except OSError as exc:  # workers then outlive a killed runner, as before
            logger.debug("no reaper for the worker pool: %s", exc)

    def _stop_reaper(self) -> None:
        reaper_proc, self._reaper = self._reaper, None
        if reaper_proc is None:
            return
        try:
            assert reaper_proc.stdin is not None
            reaper_proc.stdin.write(b"stop\n")
            reaper_proc.stdin.close()
            reaper_proc.wait(5.0)
        except (OSError, subprocess.TimeoutExpired):
            reaper_proc.kill()
            reaper_proc.wait()

    def _depth(self) -> int:
        # Short experiments get a second one queued per worker, so no worker idles on
        # the round trip. A queued task cannot be taken back, so this holds only while
        # every experiment seen so far was short, and not near the end of the run.
        if self._done < self.jobs or self._longest > 0.05:
            return 1
        if self._busy_time / self._done >= 0.005:
            return 1
        return 2 if len(self._pending) > 4 * self.jobs else 1

    def _fill(self) -> None:
        # A pipeline's runner submits more while reports are read, after idle workers may
        # have been retired: those are replaced, never handed a task.
        while self._pending and sum(not w.retired for w in self._workers) < self.jobs:
            self._spawn()
        depth = self._depth()
        now = time.monotonic()
        for worker in self._workers:
            if worker.retired:
                continue
            # Queue behind a running task only when it started just now: one that has
            # run for a while may be long, and what waits behind it waits for it.
            limit = depth if now - worker.since < 0.002 else 1
            while self._pending and len(worker.inflight) < limit:
                try:
                    data = pickle.dumps(self._pending[0], pickle.HIGHEST_PROTOCOL)
                except Exception as exc:  # a lambda or an open file among its arguments
                    task = self._pending.popleft()
                    why = f"cannot be sent to a worker process: {type(exc).__name__}: {exc}"
                    self._refused.append(Lost(task, None, None, cause=why))
                    continue
                if len(data) > _BIG_TASK and worker.inflight:
                    break
                try:
                    worker.conn.send_bytes(data)
                except OSError:  # it died; its sentinel will say so and requeue its tasks
                    break
                if not worker.inflight:
                    worker.since = now
                worker.inflight.append(self._pending.popleft())

    def _pool(self) -> Iterator[Report]:
        while True:
            if not self._stopping:
                self._fill()
            while self._refused:
                yield self._refused.popleft()
            if not self._workers:
                return
            if self._stopping or not self._pending:  # before waiting: nothing else may come
                for worker in self._workers:
                    if not worker.inflight:
                        self._retire(worker)
            if self._stopping and self._deadline is not None and time.monotonic() > self._deadline:
                self._kill_all()
            timeout = self.tick_interval if self.ticker else None
            if self._deadline is not None:
                timeout = max(0.0, self._deadline - time.monotonic()) + 0.01
            ready_list = self._poller.poll(None if timeout is None else timeout * 1000)
            if self.ticker:
                self.ticker()
            for fd, _events in ready_list:
                ready = self._by_fd.get(fd)
                if ready is None or ready not in self._workers:
                    continue
                if fd == ready.fd:
                    yield from self._drain(ready)
                else:
                    yield from self._reap(ready)

    def _drain(self, worker: _Worker) -> Iterator[Report]:
        try:
            while worker.more.poll(0):
                kind, payload = pickle.loads(worker.conn.recv_bytes())
                if kind == "log":
                    emit_forwarded(payload)
                    continue
                task = worker.inflight.popleft()
                if kind == "unreadable":  # it could not unpickle the task: nothing ran
                    worker.since = time.monotonic()
                    yield Lost(task, worker.pid, None, cause=payload)
                    continue
                worker.since = time.monotonic()  # the next queued task starts now
                self._done += 1
                self._busy_time += payload.duration or 0.0
                self._longest = max(self._longest, payload.duration or 0.0)
                yield Finished(task, payload)
        except (EOFError, OSError, pickle.UnpicklingError, ValueError):
            # The worker died mid-message; its sentinel reports it.
            _killpg(worker.pid, signal.SIGKILL)

    def _reap(self, worker: _Worker) -> Iterator[Report]:
        yield from self._drain(worker)
        worker.proc.join()
        _killpg(worker.pid, signal.SIGKILL)  # whatever the experiment started dies with it
        self._workers.remove(worker)
        self._forget(worker)
        if worker.inflight:
            lost = worker.inflight.popleft()
            if not self._stopping:
                self._pending.extendleft(reversed(worker.inflight))
            why = "interrupted" if self._stopping else None
            yield Lost(lost, worker.pid, worker.proc.exitcode, why)
            if self._stopping:  # queued behind it, never started: Lost lets the runner check
                for task in worker.inflight:
                    yield Lost(task, worker.pid, worker.proc.exitcode, "interrupted")

    def _forget(self, worker: _Worker) -> None:
        for fd in (worker.fd, worker.sentinel):
            self._by_fd.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(fd)
        worker.conn.close()

    def _retire(self, worker: _Worker) -> None:
        if worker.retired:
            return
        worker.retired = True
        try:
            worker.conn.send_bytes(pickle.dumps(None))
        except OSError:
            pass

    def _kill_all(self) -> None:
        for worker in self._workers:
            _killpg(worker.pid, signal.SIGKILL)

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
                _killpg(worker.pid, signal.SIGINT)
            else:
                self._retire(worker)

    def close(self) -> None:
        for worker in self._workers:
            self._retire(worker)
        deadline = time.monotonic() + 2.0
        for worker in self._workers:
            worker.proc.join(max(0.0, deadline - time.monotonic()))
            _killpg(worker.pid, signal.SIGKILL)
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


def _boot_clock() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)  # same clock as /proc/<pid>/stat
    except (AttributeError, OSError):
        return time.monotonic()


def _stop_children_since(since: float) -> None:
    """After Ctrl-C in the main process: end the processes the experiment started.

    Only children started after ``since`` (the experiment's start) are touched, so a
    notebook or shell that runs us keeps its own. Linux reads /proc; elsewhere only
    multiprocessing's children are known.
    """
    mine = os.getpid()
    victims = {p.pid for p in multiprocessing.active_children() if p.pid}
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            fields = _proc_stat(entry)
            if (
                fields is not None
                and int(fields[1]) == mine
                and int(fields[19]) / ticks >= since - 0.5
            ):
                victims.add(int(entry))
    except (OSError, ValueError):
        pass
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for child in multiprocessing.active_children():  # reap them
        child.join(1.0)


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- the worker process --------------------------------------------------------------
def _worker_main(
    conn: Connection, ctx: RunContext, console_level: int, inherited: Sequence[int] = ()
) -> None:
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    for fd in inherited:
        with contextlib.suppress(OSError):
            os.close(fd)
    # KeyboardInterrupt only inside the experiment's own code: raised while the worker
    # talks to the runner, it could cut a message in half.
    signal.signal(signal.SIGINT, execution.on_interrupt_signal)
    ctx.running_record_delay = RUNNING_RECORD_DELAY_S  # this process' own copy
    lock = threading.Lock()

    def send(message: tuple[str, Any]) -> None:
        data = pickle.dumps(message, pickle.HIGHEST_PROTOCOL)  # (plain objects only)
        with lock:
            conn.send_bytes(data)

    root = logging.getLogger()
    for handler in root.handlers[:]:  # inherited through fork: the runner's console
        root.removeHandler(handler)
    root.addHandler(ForwardHandler(lambda record: send(("log", record)), console_level))
    # DEBUG for good: each experiment's log file takes everything, the forwarding
    # handler filters for the console, and no per-experiment setLevel is needed.
    root.setLevel(logging.DEBUG)
    while not execution.stop_requested():
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the runner is gone
        try:
            task = pickle.loads(data)
        except Exception as exc:  # e.g. a class the spawned worker cannot import
            send(("unreadable", f"the worker could not unpickle it: {type(exc).__name__}: {exc}"))
            continue
        if task is None:
            return
        try:
            result = execute(task, ctx)
        except KeyboardInterrupt:
            result = TaskResult(task.name, INTERRUPTED, error="interrupted")
            send(("result", result))
            return
        send(("result", result))


# -- references: a process by host, pid and start time (pids are reused) -------------------
def _proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    fields = _proc_stat(pid)
    if fields is None or fields[0] in ("Z", "X"):  # ended, not reaped yet: it runs nothing
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_ref(pid: int) -> str | None:
    """``host:pid:start`` of a live process of this host; None without /proc."""
    start = _start_ticks(pid)
    return None if start is None else f"{os.uname().nodename}:{pid}:{start}"


def _live_pid(ref: object) -> int | None:
    """The pid of the process ``ref`` names if it still runs on this host, else None."""
    if not isinstance(ref, str):
        return None
    head, _, start = ref.removesuffix(DETACHED_SUFFIX).rpartition(":")
    host, _, pid_text = head.rpartition(":")
    if host != os.uname().nodename or not (pid_text.isdigit() and start.isdigit()):
        return None
    pid = int(pid_text)
    return pid if pid > 0 and _start_ticks(pid) == int(start) else None
