"""Slack: one thread per run, posted from a background thread, never breaking a run.

The runner imports this module only when a Slack token is configured, and slack_sdk is
imported only when a client is made here. A run posts a parent message, then replies in
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

import getpass
import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from . import logs

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from slack_sdk.http_retry import RetryHandler

    from .config import BaseConfig

__all__ = [
    "ENV_BASE_URL",
    "ENV_CHANNEL",
    "ENV_TOKEN",
    "SlackRun",
    "SlackSettings",
    "open_run",
    "post_outcome",
    "slack_settings",
    "task_thread",
]

logger = logging.getLogger(__name__)

ENV_TOKEN = "XHELPERS_SLACK_TOKEN"
ENV_CHANNEL = "XHELPERS_SLACK_CHANNEL"
ENV_BASE_URL = "XHELPERS_SLACK_BASE_URL"

CALL_TIMEOUT_S = 5  # per HTTP request (slack_sdk takes whole seconds)
FLUSH_TIMEOUT_S = 10.0  # at the end of a run, the longest we wait for what is still queued
BATCH_WINDOW_S = 2.0  # log records arriving within this window share one message
MAX_RETRY_AFTER_S = 30  # a 429 asking for a longer wait is a failure, not a retry
MAX_MESSAGE_CHARS = 3000  # of log lines or summary per message (Slack truncates at 40,000)
MAX_RECORD_CHARS = 500  # per log record
MAX_PENDING_RECORDS = 200  # buffered records; beyond, they are only counted
MAX_LISTED = 20  # failures listed in the summary message

_OWN_LOGGERS = (__name__, "slack_sdk")  # never posted: no loops, no client internals
_ICONS = {"success": ":white_check_mark:", "failed": ":x:"}
_WORDS = {"success": "succeeded", "failed": "failed", "interrupted": "interrupted"}
_AUTH_ERRORS = ("invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive")


@dataclass(frozen=True)
class SlackSettings:
    """Where and how to post; the token is left out of ``repr``."""

    token: str = field(repr=False)
    channel: str
    base_url: str | None = None
    level: int = logging.WARNING


def slack_settings(
    config: BaseConfig | None = None,
    *,
    channel: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SlackSettings | None:
    """Token, channel and API URL from ``config``, else the environment; None if incomplete.

    Values set in the config win; ``XHELPERS_SLACK_TOKEN``, ``XHELPERS_SLACK_CHANNEL``
    and ``XHELPERS_SLACK_BASE_URL`` fill in what it leaves unset. ``channel`` (a
    shipped thread's) replaces both.
    """
    env = os.environ if environ is None else environ
    secret = getattr(config, "slacktoken", None)
    token = (secret.get_secret_value() if secret is not None else "") or env.get(ENV_TOKEN, "")
    channel = channel or getattr(config, "slackchannel", None) or env.get(ENV_CHANNEL, "")
    base_url = getattr(config, "slack_base_url", None) or env.get(ENV_BASE_URL, "")
    level = logging.getLevelName(getattr(config, "slack_loglevel", None) or "WARNING")
    token, channel = token.strip(), channel.strip()
    if not token or not channel:
        return None
    return SlackSettings(
        token, channel, base_url.strip() or None, level if isinstance(level, int) else 30
    )


def _quiet_logger() -> logging.Logger:
    """The client's logger: outside the logging tree, so nothing it says propagates.

    slack_sdk logs requests and responses at debug level; none of it may reach the
    console or an experiment's log (the root logger is at DEBUG while one runs).
    """
    quiet = logging.Logger("xhelpers.notify.slack_sdk", logging.CRITICAL)
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    quiet.disabled = True
    return quiet


def _retry_handlers() -> list[RetryHandler]:
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )
    from slack_sdk.http_retry.request import HttpRequest
    from slack_sdk.http_retry.response import HttpResponse
    from slack_sdk.http_retry.state import RetryState

    class PoliteRateLimit(RateLimitErrorRetryHandler):  # type: ignore[misc]
        """Waits as long as Retry-After says, unless that is more than we would wait."""

        def _can_retry(
            self,
            *,
            state: RetryState,
            request: HttpRequest,
            response: HttpResponse | None = None,
            error: Exception | None = None,
        ) -> bool:
            if response is None or response.status_code != 429:
                return False
            for key, values in response.headers.items():
                if key.lower() == "retry-after":
                    try:
                        return int(values[0]) <= MAX_RETRY_AFTER_S
                    except (ValueError, IndexError):
                        return True
            return True

    return [
        PoliteRateLimit(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
        ConnectionErrorRetryHandler(max_retry_count=1),
    ]


def make_client(settings: SlackSettings) -> WebClient:
    """A WebClient with short timeouts, polite retries and a logger that says nothing."""
    from slack_sdk import WebClient

    kwargs: dict[str, Any] = {}
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    return WebClient(
        token=settings.token,
        timeout=CALL_TIMEOUT_S,
        logger=_quiet_logger(),
        retry_handlers=_retry_handlers(),
        **kwargs,
    )


def _escape(text: str) -> str:
    """Slack's text escaping: the three characters it reserves for markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _code(text: str) -> str:
    return "```\n" + _escape(text).replace("```", "'''") + "\n```"


def _exception_line(record: logging.LogRecord) -> str | None:
    """The first line of the exception a record carries ('ValueError: bad value')."""
    if record.exc_info and record.exc_info[1] is not None:
        etype, value = record.exc_info[0], record.exc_info[1]
        text = "".join(traceback.format_exception_only(etype, value))
    elif record.exc_text:
        # After the last indented frame line come the exception's own lines.
        lines = record.exc_text.rstrip().splitlines()
        tail = 0
        for i, line in enumerate(lines):
            if line.startswith(" "):
                tail = i + 1
        text = "\n".join(lines[tail:])
    else:
        return None
    first = text.strip().splitlines()
    return first[0] if first else None


def record_line(record: logging.LogRecord) -> str:
    """One log record as a line: ``[experiment] LEVEL message (exception)``."""
    name = getattr(record, "experiment", None) or logs._current
    message = record.getMessage()
    exc = _exception_line(record)
    if exc and exc not in message:
        message += f" ({exc})"
    line = f"[{name}] {record.levelname} {message}" if name else f"{record.levelname} {message}"
    return _clip(line, MAX_RECORD_CHARS)


class _Summary(Protocol):
    group: str
    interrupted: bool

    def counts(self) -> dict[str, int]: ...


def summary_text(summary: _Summary) -> tuple[str, bool]:
    """The summary message (``str(summary)`` as the console shows it) and whether to broadcast."""
    counts = summary.counts()
    failed, interrupted = counts.get("failed", 0), counts.get("interrupted", 0)
    if summary.interrupted:
        head = f":warning: *{summary.group}* stopped by Ctrl-C"
    elif failed:
        head = f":x: *{summary.group}* finished: {failed} failed"
    elif interrupted:
        head = f":warning: *{summary.group}* finished: {interrupted} interrupted"
    else:
        head = f":white_check_mark: *{summary.group}* finished"
    lines = str(summary).splitlines()
    if len(lines) > MAX_LISTED + 1:
        more = len(lines) - 1 - MAX_LISTED
        lines = [*lines[: MAX_LISTED + 1], f"  ... and {more} more"]
    return f"{head}\n{_code(_clip(chr(10).join(lines), MAX_MESSAGE_CHARS))}", failed > 0


def parent_text(
    group: str, *, selected: int, to_run: int, skipped: int, backend: str, jobs: int = 1
) -> str:
    """The message a run's thread hangs from."""
    where = f"{backend}, -j{jobs}" if backend == "local" else backend
    return (
        f":arrow_forward: *{_escape(group)}* started by {_escape(_user())} on "
        f"{_escape(os.uname().nodename)} ({_escape(where)}): {selected} selected, "
        f"{to_run} to run, {skipped} skipped"
    )


def outcome_text(
    name: str,
    status: str,
    folder: str,
    duration: float | None = None,
    error: str | None = None,
) -> str:
    """One experiment's outcome, as a SLURM task posts it into the run's thread."""
    text = f"{_ICONS.get(status, ':warning:')} [{name}] {_WORDS.get(status, status)}"
    text += f" on {os.uname().nodename}"
    if duration is not None:
        text += f" after {duration:.1f}s"
    if error and error.strip() and error != status:
        text += f": {error.strip().splitlines()[0]}"
    return _escape(_clip(f"{text}  ({_show(folder)})", MAX_MESSAGE_CHARS))


def _show(path: str) -> str:
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no login name (containers without a passwd entry)
        return str(os.getuid())


def _describe(exc: BaseException, settings: SlackSettings) -> str:
    """What went wrong, in one line, for the console; never the token."""
    from urllib.error import URLError

    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", None)
        data = getattr(response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        if status == 429:
            what = "rate limited (HTTP 429) beyond its retries"
        elif status is not None and status >= 500:
            what = f"Slack answered HTTP {status} (after retries)"
        elif error in _AUTH_ERRORS:
            what = f"{error}: check the token (slacktoken or {ENV_TOKEN})"
        elif error == "channel_not_found":
            what = (
                f"channel_not_found: check the channel id {settings.channel!r} "
                f"(slackchannel or {ENV_CHANNEL})"
            )
        elif error == "not_in_channel":
            what = f"not_in_channel: invite the app to {settings.channel!r} (/invite @yourapp)"
        elif error == "missing_scope":
            what = "missing_scope: the bot token needs the chat:write scope"
        else:
            what = f"{error or 'error'} (HTTP {status})"
    elif isinstance(exc, TimeoutError) or (
        isinstance(exc, URLError) and isinstance(exc.reason, TimeoutError)
    ):
        what = f"no answer within {CALL_TIMEOUT_S} s"
    elif isinstance(exc, URLError):
        what = f"cannot reach {settings.base_url or 'slack.com'}: {exc.reason}"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return what


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
        self._client = client if client is not None else make_client(settings)
        self._cond = threading.Condition()
        self._channel = settings.channel
        self._ts = thread_ts
        self._parent: str | None = None
        self._outbox: deque[tuple[str, bool]] = deque()  # (text, broadcast)
        self._lines: list[str] = []
        self._dropped = 0
        self._due = 0.0
        self._closing = False
        self._inline = True  # experiments may run in this process (-j1, a SLURM node)
        self._warned = False
        self.failure: str | None = None  # what went wrong; Slack is left alone after
        self._ready = threading.Event()  # set once the thread's ts is known or never will be
        if thread_ts:
            self._ready.set()
        self._handler = _SlackHandler(self)
        self._worker: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"SlackRun(channel={self._channel!r}, thread_ts={self._ts!r})"

    # -- the caller's side ---------------------------------------------------------------
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

    def post(self, text: str, *, broadcast: bool = False) -> None:
        """Queue a reply (already Slack-escaped) after the log records so far."""
        with self._cond:
            if self.failure is not None:
                return
            self._cut_locked()
            self._outbox.append((text, broadcast))
            self._cond.notify_all()

    def finish(self, summary: _Summary) -> None:
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
        with self._cond:
            self._closing = True
            self._cond.notify_all()
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
        with self._cond:
            if self.failure is not None:
                return
            if len(self._lines) >= MAX_PENDING_RECORDS:
                self._dropped += 1
                return
            self._lines.append(line)
            if len(self._lines) == 1:
                self._due = time.monotonic() + BATCH_WINDOW_S
                self._cond.notify_all()

    def _cut_locked(self) -> None:
        """Turn the buffered records into one message (capped) at the end of the outbox."""
        if not self._lines and not self._dropped:
            return
        lines, dropped = self._lines, self._dropped
        self._lines, self._dropped = [], 0
        body: list[str] = []
        used = 0
        for line in lines:
            if body and used + len(line) + 1 > MAX_MESSAGE_CHARS:
                break
            body.append(line)
            used += len(line) + 1
        dropped += len(lines) - len(body)
        text = _code("\n".join(body)) if body else ""
        if dropped:
            text += (
                f"\n_{dropped} more record{'s' if dropped != 1 else ''} not posted; "
                "each experiment's experiment.log has them all_"
            )
        self._outbox.append((text.lstrip("\n"), False))

    def _next(self) -> tuple[str, bool] | None:
        with self._cond:
            while True:
                if self.failure is not None:
                    return None
                if self._outbox:
                    return self._outbox.popleft()
                if (self._lines or self._dropped) and (
                    self._closing or time.monotonic() >= self._due
                ):
                    self._cut_locked()
                    continue
                if self._closing:
                    return None
                wait = max(0.0, self._due - time.monotonic()) if self._lines else None
                self._cond.wait(wait)

    def _loop(self) -> None:
        try:
            if self._parent is not None and self._ts is None:
                ts = self._send(self._parent, thread=False)
                self._ready.set()
                if ts is None:
                    return
            while (item := self._next()) is not None:
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
            self._fail(_describe(exc, self.settings))
            return None
        return str(ts or "")

    def _fail(self, what: str) -> None:
        with self._cond:
            if self.failure is not None:
                return
            self.failure = what.replace(self.settings.token, "***")
            self._outbox.clear()
            self._lines.clear()
            self._dropped = 0
            self._cond.notify_all()
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
        with self._cond:
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
        logger.warning(
            "Slack: slack_sdk is not installed (pip install 'xhelpers[slack]'); nothing posted"
        )
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}".replace(settings.token, "***")
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
