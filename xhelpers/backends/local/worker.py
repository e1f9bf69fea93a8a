"""The worker process of the local pool: receives tasks, runs them, reports."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import Any

from xhelpers.core import execution
from xhelpers.core.execution import RunContext, TaskResult, execute
from xhelpers.core.logs import ForwardHandler
from xhelpers.core.results import INTERRUPTED

__all__ = ["RUNNING_RECORD_DELAY_S", "worker_main"]

# A worker writes an experiment's running record only once it has run this long: the
# runner records a dead worker's experiment itself (see RunContext.running_record_delay).
RUNNING_RECORD_DELAY_S = 0.5


def worker_main(
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
