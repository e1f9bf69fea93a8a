"""Running one experiment, wherever it runs: the core's ``execute(task)``.

The runner describes each experiment in the main process (a :class:`Task`); a
backend ships tasks somewhere and calls :func:`execute` there. ``execute`` takes the
experiment's lock, works in its folder, captures its logging, and writes its
metafile: ``running`` first, then how it ended. Backends never write metafiles.
"""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xhelpers.core import results
from xhelpers.core.fingerprints import qualname
from xhelpers.core.logs import experiment_logging
from xhelpers.core.snapshot import real_config
from xhelpers.core.summary import BUSY, SKIPPED
from xhelpers.core.watchers import TaskWatcher
from xhelpers.errors import ResultTreeError

if TYPE_CHECKING:  # not at run time: a SLURM task imports pydantic only if it must
    from xhelpers.config import BaseConfig

__all__ = [
    "ExperimentInfo",
    "RunContext",
    "Task",
    "TaskResult",
    "blocked_line",
    "blocked_text",
    "current_experiment",
    "execute",
    "expect_requeue",
    "on_interrupt_signal",
    "on_requeue_signal",
    "reset_stop",
    "running_experiment",
    "stop_requested",
    "task_label",
]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Task:
    """One experiment to run, described in the main process; pickles small."""

    name: str
    folder: str
    fn: Callable[..., Any]
    description: str  # JSON members: function, arguments, fingerprint
    pass_config: bool
    config: BaseConfig | None = None  # this experiment's own config, when it differs
    force: bool = False
    # Its own resources (keys: RESOURCE_KEYS): SLURM settings, and the GPUs a local run
    # gives it (``gpus``).
    resources: dict[str, Any] | None = None
    # Pipelines. ``group``: the experiment's own group when it is not the run's (an
    # upstream of another group). ``upstreams``: (group, name, folder) of each result it
    # uses, recorded in its metafile when it starts. ``after``: the folders of those
    # upstreams handed to the same submit() call, which must succeed before it starts
    # (a backend that ``chains`` holds it back itself; otherwise the runner submits it
    # only once they have).
    group: str | None = None
    upstreams: tuple[tuple[str, str, str], ...] = ()
    after: tuple[str, ...] = ()
    # On a SLURM node, in a task that runs many experiments (a pack): this experiment's
    # own ref and JSON members, in place of the run's ``RunContext.job_id``/``job_members``.
    job: tuple[str, str] | None = None

    def __reduce__(self) -> tuple[Any, ...]:
        # Positional, not slot by slot: half the cost each way, once per task and worker.
        return (
            Task,
            (
                self.name,
                self.folder,
                self.fn,
                self.description,
                self.pass_config,
                self.config,
                self.force,
                self.resources,
                self.group,
                self.upstreams,
                self.after,
                self.job,
            ),
        )


@dataclass(slots=True)
class RunContext:
    """What every task of one run shares; sent once to each worker."""

    group: str
    config: BaseConfig
    run_info: str  # JSON members: versions, command line, git, config
    capture_logger: str = ""
    post_mortem: bool = False
    # SLURM hooks, set only on a node by the SLURM backend (empty locally, costing nothing):
    # the job id this process runs as (execute then waits for a lock held by the submitter
    # or by this job's previous attempt, see _wait_for_submitter), and JSON members added
    # to the metafile (slurm_job_id, node, attempts, submitit's log files).
    job_id: str | None = None
    job_members: str = ""
    # The output directory with its symlinks resolved (results.real_root); nothing of
    # the run is created, written or locked outside it. "" computes it where it runs.
    root: str = ""
    # Wraps each task where it runs (the run's Slack thread on a SLURM node; see
    # xhelpers.core.watchers.TaskWatcher). None: nothing watches the tasks themselves.
    watcher: TaskWatcher | None = None
    # False with --no-wait: nobody in this process collects outcomes (the backend may
    # detach its tasks; watchers say outcomes where they run).
    submitter_waits: bool = True
    # > 0: write the ``running`` record only once the experiment has run this long (see
    # _RunningRecord). Set by the local pool in its workers, whose runner records a
    # worker's death itself; 0 (SLURM, in-process runs) writes it before the call.
    running_record_delay: float = 0.0
    # JSON members of the process the experiment runs in, set there by its backend (the
    # GPUs and thread counts the experiment was given). "" adds none.
    env_members: str = ""


@dataclass(slots=True)
class TaskResult:
    name: str
    status: str
    duration: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __reduce__(self) -> tuple[Any, ...]:
        return (TaskResult, (self.name, self.status, self.duration, self.error, self.extra))


# Set while the experiment's own code runs. A worker turns SIGINT into
# KeyboardInterrupt only then (see on_interrupt_signal); elsewhere it just asks to stop.
_in_user_code = False
_stop_requested = False


@dataclass(frozen=True, slots=True)
class ExperimentInfo:
    """The experiment running in this process now (``xhelpers.current_experiment()``)."""

    group: str
    name: str
    folder: str
    config: BaseConfig
    runs: int = 1  # this run's number, as its metafile records it: 2 and up resume or retry
    # Files saved with xh.save(..., result=True), relative to the folder: the results
    # table reads their values; the metafile lists them as result_files.
    result_files: list[str] = field(default_factory=list)


_current: ExperimentInfo | None = None


def current_experiment() -> ExperimentInfo | None:
    """The experiment this code runs under, or None outside any experiment.

    Lets helpers (command experiments, loggers, checkpoint code) learn the name,
    group, folder and config without threading them through every call.
    """
    global _current
    info = _current
    if info is not None and real_config(info.config) is not info.config:
        info = _current = dataclasses.replace(info, config=real_config(info.config))
    return info


def running_experiment() -> ExperimentInfo | None:
    """:func:`current_experiment`, for the core's own use: its ``config`` may still be
    a snapshot (see xhelpers.core.snapshot), so asking costs no unpickling."""
    return _current


def on_interrupt_signal(signum: int, frame: Any) -> None:
    """SIGINT handler while experiments run (in workers, and in-process with -j1).

    An experiment that catches the KeyboardInterrupt and returns is still recorded as
    interrupted: the stop request outlives the exception.
    """
    global _stop_requested
    _stop_requested = True
    if _in_user_code:
        raise KeyboardInterrupt


def stop_requested() -> bool:
    return _stop_requested


def reset_stop() -> None:
    """Forget an earlier Ctrl-C (the next in-process run starts afresh)."""
    global _stop_requested
    _stop_requested = False


_process_info: tuple[int, str] | None = None


def _process_members() -> str:
    global _process_info
    pid = os.getpid()
    if _process_info is None or _process_info[0] != pid:  # recomputed after fork
        host = os.uname().nodename
        _process_info = (pid, f'"host": {json.dumps(host)}, "pid": {pid}')
    return _process_info[1]


def _error_members(exc: BaseException) -> tuple[str, str]:
    if isinstance(exc, SystemExit):
        code = exc.code
        message = f"sys.exit({code!r})"
        error: dict[str, Any] = {
            "type": "SystemExit",
            "message": message,
            "exit_code": code if isinstance(code, (int, type(None))) else str(code),
        }
    else:
        message = str(exc)
        error = {"type": qualname(type(exc)).removeprefix("builtins."), "message": message}
    # Start at the experiment's own frame: ours above it only adds noise.
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    error["traceback"] = "".join(traceback.format_exception(type(exc), exc, tb))
    first = message.splitlines()[0] if message else ""
    return json.dumps(error, default=repr), f"{error['type']}: {first}".rstrip(": ")


def execute(task: Task, ctx: RunContext) -> TaskResult:
    """Run one experiment in its folder and record it; KeyboardInterrupt is re-raised.

    With ``ctx.watcher`` (a SLURM task of a run that posts to Slack) the watcher wraps
    the run: the core reports, wherever it runs, without knowing who listens.
    """
    if ctx.watcher is None:
        return _execute(task, ctx)
    return ctx.watcher(task, ctx, _execute)


def _execute(task: Task, ctx: RunContext) -> TaskResult:
    folder = task.folder
    lock = results.ExperimentLock(folder)
    try:
        root = ctx.root or results.real_root(ctx.config.output_directory)
        existed = results.prepare_folder(folder, root)
        taken = lock.acquire()
    except OSError as exc:  # the folder is a file, a link out of the tree, ...
        return _refused(task, exc)
    if task.job is not None:  # one experiment of a pack: its own ref and members
        ctx = dataclasses.replace(ctx, job_id=task.job[0], job_members=task.job[1])
    if not taken and (ctx.job_id is None or not _wait_for_submitter(lock, folder, ctx.job_id)):
        return TaskResult(task.name, BUSY)
    try:
        try:
            started = _start(task, ctx, folder, existed)
        except _Blocked as exc:
            return _record_blocked(task, ctx, exc.by)
        except OSError as exc:  # a full disk, metafile.json a folder, ...
            return _refused(task, exc)
        if started is None:
            return TaskResult(task.name, SKIPPED)
        return _call(task, ctx, task.config or ctx.config, *started)
    finally:
        _settle_running()  # nothing of this run is written once its lock is let go
        lock.release()


class _RunningRecord:
    """Writes a worker's ``running`` record late: only for an experiment still running.

    Most of a sweep's experiments can be short, and for them the ``running`` record is
    a quarter of what xhelpers costs per experiment. Until it is written, the lock says
    the experiment runs (a second runner leaves it alone, ``-l`` shows its previous
    state), and if the worker dies the runner records it ``failed`` from memory. One
    thread per worker looks twice per delay, so scheduling costs no wake-up.
    """

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.pid = os.getpid()  # a process forked from this one has no such thread
        import threading  # (workers only: kept off start-up)

        self._lock = threading.Lock()
        self._due: tuple[float, str, str] | None = None  # (when, folder, text)
        threading.Thread(target=self._loop, name="xhelpers-running-record", daemon=True).start()

    def schedule(self, folder: str, text: str) -> None:
        with self._lock:
            self._due = (time.monotonic() + self.delay, folder, text)

    def settle(self) -> None:
        """Cancel the pending record; once this returns, none is being written."""
        with self._lock:
            self._due = None

    def _loop(self) -> None:
        while True:
            time.sleep(self.delay / 2)
            with self._lock:  # held while writing: settle() waits for the write to end
                due = self._due
                if due is None or due[0] > time.monotonic():
                    continue
                self._due = None
                try:
                    results.write_metafile(due[1], due[2])
                except OSError as exc:  # its final record will say what became of it
                    logger.warning("could not record it as running: %s", exc.strerror or exc)


_running_record: _RunningRecord | None = None


def _record_running(ctx: RunContext, folder: str, text: str) -> None:
    global _running_record
    delay = ctx.running_record_delay
    if delay <= 0:
        results.write_metafile(folder, text)
        return
    # The record written now would have failed on a full disk and refused the run; a
    # deferred one cannot, so refuse here what could not be recorded anyway.
    fs = os.statvfs(folder)
    if fs.f_bavail * fs.f_frsize < 2 * len(text) + 4096:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), folder)
    record = _running_record
    if record is None or record.delay != delay or record.pid != os.getpid():
        record = _running_record = _RunningRecord(delay)
    record.schedule(folder, text)


def _settle_running() -> None:
    record = _running_record
    if record is not None and record.pid == os.getpid():
        record.settle()


def _start(task: Task, ctx: RunContext, folder: str, existed: bool) -> tuple[str, int] | None:
    """Under the lock: decide from what is on disk now; record ``running`` (at once, or
    after a moment: see _RunningRecord); this run's members and number.

    None when the experiment is done: whoever made the folder or the lock file, another
    runner may have taken the lock first and finished it since we planned.
    """
    resumed: list[str] = []
    # Read even in a folder this process just made: another runner may have found it
    # made, taken the lock first, and run the experiment to its end since.
    previous = results.read_own_metafile(folder)
    if previous is not None and previous.get("status") == results.DONE and not task.force:
        return None
    runs = results.runs_so_far(previous) + 1
    # Before anything in the folder changes: an upstream that is not there blocks it.
    used = _upstream_records(task, ctx) if task.upstreams else ""
    if existed or previous is not None:
        if task.force:
            results.empty_folder(folder)
        else:
            resumed = _checkpoints(folder, ctx.config.checkpoint_files)
    head = (
        f'{task.description}, "group": {json.dumps(task.group or ctx.group)}, '
        f'"name": {json.dumps(task.name)}, "started": "{results.now()}", {_process_members()}, '
        f'"runs": {runs}, {ctx.run_info}{used}'
    )
    if resumed:
        head += f', "resumed_from": {json.dumps(resumed)}'
    if ctx.job_members:  # SLURM: job id, node, attempts, log files
        head += ", " + ctx.job_members
    if ctx.env_members:  # its GPUs and thread counts
        head += ", " + ctx.env_members
    text = results.encode_metafile(results.RUNNING, head)
    if previous is not None and previous.get("status") == results.SUBMITTED:
        # A marker says queued, and only a metafile says otherwise: replace it at once.
        results.write_metafile(folder, text)
    else:
        _record_running(ctx, folder, text)
    return head, runs


class _Blocked(Exception):
    def __init__(self, by: list[str]) -> None:
        super().__init__(by)
        self.by = by


def task_label(task: Task, home: str, group: str) -> str:
    """An experiment as its run names it: its name at home, ``group:name`` elsewhere."""
    return task.name if group == home else f"{group}:{task.name}"


def _upstream_records(task: Task, ctx: RunContext) -> str:
    """The ``upstreams`` member: which result of each upstream this run uses.

    Read under this experiment's lock, just before it starts: an upstream that is not
    ``success`` now (it failed, was rerun meanwhile, its folder was deleted) blocks it.
    """
    used = []
    missing = []
    for group, name, folder in task.upstreams:
        meta = results.read_metafile(folder)
        shown = name if group == (task.group or ctx.group) else f"{group}:{name}"
        if meta is None or meta.get("status") != results.DONE:
            missing.append(shown)
            continue
        used.append(
            {
                "group": group,
                "name": name,
                "fingerprint": meta.get("fingerprint"),
                "ended": meta.get("ended"),
            }
        )
    if missing:
        raise _Blocked(missing)
    return f', "upstreams": {json.dumps(used)}'


def blocked_text(task: Task, ctx: RunContext, by: list[str], runs: int) -> str:
    """The metafile of an experiment not run because upstreams ``by`` did not succeed."""
    shown = ", ".join(by[:3]) + (f" and {len(by) - 3} more" if len(by) > 3 else "")
    error = {"type": "Blocked", "message": f"not run: its upstream {shown} did not succeed"}
    body = (
        f'{task.description}, "group": {json.dumps(task.group or ctx.group)}, '
        f'"name": {json.dumps(task.name)}, "ended": "{results.now()}", "runs": {runs}, '
        f'{ctx.run_info}, "blocked_by": {json.dumps(by)}, "error": {json.dumps(error)}'
    )
    return results.encode_metafile(results.BLOCKED, body)


def blocked_line(by: list[str]) -> str:
    return f"blocked: upstream {', '.join(by[:3])}{' ...' if len(by) > 3 else ''} did not succeed"


def _record_blocked(task: Task, ctx: RunContext, by: list[str]) -> TaskResult:
    previous = results.read_metafile(task.folder)
    try:
        if (previous or {}).get("status") != results.DONE:  # (forced): the result stays
            runs = results.runs_so_far(previous)  # it did not run: the count stays
            results.write_metafile(task.folder, blocked_text(task, ctx, by, runs))
    except OSError as exc:
        return _refused(task, exc)
    return TaskResult(task.name, results.BLOCKED, error=blocked_line(by))


def _refused(task: Task, exc: OSError) -> TaskResult:
    """An experiment that could not start: failed, with one line naming the cause.

    Its metafile is left as it was (the cause is often that it cannot be written);
    the run's summary carries the line.
    """
    if isinstance(exc, ResultTreeError):
        line = str(exc)
    else:
        where = f" ({exc.filename})" if exc.filename else ""
        line = f"{exc.strerror or exc}{where}"
    logger.error("[%s] not started: %s", task.name, line)
    return TaskResult(task.name, results.FAILED, error=line)


def _call(task: Task, ctx: RunContext, config: BaseConfig, head: str, runs: int) -> TaskResult:
    global _in_user_code, _current
    folder = task.folder
    info = _current = ExperimentInfo(task.group or ctx.group, task.name, folder, config, runs)
    cwd = os.getcwd()
    interrupted: BaseException | None = None
    error_json = error_line = None
    returned = ""
    start = time.perf_counter()
    with experiment_logging(task.name, folder, ctx.capture_logger):
        try:
            os.chdir(folder)
            _in_user_code = True
            if _stop_requested:
                raise SystemExit("requeued") if _requeue_follows else KeyboardInterrupt
            value = task.fn(config=real_config(config)) if task.pass_config else task.fn()
            _in_user_code = False
            status = results.DONE
            if _stop_requested:  # it caught Ctrl-C and returned early: not a finished run
                status, interrupted = results.INTERRUPTED, KeyboardInterrupt()
                error_json = json.dumps(
                    {"type": "KeyboardInterrupt", "message": "interrupted (it caught Ctrl-C)"}
                )
                error_line = "interrupted (it caught Ctrl-C and returned)"
            if value is not None:
                try:
                    returned = f', "returned": {json.dumps(value)}'
                except (TypeError, ValueError):
                    returned = f', "returned_type": {json.dumps(type(value).__qualname__)}'
        except KeyboardInterrupt as exc:
            status, interrupted = results.INTERRUPTED, exc
            error_json, error_line = (
                json.dumps({"type": "KeyboardInterrupt", "message": "interrupted"}),
                "interrupted",
            )
        except _requeue_exit() as exc:  # SLURM hook (see expect_requeue); matches nothing locally
            status, interrupted = results.SUBMITTED, exc
            returned = f', "requeued": "{results.now()}"'
            logger.warning("requeued by SLURM: this run stops here and resumes later")
        except BaseException as exc:
            status = results.FAILED
            error_json, error_line = _error_members(exc)
            logger.error(
                "failed: %s",
                error_line,
                exc_info=(type(exc), exc, exc.__traceback__.tb_next if exc.__traceback__ else None),
            )
            if ctx.post_mortem and sys.stdin.isatty():
                import pdb

                pdb.post_mortem(exc.__traceback__)
        finally:
            _in_user_code = False
            _current = None
            duration = time.perf_counter() - start
            os.chdir(cwd)
    _settle_running()
    ended = results.now()
    body = f'{head}, "ended": "{ended}", "duration": {duration:.6f}{returned}'
    if info.result_files:
        body += f', "result_files": {json.dumps(info.result_files)}'
    if error_json is not None:
        body += f', "error": {error_json}'
    try:
        results.write_metafile(folder, results.encode_metafile(status, body), durable=True)
    except OSError as exc:
        status, error_line = results.FAILED, _unrecorded(folder, head, ended, duration, exc)
    if interrupted is not None:
        raise interrupted
    return TaskResult(task.name, status, duration, error_line)


def _unrecorded(folder: str, head: str, ended: str, duration: float, exc: OSError) -> str:
    """The run's record could not be written (a full disk): record a failure if that
    still fits, so nothing reads as done or running; the line for the summary."""
    line = f"its result could not be recorded: {exc.strerror or exc}"
    error = json.dumps({"type": "RecordError", "message": line})
    body = f'{head}, "ended": "{ended}", "duration": {duration:.6f}, "error": {error}'
    try:
        results.write_metafile(folder, results.encode_metafile(results.FAILED, body))
    except OSError:
        logger.error("%s; its metafile still says running (shown as interrupted)", line)
    else:
        logger.error("%s", line)
    return line


# -- SLURM hooks ----------------------------------------------------------------------
# Used only by xhelpers.backends.slurm; the local path never reaches them.

SUBMITTED_LOCK_WAIT_S = 60.0  # how long a SLURM task waits for the submitter's lock

# Set by expect_requeue() on a SLURM node when submitit has requeued the job and is
# about to end it with sys.exit() from inside the experiment's code.
_requeue_follows = False


def expect_requeue() -> None:
    """Declare the next ``SystemExit`` a requeue (submitit's checkpoint handler), not a failure.

    ``execute`` then records the experiment as ``submitted`` again (with ``requeued``),
    re-raises the ``SystemExit`` so the job ends without a result, and the next attempt
    continues in the same folder.
    """
    global _requeue_follows
    _requeue_follows = True


def on_requeue_signal(signum: int, frame: Any) -> None:
    """The requeue signal's handler in a SLURM pack's workers: the job is being requeued.

    The running experiment ends with a ``SystemExit`` recorded as a requeue (``submitted``
    again: the job's next attempt resumes it); a worker between experiments takes none
    more (one it was just handed is recorded so as well, unstarted).
    """
    global _stop_requested
    expect_requeue()
    _stop_requested = True
    if _in_user_code:
        raise SystemExit(f"requeued (signal {signum})")


def _requeue_exit() -> tuple[type[BaseException], ...]:
    # An except clause's expression is evaluated only when an exception reaches it.
    return (SystemExit,) if _requeue_follows else ()


def _wait_for_submitter(lock: results.ExperimentLock, folder: str, job_id: str) -> bool:
    """On a SLURM node: wait (bounded) for the experiment's lock; True once taken.

    The submitter holds the lock while it marks the experiment ``submitted`` (see
    record_submitted), and a requeued job's previous attempt holds it while it exits:
    both let go within moments. Another process that runs the experiment does not:
    give up at once when the metafile says ``running`` for some other job or process.
    """
    deadline = time.monotonic() + SUBMITTED_LOCK_WAIT_S
    delay = 0.01
    while time.monotonic() < deadline:
        if results.read_status(folder) == results.RUNNING:
            meta = results.read_metafile(folder)
            if (
                meta is not None
                and meta.get("status") == results.RUNNING
                and (meta.get("ref") or meta.get("slurm_job_id")) != job_id
            ):
                return False
        time.sleep(delay)
        delay = min(2 * delay, 0.25)
        if lock.acquire():
            return True
    return False


def _checkpoints(folder: str, patterns: list[str]) -> list[str]:
    if not patterns:
        return []
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns))
