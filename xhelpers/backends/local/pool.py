"""The pool of worker processes: our own, for the reasons the package says.

Each worker leads its own process group, takes one task at a time (two when every
experiment so far was short), and a guard process (the reaper) ends them all if this
process dies. :class:`WorkerPool` is the pool half of
:class:`~xhelpers.backends.local.LocalBackend`.

An experiment that asks for GPUs runs in a worker of its own, started for it with
``CUDA_VISIBLE_DEVICES`` naming its GPUs and retired after it; its GPU slots are free
again once that process has exited. CUDA reads the variable once, when a process first
uses it, so a worker that ran one experiment cannot be handed another one's GPUs; and
only an exited process has surely let go of the GPU memory it held (a framework's
allocator cache, a context), which the next holder of a shared GPU needs. Experiments
that ask for none share the long-lived workers, which start with
``CUDA_VISIBLE_DEVICES=""``, so they cost no process each. A GPU experiment starts once
both a job (``-j``) and its slots are free: workers that wait idle do not count, those
that run an experiment do. GPU experiments start in order, each as soon as its slots
are free; one that needs more than is free waits while later ones that fit go first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import select
import signal
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from multiprocessing.connection import Connection
from typing import Any

from xhelpers.backends import reaper
from xhelpers.backends.base import (
    Finished,
    Lost,
    Report,
)
from xhelpers.backends.local.processes import killpg
from xhelpers.backends.local.slots import Allocation, GpuQueue, GpuSlots
from xhelpers.backends.local.worker import WorkerSetup, worker_main
from xhelpers.backends.threads import ThreadPolicy
from xhelpers.core import execution
from xhelpers.core.execution import RunContext, Task
from xhelpers.core.logs import emit_forwarded

__all__ = ["Worker", "WorkerPool"]

logger = logging.getLogger(__name__)

_BIG_TASK = 32 * 1024  # bytes; a larger task is only sent to an idle worker (no pipe deadlock)


class Worker:
    """One worker process, its pipe, and the tasks sent to it."""

    __slots__ = (
        "conn",
        "fd",
        "gpus",
        "inflight",
        "more",
        "pid",
        "proc",
        "retired",
        "sentinel",
        "since",
    )

    def __init__(self, proc: Any, conn: Connection, gpus: Allocation | None = None) -> None:
        self.proc = proc
        self.conn = conn
        self.fd = conn.fileno()
        self.sentinel: int = proc.sentinel
        self.pid: int = proc.pid
        self.inflight: deque[Task] = deque()
        self.since = float("inf")  # when its current task started (inf: none yet reported)
        self.retired = False  # told to exit: it takes no task any more
        self.gpus = gpus  # a GPU experiment's own worker: what it holds until it exits
        # "Is another message waiting?" in one syscall: Connection.poll builds a
        # selector per call, which at thousands of short experiments shows.
        self.more = select.poll()
        self.more.register(self.fd, select.POLLIN)


class WorkerPool:
    """The worker pool's state and its loop; the backend that owns it sets both up."""

    ctx: RunContext
    jobs: int
    ticker: Callable[[], None] | None
    tick_interval: float
    _mp: Any
    _console_level: int
    _pending: deque[Task]
    _workers: list[Worker]
    _poller: Any
    _by_fd: dict[int, Worker]
    _stopping: bool
    _deadline: float | None
    _done: int
    _busy_time: float
    _longest: float
    _reaper: subprocess.Popen[bytes] | None
    _refused: deque[Report]
    _gpu_pending: GpuQueue  # tasks that ask for GPUs (the rest: _pending)
    _gpu_workers: int  # live workers of one GPU experiment each
    _threads: ThreadPolicy
    admit: Callable[[Task], str] | None  # a SLURM pack's say on each task (see backend)
    task_dumps: Callable[[Task], bytes]  # how a task goes to a worker
    requeue_signal: int | None

    def _gpu_slots(self) -> GpuSlots:
        raise NotImplementedError  # the backend's: it knows the run's GPUs

    def _spawn(self, gpus: Allocation | None = None, workers: int | None = None) -> Worker:
        """A worker; with ``gpus``, one GPU experiment's own, and ``workers`` its share."""
        here, there = self._mp.Pipe()
        # A forked worker inherits the runner's end of its own pipe and of every other
        # worker's: closed there, so each sees EOF when the runner dies (spawn and
        # forkserver children inherit nothing).
        inherited = (
            [here.fileno(), *(w.conn.fileno() for w in self._workers)]
            if self._mp.get_start_method() == "fork"
            else []
        )
        devices = gpus.devices if gpus is not None else ()
        share = workers or self.ctx.config.workers
        environ = {"CUDA_VISIBLE_DEVICES": ",".join(devices), **self._threads.variables(share)}
        setup = WorkerSetup(environ, devices, share, self._threads, self.requeue_signal)
        proc = self._mp.Process(  # type: ignore[attr-defined]
            target=worker_main,
            args=(there, self.ctx, self._console_level, inherited, setup),
            name="xhelpers-worker-gpu" if devices else "xhelpers-worker",
            daemon=False,
        )
        with _environment(environ):  # a spawned interpreter has it before run.py's imports
            proc.start()
        there.close()
        pid = proc.pid
        assert pid is not None  # started
        try:  # also done by the child; whichever runs first wins the race
            os.setpgid(pid, pid)
        except OSError:
            pass
        worker = Worker(proc, here, gpus)
        self._workers.append(worker)
        self._gpu_workers += gpus is not None
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

    def _unguard(self, pid: int) -> None:
        """Tell the reaper that ``pid`` ended: its number may soon name another group."""
        if self._reaper is None or self._reaper.stdin is None:
            return
        try:
            self._reaper.stdin.write(b"-%d\n" % pid)
            self._reaper.stdin.flush()
        except OSError:
            pass

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

    def _busy(self) -> int:
        """Jobs taken: workers running an experiment, and GPU workers until they exit."""
        return sum(1 for w in self._workers if w.inflight or w.gpus is not None)

    def _fill(self, cpu: bool = True) -> None:
        """Start what can start; ``cpu=False``: only GPU experiments (``-j1`` runs the
        others in this process)."""
        if self._gpu_pending.waiting:
            self._start_gpu_tasks()
        if not cpu or not self._pending:
            return
        # A pipeline's runner submits more while reports are read, after idle workers may
        # have been retired: those are replaced, never handed a task. GPU workers hold
        # jobs of their own: while they run, idle workers may outnumber the free jobs.
        gpu_workers = self._gpu_workers
        while self._pending and sum(not w.retired for w in self._workers) < self.jobs - gpu_workers:
            self._spawn()
        depth = self._depth()
        now = time.monotonic()
        busy = self._busy() if gpu_workers else 0
        for worker in self._workers:
            if worker.retired:
                continue
            if gpu_workers and not worker.inflight and busy >= self.jobs:  # no job is free
                continue
            # Queue behind a running task only when it started just now: one that has
            # run for a while may be long, and what waits behind it waits for it.
            limit = depth if now - worker.since < 0.002 else 1
            busy += not worker.inflight
            while self._pending and len(worker.inflight) < limit:
                if self.admit is not None and not self._admitted():
                    continue
                try:
                    data = self.task_dumps(self._pending[0])
                except Exception as exc:  # a lambda or an open file among its arguments
                    task = self._pending.popleft()
                    why = f"cannot be sent to a worker process: {type(exc).__name__}: {exc}"
                    self._refused.append(Lost(task, None, None, cause=why))
                    continue
                if len(data) > _BIG_TASK and worker.inflight:
                    break
                # In flight before it is sent: Ctrl-C (KeyboardInterrupt, anywhere in the
                # runner at -jN) between the two must not leave a task running that the
                # pool does not know of. One interrupted before the send is reported
                # Lost, never started, once its worker exits (see _stop_workers).
                if not worker.inflight:
                    worker.since = now
                worker.inflight.append(self._pending[0])
                try:
                    worker.conn.send_bytes(data)
                except OSError:  # it died; its sentinel will say so and requeue its tasks
                    worker.inflight.pop()
                    break
                self._pending.popleft()

    def _start_gpu_tasks(self) -> None:
        """Start the waiting GPU experiments whose slots and job are free, each in a
        worker of its own that exits after it."""
        slots = self._gpu_slots()
        for task, held in self._gpu_pending.ready(slots, self.jobs - self._busy()):
            verdict = self.admit(task) if self.admit is not None else "run"
            if verdict != "run":
                slots.give_back(held)
                self._gpu_pending.dirty = True
                if verdict == "stop":
                    self._stop_admitting()
                continue
            try:
                data = self.task_dumps(task)
            except Exception as exc:  # as in _fill
                slots.give_back(held)
                self._gpu_pending.dirty = True
                why = f"cannot be sent to a worker process: {type(exc).__name__}: {exc}"
                self._refused.append(Lost(task, None, None, cause=why))
                continue
            worker = self._spawn(held, (task.config or self.ctx.config).workers)
            worker.since = time.monotonic()
            worker.inflight.append(task)
            try:
                worker.conn.send_bytes(data)
            except OSError:  # it died; its sentinel will say so and report the task lost
                continue
            self._retire(worker)  # one experiment, then it exits

    def _admitted(self) -> bool:
        """Ask ``admit`` about the next pending task: True to send it; False when it
        was dropped (skipped, or time is up: then every pending task is)."""
        assert self.admit is not None
        verdict = self.admit(self._pending[0])
        if verdict == "run":
            return True
        self._pending.popleft()
        if verdict == "stop":
            self._stop_admitting()
        return False

    def _stop_admitting(self) -> None:
        """No pending task starts: each is handed to ``admit`` once more (which keeps it
        for later) and dropped from this run."""
        assert self.admit is not None
        for task in self._pending:
            self.admit(task)
        for task, _ in self._gpu_pending.waiting:
            self.admit(task)
        self._pending.clear()
        self._gpu_pending.clear()

    def _pool(self, cpu: bool = True) -> Iterator[Report]:
        """Reports until no worker is left; ``cpu=False``: ``-j1``'s GPU experiments."""
        while True:
            if not self._stopping:
                self._fill(cpu)
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
            wait = None if timeout is None else timeout * 1000
            if cpu:
                ready_list = self._poller.poll(wait)
            else:
                if execution.stop_requested() and not self._stopping:
                    raise KeyboardInterrupt  # Ctrl-C while -j1 reported: as at -jN
                with _ctrl_c_raises():
                    ready_list = self._poller.poll(wait)
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

    def _drain(self, worker: Worker) -> Iterator[Report]:
        try:
            while worker.more.poll(0):
                kind, payload = pickle.loads(worker.conn.recv_bytes())
                if kind == "log":
                    emit_forwarded(payload)
                    continue
                task = worker.inflight.popleft()
                self._gpu_pending.dirty = True  # a job is free: a GPU experiment may start
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
            killpg(worker.pid, signal.SIGKILL)

    def _reap(self, worker: Worker) -> Iterator[Report]:
        yield from self._drain(worker)
        worker.proc.join()
        killpg(worker.pid, signal.SIGKILL)  # whatever the experiment started dies with it
        self._workers.remove(worker)
        self._forget(worker)
        self._unguard(worker.pid)
        self._gpu_pending.dirty = True
        if worker.gpus is not None:  # its process is gone: so is what it held of them
            self._gpu_slots().give_back(worker.gpus)
            worker.gpus = None
            self._gpu_workers -= 1
        if worker.inflight:
            lost = worker.inflight.popleft()
            if not self._stopping:
                self._pending.extendleft(reversed(worker.inflight))
            why = "interrupted" if self._stopping else None
            yield Lost(lost, worker.pid, worker.proc.exitcode, why)
            if self._stopping:  # queued behind it, never started: Lost lets the runner check
                for task in worker.inflight:
                    yield Lost(task, worker.pid, worker.proc.exitcode, "interrupted")

    def _forget(self, worker: Worker) -> None:
        for fd in (worker.fd, worker.sentinel):
            self._by_fd.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(fd)
        worker.conn.close()

    def _retire(self, worker: Worker) -> None:
        if worker.retired:
            return
        worker.retired = True
        try:
            worker.conn.send_bytes(pickle.dumps(None))
        except OSError:
            pass

    def _kill_all(self) -> None:
        for worker in self._workers:
            killpg(worker.pid, signal.SIGKILL)


@contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in this process' environment for a moment: a worker started meanwhile
    starts with them (spawn: its interpreter; fork: its copy of ours). The runner's
    other threads (Slack's) start no process that could inherit them meanwhile."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _ctrl_c_raises() -> Iterator[None]:
    """While ``-j1`` waits for a GPU worker: Ctrl-C raises KeyboardInterrupt, as it does
    at -jN (the runner's own handler), instead of only asking to stop (the handler -j1
    runs its experiments under, which would leave this wait waiting)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
