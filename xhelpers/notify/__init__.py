"""Slack: one thread per run, posted from a background thread, never breaking a run.

The runner imports this module only when a Slack token is configured, and slack_sdk is
imported only when a client is made. A run posts a parent message, then replies in
its thread: the warnings and errors logged during the run (batched) and the summary.
Every failure (unreachable, slow, refused, rate limited beyond the retries) ends in one
warning on the runner's console, after which Slack is left alone for the rest of the run.

SLURM tasks post into the run's thread themselves: the runner ships the thread
(:meth:`SlackRun.thread`, a ``{"channel", "thread_ts"}`` dict, never the token) in the
run context; on the node, :func:`task_thread` posts the task's warnings and
:func:`post_outcome` its outcome. The node reads the token from its own config or
environment.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

from xhelpers.core import logs
from xhelpers.notify.client import (
    CALL_TIMEOUT_S,
    ENV_BASE_URL,
    ENV_CHANNEL,
    ENV_TOKEN,
    SlackSettings,
    describe_failure,
    make_client,
    slack_settings,
)
from xhelpers.notify.client import MAX_RETRY_AFTER_S as MAX_RETRY_AFTER_S
from xhelpers.notify.messages import MAX_LISTED as MAX_LISTED
from xhelpers.notify.messages import MAX_MESSAGE_CHARS as MAX_MESSAGE_CHARS
from xhelpers.notify.messages import MAX_RECORD_CHARS as MAX_RECORD_CHARS
from xhelpers.notify.messages import outcome_text, parent_text, record_line, summary_text
from xhelpers.notify.outbox import SlackOutbox

if TYPE_CHECKING:
    from xhelpers.config import BaseConfig
    from xhelpers.core.execution import RunContext, Task, TaskResult
    from xhelpers.notify.messages import SummaryLike

__all__ = [
    "ENV_BASE_URL",
    "ENV_CHANNEL",
    "ENV_TOKEN",
    "NodeThread",
    "SlackRun",
    "SlackSettings",
    "open_run",
    "post_outcome",
    "slack_settings",
    "task_thread",
]

# Also importable from here, where they were defined before: make_client, record_line,
# parent_text, outcome_text, summary_text and the MAX_* limits.

logger = logging.getLogger(__name__)

# The timing knobs are read from this module when used, so that setting them here
# (notify.FLUSH_TIMEOUT_S = 1.0, as tests and run.py files do) takes effect; that is
# why CALL_TIMEOUT_S is handed on to the client from here.
FLUSH_TIMEOUT_S = 10.0  # at the end of a run, the longest we wait for what is still queued
BATCH_WINDOW_S = 2.0  # log records arriving within this window share one message
MAX_PENDING_RECORDS = 200  # buffered records; beyond, they are only counted

_OWN_LOGGERS = (__name__, "slack_sdk")  # never posted: no loops, no client internals


class _SlackHandler(logging.Handler):
    """On the runner (or a SLURM node): hand records at the Slack level to the run."""

    def __init__(self, run: SlackRun) -> None:
        super().__init__(run.settings.level)
        self._run = run

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_OWN_LOGGERS) or self._run.failure is not None:
            return
        try:
            self._run._add_line(record_line(record))
        except Exception:  # a record we cannot format is not worth a traceback on stderr
            pass


class SlackRun:
    """The Slack thread of one run, posted by a background thread in this process.

    Nothing here blocks the caller or raises: posting happens in a daemon thread fed
    through a queue; the first failure disables the object and logs one warning;
    :meth:`close` waits for what is queued at most ``FLUSH_TIMEOUT_S``.
    """

    def __init__(
        self,
        settings: SlackSettings,
        *,
        thread_ts: str | None = None,
        client: Any = None,
    ) -> None:
        self.settings = settings
        self._client = (
            client if client is not None else make_client(settings, timeout=CALL_TIMEOUT_S)
        )
        self._channel = settings.channel
        self._ts = thread_ts
        self._parent: str | None = None
        self._outbox = SlackOutbox()
        self._inline = True  # experiments may run in this process (-j1, a SLURM node)
        self._warned = False
        self._warned_lock = threading.Lock()
        self._ready = threading.Event()  # set once the thread's ts is known or never will be
        if thread_ts:
            self._ready.set()
        self._handler = _SlackHandler(self)
        self._worker: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SlackRun(channel={self._channel!r}, thread_ts={self._ts!r})"

    # -- the caller's side ---------------------------------------------------------------
    @property
    def failure(self) -> str | None:
        """What went wrong; Slack is left alone after."""
        return self._outbox.failure

    @property
    def level(self) -> int:
        """Log records at this level and up are posted."""
        return self.settings.level

    def attach(self, logger_name: str = "") -> None:
        """Post records reaching ``logger_name`` ('' = root) while attached."""
        logging.getLogger(logger_name or None).addHandler(self._handler)

    def detach(self, logger_name: str = "") -> None:
        logging.getLogger(logger_name or None).removeHandler(self._handler)

    def start(
        self,
        group: str,
        *,
        selected: int,
        to_run: int,
        skipped: int,
        backend: str,
        jobs: int = 1,
    ) -> None:
        """Post the run's parent message (in the background) and start the thread."""
        self._parent = parent_text(
            group, selected=selected, to_run=to_run, skipped=skipped, backend=backend, jobs=jobs
        )
        self._inline = backend == "local" and jobs == 1
        self._begin()

    def thread(self, timeout: float | None = None) -> dict[str, str] | None:
        """The run's thread as ``{"channel", "thread_ts"}`` once posted, for SLURM tasks.

        Waits for the parent message at most ``timeout`` (default ``CALL_TIMEOUT_S``);
        None when it is not posted by then, or Slack failed. Holds no token.
        """
        self._ready.wait(CALL_TIMEOUT_S if timeout is None else timeout)
        if self.failure is not None or not self._ts:
            return None
        return {"channel": self._channel, "thread_ts": self._ts}

    def task_watcher(self, outcomes: bool) -> NodeThread | None:
        """What tasks that run elsewhere take along to post into this run's thread."""
        thread = self.thread()
        return None if thread is None else NodeThread(thread, outcomes)

    def post(self, text: str, *, broadcast: bool = False) -> None:
        """Queue a reply (already Slack-escaped) after the log records so far."""
        self._outbox.add_message(text, broadcast)

    def finish(self, summary: SummaryLike) -> None:
        """Queue the summary; broadcast to the channel when anything failed."""
        text, broadcast = summary_text(summary)
        self.post(text, broadcast=broadcast)

    def outcome(
        self,
        name: str,
        status: str,
        folder: str,
        duration: float | None = None,
        error: str | None = None,
    ) -> None:
        """Queue one experiment's outcome (a SLURM task's own, with ``--no-wait``)."""
        self.post(outcome_text(name, status, folder, duration, error))

    def close(self, timeout: float | None = None) -> None:
        """Stop taking records, post what is queued within ``timeout``, warn once if failed."""
        timeout = FLUSH_TIMEOUT_S if timeout is None else timeout
        self.detach()
        self._outbox.close()
        worker = self._worker
        if worker is not None:
            try:
                worker.join(timeout)
            except KeyboardInterrupt:  # Ctrl-C while waiting for Slack: stop waiting
                self._fail("stopped waiting for Slack (Ctrl-C); the last messages are not posted")
            if worker.is_alive():
                self._fail(
                    f"no answer within {timeout:g} s at the end of the run; "
                    "the last messages are not posted"
                )
        self._warn_once()

    def __enter__(self) -> SlackRun:
        self.attach()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the background thread -----------------------------------------------------------
    def _begin(self) -> None:
        if self._worker is None:
            self._worker = threading.Thread(target=self._loop, name="xhelpers-slack", daemon=True)
            self._worker.start()

    def _add_line(self, line: str) -> None:
        self._outbox.add_record(line, window=BATCH_WINDOW_S, limit=MAX_PENDING_RECORDS)

    def _loop(self) -> None:
        try:
            if self._parent is not None and self._ts is None:
                ts = self._send(self._parent, thread=False)
                self._ready.set()
                if ts is None:
                    return
            while (item := self._outbox.next()) is not None:
                if self._send(*item) is None:
                    return
        except BaseException as exc:  # never a thread traceback on stderr
            self._fail(f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self._ready.set()
            if self.failure is not None:
                self._warn_early()

    def _send(self, text: str, broadcast: bool = False, *, thread: bool = True) -> str | None:
        """Post one message; its ts, or None after a failure (then everything stops)."""
        if self.failure is not None:
            return None
        try:
            response = self._client.chat_postMessage(
                channel=self._channel,
                text=text,
                thread_ts=self._ts if thread else None,
                reply_broadcast=True if broadcast else None,
                unfurl_links=False,
                unfurl_media=False,
            )
            ts = response.get("ts")
            if not thread:
                if not ts:
                    raise ValueError("Slack's answer has no message ts")
                self._ts = str(ts)
                self._channel = str(response.get("channel") or self._channel)
        except Exception as exc:
            self._fail(describe_failure(exc, self.settings, timeout=CALL_TIMEOUT_S))
            return None
        return str(ts or "")

    def _fail(self, what: str) -> None:
        self._outbox.stop(self.settings.without_token(what))
        self._ready.set()

    def _warn_early(self) -> None:
        """Warn from this thread now, unless experiments run in this process.

        They do with -j1 (and on a SLURM node): a record logged from here could then
        land in an experiment's log, attributed to it. close() warns, in the caller's
        thread, between experiments.
        """
        if not self._inline and logs._current is None:
            self._warn_once()

    def _warn_once(self) -> None:
        with self._warned_lock:
            if self.failure is None or self._warned:
                return
            self._warned = True
        logger.warning("Slack notifications are off for the rest of this run: %s", self.failure)


def open_run(config: BaseConfig) -> SlackRun | None:
    """The Slack thread for a run with ``config``; None when token or channel is missing."""
    settings = slack_settings(config)
    if settings is None:
        logger.info(
            "Slack: a token but no channel (slackchannel or %s); nothing posted", ENV_CHANNEL
        )
        return None
    return _new_run(settings)


def _new_run(settings: SlackSettings, thread_ts: str | None = None) -> SlackRun | None:
    try:
        return SlackRun(settings, thread_ts=thread_ts)
    except ImportError:
        logger.warning("Slack: slack_sdk is not installed (pip install slack_sdk); nothing posted")
    except Exception as exc:
        text = settings.without_token(f"{type(exc).__name__}: {exc}")
        logger.warning("Slack: cannot make a client (%s); nothing posted", text)
    return None


def _for_thread(thread: Mapping[str, str] | None, config: BaseConfig | None) -> SlackRun | None:
    if not thread or not thread.get("thread_ts") or not thread.get("channel"):
        return None
    settings = slack_settings(config, channel=thread["channel"])
    if settings is None:
        logger.info("Slack: no token on this node (slacktoken or %s); nothing posted", ENV_TOKEN)
        return None
    return _new_run(settings, thread["thread_ts"])


@contextmanager
def task_thread(
    thread: Mapping[str, str] | None,
    config: BaseConfig | None = None,
    *,
    timeout: float | None = None,
) -> Iterator[SlackRun | None]:
    """On a SLURM node: post this process's warnings into the run's ``thread`` meanwhile.

    ``thread`` is what :meth:`SlackRun.thread` gave the submitter. Yields the SlackRun
    (call ``.outcome(...)`` on it to post the task's outcome) or None when the thread or
    a token is missing. Leaves within ``timeout`` (default ``FLUSH_TIMEOUT_S``) at exit.
    """
    run = _for_thread(thread, config)
    if run is None:
        yield None
        return
    run.attach()
    run._begin()
    try:
        yield run
    finally:
        run.close(timeout)


@dataclass(frozen=True, slots=True)
class NodeThread:
    """A task's watcher on a SLURM node: its warnings (and, when nobody waits for it,
    its outcome) go into the run's thread. Pickled with the task: the thread's ids
    only, never the token (the node has it from the environment)."""

    thread: dict[str, str]
    outcomes: bool  # True with --no-wait: nobody collects outcomes, so each task posts its own

    def __call__(
        self, task: Task, ctx: RunContext, run: Callable[[Task, RunContext], TaskResult]
    ) -> TaskResult:
        with task_thread(self.thread, ctx.config) as slack:
            result = run(task, ctx)
            if slack is not None and self.outcomes:
                slack.outcome(task.name, result.status, task.folder, result.duration, result.error)
        return result


def post_outcome(
    thread: Mapping[str, str] | None,
    name: str,
    status: str,
    folder: str,
    *,
    duration: float | None = None,
    error: str | None = None,
    config: BaseConfig | None = None,
    timeout: float | None = None,
) -> bool:
    """Post one experiment's outcome into the run's ``thread`` (SLURM ``--no-wait``).

    Returns True when posted; never raises (one warning when Slack fails). Waits at
    most ``timeout`` (default ``FLUSH_TIMEOUT_S``).
    """
    run = _for_thread(thread, config)
    if run is None:
        return False
    run.outcome(name, status, folder, duration, error)
    run._begin()
    run.close(timeout)
    return run.failure is None
