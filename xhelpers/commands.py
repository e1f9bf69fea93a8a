"""Command experiments: run an existing script, unchanged, as an experiment.

``xh.command("python {here}/train.py --lr {lr} --out {cwd}", lr=0.1)`` is an
experiment that runs that shell command in the experiment's folder. Placeholders are
``str.format`` fields: ``{cwd}`` (the experiment's folder), ``{name}``, ``{group}``,
``{time}`` (when the command starts, ``2026-01-31T14-05-09``), ``{here}`` (the working
directory when the command was defined; for a TOML file, the file's folder) and the
given parameters. Every value is formatted as by ``str.format`` (a format spec such as
``{lr:.0e}`` works) and then shell-quoted, so spaces, quotes and ``$`` reach the
program intact; ``{{`` and ``}}`` are literal braces.

Output: stdout and stderr are read line by line as they come (``\\r`` ends a line too,
for progress bars) and logged at INFO to ``xhelpers.command.stdout`` and
``xhelpers.command.stderr`` (under ``<config.logger>.command`` when ``config.logger``
names another logger), so they land in ``experiment.log`` and on the console at ``-v``.
``PYTHONUNBUFFERED=1`` is set unless the environment sets it, so Python scripts stream.

Ends: exit code 0 is success; anything else raises :class:`~xhelpers.errors.CommandError`
with the exit code and the last lines of output. The command runs in a process group
of its own, and every way it can be stopped ends that whole group, so nothing it
started outlives it: ``timeout`` (SIGTERM, then SIGKILL after ``STOP_GRACE_S``), Ctrl-C
(``KeyboardInterrupt`` in the experiment: SIGINT, then SIGKILL), and any other exception
in the experiment while it waits (SIGTERM, then SIGKILL), such as the ``SystemExit`` of
a SLURM requeue. Processes it leaves running in the background when it exits are ended
the same way. If the process running the experiment is killed outright, the command's
first process gets SIGKILL (Linux), and the others get SIGPIPE when they next write.

Signals: while a command runs in the main thread, SIGTERM and SIGUSR2 sent to the
experiment's process are forwarded to the command's group, then handled as before
(submitit's requeue handler on SLURM; with the default action, the command group is
stopped first, then the process ends by that signal). The command starts with SIGUSR2
ignored unless it installs a handler of its own, so SLURM's early-warning signal does
not kill a program that knows nothing of it: xhelpers stops it when the job requeues.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shlex
import signal
import string
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .errors import CommandError, ExperimentDefinitionError
from .execution import current_experiment
from .grids import template_fields

if TYPE_CHECKING:
    import selectors
    import subprocess

__all__ = ["PLACEHOLDERS", "STOP_GRACE_S", "Command", "command"]

logger = logging.getLogger(__name__)

PLACEHOLDERS = ("cwd", "name", "group", "time", "here")
STOP_GRACE_S = 5.0  # between the polite signal and SIGKILL when a command is stopped
LAST_LINES = 20  # lines of output kept for the error message
_READ_SIZE = 65536
_MAX_LINE = 65536  # bytes; a longer line without a newline is logged in pieces
_POLL_S = 0.25
_LINE_END = re.compile(rb"\r\n|\r|\n")
_SHOWN_COMMAND = 300  # characters of the command line in an error's first line


class _Quoting(string.Formatter):
    def __init__(self, quote: bool) -> None:
        super().__init__()
        self.quote = quote

    def format_field(self, value: Any, format_spec: str) -> str:
        text = format(value, format_spec)
        return shlex.quote(text) if self.quote else text


_SHELL = _Quoting(True)
_PLAIN = _Quoting(False)


class Command(functools.partial):  # type: ignore[type-arg]
    """A shell command as an experiment; create it with :func:`command`.

    It is a ``functools.partial`` of :func:`command` with the template and parameters,
    so the metafile's ``function``/``arguments`` and the fingerprint describe it like
    any experiment (the fingerprint depends on the template and the parameters, not on
    ``env``, ``timeout`` or ``shell``); calling it runs the command. It pickles (for
    ``-jN`` under any start method and for SLURM).
    """

    template: str
    env: dict[str, str]
    timeout: float | None
    shell: bool
    here: str

    def __new__(
        cls,
        template: str,
        /,
        *,
        env: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        shell: bool = True,
        here: str | None = None,
        **params: Any,
    ) -> Command:
        fields = template_fields(template, "command template")
        reserved = [p for p in params if p in PLACEHOLDERS]
        if reserved:
            raise ExperimentDefinitionError(
                f"command {template!r}: {', '.join(repr(p) for p in reserved)} "
                f"{'is a placeholder' if len(reserved) == 1 else 'are placeholders'} "
                f"xhelpers fills ({', '.join(PLACEHOLDERS)}); name the parameter otherwise",
                offending=reserved,
            )
        unused = [p for p in params if p not in fields]
        if unused:
            raise ExperimentDefinitionError(
                f"command {template!r} does not use "
                + ", ".join(f"{{{p}}}" for p in unused)
                + "; every parameter must appear in the command template",
                offending=unused,
            )
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise ExperimentDefinitionError(
                f"command {template!r}: timeout must be a positive number of seconds or "
                f"None, not {timeout!r}"
            )
        if not isinstance(shell, bool):
            raise ExperimentDefinitionError(f"command {template!r}: shell must be True or False")
        if not shell:
            try:
                shlex.split(template)
            except ValueError as exc:
                raise ExperimentDefinitionError(f"command {template!r}: {exc}") from None
        self = super().__new__(cls, command, template, **params)
        self.template = template
        self.env = _env(template, env)
        self.timeout = None if timeout is None else float(timeout)
        self.shell = shell
        self.here = os.path.abspath(here if here is not None else os.getcwd())
        return self

    @property
    def params(self) -> dict[str, Any]:
        """The parameters filled into the template (not the placeholders)."""
        return dict(self.keywords)

    def _options(self) -> dict[str, Any]:
        return {"env": self.env, "timeout": self.timeout, "shell": self.shell, "here": self.here}

    def with_params(self, **params: Any) -> Command:
        """The same command with more (or other) parameter values."""
        return Command(self.template, **self._options(), **{**self.keywords, **params})

    def unbound(self) -> list[str]:
        """Fields of the template that neither a parameter nor a placeholder fills."""
        fields = template_fields(self.template, "command template")
        return [f for f in fields if f not in self.keywords and f not in PLACEHOLDERS]

    def checked(self) -> Command:
        """Itself, once every field of the template has a value (else an error)."""
        missing = self.unbound()
        if missing:
            raise ExperimentDefinitionError(
                f"command {self.template!r} uses "
                + ", ".join(f"{{{m}}}" for m in missing)
                + ", which no parameter sets",
                offending=missing,
            )
        return self

    def render(self, **placeholders: Any) -> str | list[str]:
        """The command line (``shell=True``) or argv (``shell=False``) to run."""
        self.checked()
        values = {**placeholders, **self.keywords}
        try:
            if self.shell:
                return _SHELL.vformat(self.template, (), values)
            return [_PLAIN.vformat(arg, (), values) for arg in shlex.split(self.template)]
        except (KeyError, AttributeError, IndexError, TypeError, ValueError) as exc:
            raise ExperimentDefinitionError(
                f"command {self.template!r}: cannot fill it: {type(exc).__name__}: {exc}"
            ) from None

    def __repr__(self) -> str:
        parts = [repr(self.template)] + [f"{k}={v!r}" for k, v in self.keywords.items()]
        if self.env:
            parts.append(f"env={self.env!r}")
        if self.timeout is not None:
            parts.append(f"timeout={self.timeout!r}")
        if not self.shell:
            parts.append("shell=False")
        return f"command({', '.join(parts)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore, (self.template, dict(self.keywords), self._options()))

    def __call__(self) -> None:  # type: ignore[override]
        """Run the command in the current directory (the experiment's folder)."""
        info = current_experiment()
        cwd = os.getcwd()
        line = self.render(
            cwd=cwd,
            name=info.name if info else "",
            group=info.group if info else "",
            time=datetime.now().strftime("%Y-%m-%dT%H-%M-%S"),
            here=self.here,
        )
        shown = line if isinstance(line, str) else shlex.join(line)
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        env.update(self.env)
        base = _logger_base(info.config.logger if info else "")
        log = logging.getLogger(base)
        log.info("$ %s", shown)
        start = time.monotonic()
        code, timed_out, last = _run(
            line,
            self.shell,
            cwd,
            env,
            self.timeout,
            logging.getLogger(base + ".stdout"),
            logging.getLogger(base + ".stderr"),
        )
        duration = time.monotonic() - start
        if code == 0 and not timed_out:
            log.info("exited with code 0 (%.1fs)", duration)
            return
        brief = shown.replace("\n", "\\n")
        if len(brief) > _SHOWN_COMMAND:
            brief = brief[: _SHOWN_COMMAND - 3] + "..."
        if timed_out:
            head = f"command timed out after {self.timeout:g}s and was killed: {brief}"
        elif code < 0:
            head = f"command killed by {_signal_name(-code)} (exit code {code}): {brief}"
        else:
            head = f"command exited with code {code}: {brief}"
        tail = (
            f"\nlast {len(last)} line{'s' if len(last) != 1 else ''} of output:\n"
            + "\n".join("  " + x for x in last)
            if last
            else "\n(no output)"
        )
        raise CommandError(
            head + tail,
            exit_code=None if timed_out else code,
            last_lines=last,
            command=shown,
            timed_out=timed_out,
        )


def command(
    template: str,
    /,
    *,
    env: Mapping[str, Any] | None = None,
    timeout: float | None = None,
    shell: bool = True,
    **params: Any,
) -> Command:
    """An experiment that runs a shell command in the experiment's folder.

    ``template`` is filled with the placeholders ``{cwd}``, ``{name}``, ``{group}``,
    ``{time}``, ``{here}`` and ``params``, each value shell-quoted. ``env`` adds to
    (or overrides) the environment; ``timeout`` (seconds) kills the command and fails
    the experiment; ``shell=False`` splits the template into arguments with
    ``shlex.split`` and runs it without a shell (values are then not quoted: each fills
    its argument). Parameters may be left for :func:`xhelpers.grid` to fill:
    ``xh.grid(xh.command("python t.py --lr {lr}", env=...), "lr={lr}", lr=[0.1, 0.2])``.
    """
    return Command(template, env=env, timeout=timeout, shell=shell, **params)


def _restore(template: str, params: dict[str, Any], options: dict[str, Any]) -> Command:
    return Command(template, **options, **params)


def _env(template: str, env: Mapping[str, Any] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise ExperimentDefinitionError(f"command {template!r}: env must be a mapping")
    out: dict[str, str] = {}
    for key, value in env.items():
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ExperimentDefinitionError(
                f"command {template!r}: invalid environment variable name {key!r}"
            )
        if not isinstance(value, (str, int, float, bool)):
            raise ExperimentDefinitionError(
                f"command {template!r}: env[{key!r}] must be a string or number, not {value!r}"
            )
        out[key] = str(value)
    return out


def _logger_base(capture: str) -> str:
    base = "xhelpers.command"
    if capture and base != capture and not base.startswith(capture + "."):
        return capture + ".command"
    return base


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


# -- running it ------------------------------------------------------------------------


class _Output:
    """The command's stdout and stderr, split into lines as they arrive and logged."""

    def __init__(
        self, proc: subprocess.Popen[bytes], out: logging.Logger, err: logging.Logger
    ) -> None:
        import selectors

        self.selector: selectors.BaseSelector = selectors.DefaultSelector()
        self.pending: dict[int, bytes] = {}
        self.after_cr: dict[int, bool] = {}
        self.last: deque[str] = deque(maxlen=LAST_LINES)
        for stream, log in ((proc.stdout, out), (proc.stderr, err)):
            assert stream is not None
            fd = stream.fileno()
            self.selector.register(fd, selectors.EVENT_READ, log)
            self.pending[fd] = b""
            self.after_cr[fd] = False
        self.open = 2
        self.pidfd: int | None = None
        try:  # wakes select() when the leader exits (Linux 5.3+), even if pipes stay open
            self.pidfd = os.pidfd_open(proc.pid)
            self.selector.register(self.pidfd, selectors.EVENT_READ, None)
        except (AttributeError, OSError):
            pass

    def pump(self, timeout: float) -> None:
        """Read what is there (waiting up to ``timeout`` for something) and log its lines."""
        for key, _ in self.selector.select(timeout):
            fd, log = key.fd, key.data
            if log is None:  # the leader's pidfd: it has exited
                self.selector.unregister(fd)
                os.close(fd)
                continue
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if data:
                self._feed(fd, data, log)
            else:
                rest = self.pending[fd]
                if rest:
                    self._emit(rest, log)
                self.pending[fd] = b""
                self.selector.unregister(fd)
                self.open -= 1

    def _feed(self, fd: int, data: bytes, log: logging.Logger) -> None:
        if self.after_cr[fd] and data.startswith(b"\n"):  # the \n of a \r\n cut in two
            data = data[1:]
        self.after_cr[fd] = data.endswith(b"\r")
        buffer = self.pending[fd] + data
        *lines, rest = _LINE_END.split(buffer)
        for line in lines:
            self._emit(line, log)
        while len(rest) > _MAX_LINE:
            self._emit(rest[:_MAX_LINE], log)
            rest = rest[_MAX_LINE:]
        self.pending[fd] = rest

    def _emit(self, raw: bytes, log: logging.Logger) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if text:
            self.last.append(text)
            log.info("%s", text)

    def close(self) -> None:
        if self.pidfd is not None and self.pidfd in self.selector.get_map():
            os.close(self.pidfd)
        self.selector.close()


class _Group:
    """The command's process group: its leader (the shell) and all it started."""

    def __init__(self, proc: subprocess.Popen[bytes], output: _Output) -> None:
        self.proc = proc
        self.output = output
        self.pgid = proc.pid
        self.kill_at: float | None = None  # SIGKILL then, unless the group is gone
        self.killed_at: float | None = None

    def alive(self) -> bool:
        """Whether any process of the group still runs (zombies do not count)."""
        try:
            os.killpg(self.pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return _live_member(self.pgid)

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def stop(self, sig: int) -> None:
        """Send ``sig`` now and SIGKILL after the grace period (once)."""
        if self.kill_at is None and self.killed_at is None:
            self.signal(sig)
            self.kill_at = time.monotonic() + STOP_GRACE_S

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.kill_at = None
        if self.killed_at is None:
            self.killed_at = time.monotonic()

    def given_up(self) -> bool:
        # After SIGKILL only zombies nobody reaps, or a process stuck in the kernel, remain.
        return self.killed_at is not None and time.monotonic() > self.killed_at + 2.0

    def step(self, until: float | None = None) -> None:
        """Wait a little (for output, the leader's exit, a deadline) and handle what came."""
        import subprocess

        now = time.monotonic()
        if self.kill_at is not None and now >= self.kill_at:
            self.kill()
        limits = [_POLL_S] + [t - now for t in (until, self.kill_at) if t is not None]
        wait = max(0.0, min(limits))
        if self.proc.poll() is None:
            if self.output.open:
                self.output.pump(wait)  # returns on output, EOF, or the leader's exit
            else:
                try:
                    self.proc.wait(wait)
                except subprocess.TimeoutExpired:
                    pass
        elif self.output.open:  # the leader is gone: read on while leftovers are ended
            self.output.pump(min(wait, 0.05))
        else:
            time.sleep(min(wait, 0.02))

    def run(self, timeout: float | None) -> bool:
        """Until the leader exits; True if it was stopped for ``timeout``."""
        deadline = None if timeout is None else time.monotonic() + timeout
        timed_out = False
        while self.proc.poll() is None:
            if deadline is not None and not timed_out and time.monotonic() >= deadline:
                timed_out = True
                logger.debug("command timed out: stopping its process group")
                self.stop(signal.SIGTERM)
            if self.given_up():
                break
            self.step(None if timed_out else deadline)
        self.settle()
        return timed_out

    def settle(self) -> None:
        """After the leader's exit: end what it left running, read the rest of the output."""
        started = time.monotonic()
        while not self.given_up():
            if self.alive():
                self.stop(signal.SIGTERM)
            elif not self.output.open or time.monotonic() - started > 1.0:
                break  # (an escaped process may hold the pipes: not ours to wait for)
            self.step()

    def abort(self, sig: int) -> None:
        """Stop everything now: ``sig``, then SIGKILL after the grace period.

        Once the leader has exited, what is left of the group gets SIGTERM at once
        (a shell's background jobs ignore SIGINT).
        """
        try:
            self.stop(sig)
            leftovers_told = sig == signal.SIGTERM
            while not self.given_up():
                if self.proc.poll() is None:
                    self.step()
                    continue
                if not self.alive():
                    break
                if not leftovers_told:
                    self.signal(signal.SIGTERM)
                    leftovers_told = True
                self.step()
        except BaseException:
            self.kill()
            raise
        finally:
            if self.proc.poll() is None:
                self.kill()
                self.proc.wait()


def _live_member(pgid: int) -> bool:
    """Whether process group ``pgid`` has a member that is not a zombie (Linux: /proc).

    A killed process stays a zombie until its parent reaps it; orphans are reaped by
    init, which some container inits do late. Elsewhere every member counts as live.
    """
    try:
        entries = os.scandir("/proc")
    except OSError:
        return True
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    fields = f.read().rsplit(b")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
                return True
    return False


class _Terminated(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def _forwarding(group: _Group) -> Iterator[None]:
    """SIGTERM and SIGUSR2 for this process reach the command's group too (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def forward(signum: int, frame: Any) -> None:
        group.signal(signum)
        before = previous.get(signum)
        if callable(before):
            before(signum, frame)
        elif before in (signal.SIG_DFL, None):
            raise _Terminated(signum)

    sigs = [signal.SIGTERM] + ([signal.SIGUSR2] if hasattr(signal, "SIGUSR2") else [])
    for sig in sigs:
        previous[int(sig)] = signal.signal(sig, forward)
    try:
        yield
    finally:
        for number, before in previous.items():
            signal.signal(number, before if before is not None else signal.SIG_DFL)


def _child_setup(prctl: Callable[..., int] | None, parent: int) -> None:
    """In the command's first process, before exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "SIGUSR2"):
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the thread that started us
        if os.getppid() != parent:  # it died before that took effect
            os._exit(137)


@functools.cache
def _prctl() -> Callable[..., int] | None:
    try:
        import ctypes

        fn: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    return fn


def _run(
    line: str | list[str],
    shell: bool,
    cwd: str,
    env: dict[str, str],
    timeout: float | None,
    out: logging.Logger,
    err: logging.Logger,
) -> tuple[int, bool, list[str]]:
    """Run it, stream its output; (exit code, timed out, last lines)."""
    import subprocess

    prctl = _prctl() if os.uname().sysname == "Linux" else None
    proc = subprocess.Popen(
        line,
        shell=shell,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        preexec_fn=functools.partial(_child_setup, prctl, os.getpid()),
    )
    try:
        output = _Output(proc, out, err)
    except BaseException:  # (Ctrl-C right after the start) no process of it may outlive us
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    group = _Group(proc, output)
    try:
        try:
            with _forwarding(group):
                timed_out = group.run(timeout)
        except _Terminated as exc:  # SIGTERM/SIGUSR2 with the default action: die by it
            group.abort(exc.signum)
            signal.signal(exc.signum, signal.SIG_DFL)
            os.kill(os.getpid(), exc.signum)
            raise SystemExit(128 + exc.signum) from None
        except KeyboardInterrupt:
            group.abort(signal.SIGINT)
            raise
        except BaseException:
            group.abort(signal.SIGTERM)
            raise
    finally:
        output.close()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    code = proc.returncode
    return (code if code is not None else -signal.SIGKILL), timed_out, list(output.last)
