"""The local backend: in this process, in a pool of workers, or detached."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import pickle
import select
import signal
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
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
from xhelpers.backends.local.slots import GpuQueue, GpuSlots, asks_for_gpus, need_of, run_gpus
from xhelpers.backends.threads import ThreadLimits, ThreadPolicy, unheld_pools
from xhelpers.core import execution
from xhelpers.core.detached import command as detached_command
from xhelpers.core.detached import write_payload
from xhelpers.core.execution import RunContext, Task, execute, task_label
from xhelpers.errors import BackendError, ConfigError

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
        self._gpu_pending = GpuQueue()
        self._gpu_workers = 0
        self._slots: GpuSlots | None = None  # the run's GPUs, found when a task asks
        # Read once, before any experiment: what the user set is what -j1's in-process
        # runs change and restore, and what a worker is told to keep.
        self._threads = ThreadPolicy.of(os.environ)
        # A SLURM pack sets these (xhelpers.core.packs): -j1 in a worker all the same, so
        # a crash costs one experiment; a say on each task before it starts ("run",
        # "skip" it, or "stop": that one and all after it stay unstarted).
        self.in_process = jobs == 1
        self.admit: Callable[[Task], str] | None = None
        self.requeue_signal: int | None = None  # workers' experiments requeued on it
        # A pack's tasks carry run.py's functions by value (cloudpickle): they go on so.
        self.task_dumps: Callable[[Task], bytes] = _dumps

    def start(self, tasks: Sequence[Task]) -> None:
        gpu = [task for task in tasks if asks_for_gpus(task)]
        if gpu:  # the runner asked already; a caller of its own may not have
            self.check(gpu)
        if self.in_process:  # in order: one in this process, the next in a GPU worker, ...
            self._pending.extend(tasks)
            return
        if tasks and not self._workers:
            warning = unheld_pools(self._threads, self._mp.get_start_method())
            if warning:
                logger.warning("%s", warning)
        if not gpu:
            self._pending.extend(tasks)
            return
        for task in tasks:
            if asks_for_gpus(task):
                self._gpu_pending.append(task, need_of(task))
            else:
                self._pending.append(task)

    def check(self, tasks: Sequence[Task]) -> None:
        """More GPUs than the run has, asked by any task, is a ConfigError naming it.

        A run that finds GPUs while no task asks for any says so at info level (``-v``):
        its experiments run with ``CUDA_VISIBLE_DEVICES=""``. Not a warning: a CPU-only
        study on a GPU machine would get it at every run, with nothing to change.
        """
        asking = [(task, need_of(task)) for task in tasks if asks_for_gpus(task)]
        if not asking:
            if tasks and self.ctx.config.gpus is None and self._slots is None:
                found = run_gpus(self.ctx.config)
                self._slots = GpuSlots(found)
                if found:
                    logger.info(
                        "this machine has GPU%s %s, but no experiment of this run asks for "
                        "one (resources={'PATTERN': {'gpus': 1}}): each runs without, "
                        'with CUDA_VISIBLE_DEVICES=""',
                        "s" if len(found) > 1 else "",
                        ",".join(found),
                    )
            return
        slots = self._gpu_slots()
        bad = [(task, need) for task, need in asking if not slots.possible(need)]
        if not bad:
            return
        task, need = bad[0]
        label = task_label(task, self.ctx.group, task.group or self.ctx.group)
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        devices = slots.devices
        if devices:
            has = f"{len(devices)} (GPU{'s' if len(devices) > 1 else ''} {','.join(devices)})"
            hint = "name more with --gpus (or config gpus), or ask for fewer"
        elif self.ctx.config.gpus is not None:
            has = "none (--gpus, or config gpus, names none)"
            hint = "name them with --gpus 0,1,... (or config gpus)"
        else:
            has = "none (no --gpus, config gpus, CUDA_VISIBLE_DEVICES or nvidia-smi GPU)"
            hint = "name them with --gpus 0,1,... (or config gpus)"
        raise ConfigError(
            f"experiment {label!r}{more} asks for {float(need):g} GPU{'s' if need > 1 else ''}"
            f", but this run has {has}: {hint}",
            field="gpus",
        )

    def _gpu_slots(self) -> GpuSlots:
        if self._slots is None:
            self._slots = GpuSlots(run_gpus(self.ctx.config))
        return self._slots

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
        running = sum(1 for worker in self._workers if worker.inflight)
        return running + (self._current is not None) if self.in_process else running

    def running_tasks(self) -> list[Task]:
        """The tasks workers run now (the first each was sent)."""
        return [worker.inflight[0] for worker in self._workers if worker.inflight]

    def interrupt_task(self, name: str) -> bool:
        """Ctrl-C for the worker that runs task ``name`` now; True if one does."""
        for worker in self._workers:
            if worker.inflight and worker.inflight[0].name == name:
                killpg(worker.pid, signal.SIGINT)
                return True
        return False

    def requeue_running(self) -> None:
        """Stop taking tasks and have every running experiment recorded ``submitted``
        again (its job is requeued): ``requeue_signal`` to each worker that runs one."""
        self._stop_workers(self.requeue_signal)

    def reports(self) -> Iterator[Report]:
        if self.in_process:
            return self._inline()
        return self._pool()

    # -- in this process -------------------------------------------------------------
    def _inline(self) -> Iterator[Report]:
        """``-j1``: each experiment in this process, but one that asks for GPUs: that one
        in a worker of its own, as at -jN. This process may have initialised CUDA
        already (run.py, an earlier experiment), and then a changed
        CUDA_VISIBLE_DEVICES would change nothing here; a fresh process reads it."""
        if self._workers:  # a GPU worker's report, interrupted while it ran
            yield from self._pool(cpu=False)
        if self._current is not None:  # interrupted inside execute
            task, self._current = self._current, None
            yield Lost(task, os.getpid(), None, "interrupted")
        # The others run with what a worker of theirs would give them (no GPU, their
        # threads), as far as this process can: for the processes they start, and for
        # CUDA and libraries not loaded here yet (threadpoolctl resizes those that are).
        threads = ThreadLimits(self._threads)
        ctx = dataclasses.replace(self.ctx)
        saved = os.environ.get("CUDA_VISIBLE_DEVICES")
        with _interrupt_handler():
            try:
                os.environ["CUDA_VISIBLE_DEVICES"] = ""
                while self._pending and not self._stopping:
                    if execution.stop_requested():  # Ctrl-C between two experiments
                        raise KeyboardInterrupt
                    task = self._pending.popleft()
                    if asks_for_gpus(task):
                        self._gpu_pending.append(task, need_of(task))
                        yield from self._pool(cpu=False)
                        continue
                    workers = (task.config or ctx.config).workers
                    if workers != threads.workers:
                        ctx.env_members = f'"gpus": [], {threads.apply(workers)}'
                    self._current = task
                    since = boot_clock()
                    try:
                        result = execute(task, ctx)
                    except KeyboardInterrupt:
                        stop_children_since(since)
                        raise
                    self._current = None
                    yield Finished(task, result)
            finally:
                threads.restore()
                if saved is None:
                    os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                else:
                    os.environ["CUDA_VISIBLE_DEVICES"] = saved

    # -- in worker processes --------------------------------------------------------------
    def interrupt(self) -> None:
        if self._stopping:  # a second Ctrl-C: stop waiting for anyone
            self._kill_all()
            self._deadline = time.monotonic()
            return
        self._stop_workers(signal.SIGINT)

    def _stop_workers(self, signum: int | None) -> None:
        """Take no task more; ``signum`` to each worker that runs one (they record
        their experiments within the grace period); every worker retired, so one whose
        task never reached it (Ctrl-C struck between the two) exits at once."""
        self._stopping = True
        self._pending.clear()
        self._gpu_pending.clear()
        self._deadline = time.monotonic() + INTERRUPT_GRACE_S
        for worker in self._workers:
            if worker.inflight and signum is not None:
                killpg(worker.pid, signum)
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


def _dumps(task: Task) -> bytes:
    return pickle.dumps(task, pickle.HIGHEST_PROTOCOL)


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
