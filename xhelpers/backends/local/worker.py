"""The worker process of the local pool: receives tasks, runs them, reports.

Each worker starts with the environment its experiments get (:class:`WorkerSetup`):
``CUDA_VISIBLE_DEVICES`` (empty, or the GPUs of the one experiment a GPU worker runs)
and the thread-count variables (:mod:`xhelpers.backends.threads`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from xhelpers.backends.threads import ThreadLimits, ThreadPolicy
from xhelpers.core import execution
from xhelpers.core.execution import RunContext, TaskResult, execute
from xhelpers.core.logs import ForwardHandler
from xhelpers.core.results import INTERRUPTED

__all__ = ["RUNNING_RECORD_DELAY_S", "WorkerSetup", "worker_main"]

# A worker writes an experiment's running record only once it has run this long: the
# runner records a dead worker's experiment itself (see RunContext.running_record_delay).
RUNNING_RECORD_DELAY_S = 0.5


@dataclass(frozen=True)
class WorkerSetup:
    """What a worker's experiments get: its environment (the runner also has it in place
    while it starts a spawned worker, whose interpreter reads it from its first moment),
    the GPUs that environment names, the ``config.workers`` its thread variables are
    the share of, and the thread policy for an experiment whose own share differs."""

    environ: dict[str, str] = field(default_factory=dict)
    gpus: tuple[str, ...] = ()
    workers: int = 1
    threads: ThreadPolicy = field(default_factory=ThreadPolicy)
    # In a SLURM pack: the signal on which the running experiment is recorded
    # ``submitted`` again and the worker exits (its job is being requeued).
    requeue_signal: int | None = None


def worker_main(
    conn: Connection,
    ctx: RunContext,
    console_level: int,
    inherited: Sequence[int] = (),
    setup: WorkerSetup | None = None,
) -> None:
    setup = setup or WorkerSetup()
    # Before anything else of this process runs, so CUDA, and every library loaded from
    # now on, reads these; under fork and forkserver this is their first moment here.
    os.environ.update(setup.environ)
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
    if setup.requeue_signal is not None:
        signal.signal(setup.requeue_signal, execution.on_requeue_signal)
    ctx.running_record_delay = RUNNING_RECORD_DELAY_S  # this process' own copy
    gpus = '"gpus": ' + json.dumps(list(setup.gpus))
    threads = ThreadLimits(setup.threads)
    # Resizes the pools of libraries loaded before this process had its variables.
    ctx.env_members = f"{gpus}, {threads.apply(setup.workers)}"
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
        workers = (task.config or ctx.config).workers
        if workers != threads.workers:  # its own config gives it another share
            ctx.env_members = f"{gpus}, {threads.apply(workers)}"
        try:
            result = execute(task, ctx)
        except KeyboardInterrupt:
            result = TaskResult(task.name, INTERRUPTED, error="interrupted")
            send(("result", result))
            return
        send(("result", result))
