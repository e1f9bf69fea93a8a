"""Running a command in a process group of its own, and ending all of it however it stops.

:func:`run_command` starts the command, streams its output (:mod:`xhelpers.command_output`)
and waits; a timeout, Ctrl-C, another exception, or SIGTERM/SIGUSR2 for this process
(forwarded to the group while it runs in the main thread) stops the whole group: the
polite signal, then SIGKILL after a grace period. What the command leaves running in
the background when it exits is ended the same way. Its first process dies with the
thread that started it (Linux ``PR_SET_PDEATHSIG``) and starts with SIGUSR2 ignored.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from xhelpers.define.commands.output import CommandOutput

__all__ = ["ProcessGroup", "run_command"]

# The name these records have always had in experiment.log.
logger = logging.getLogger("xhelpers.commands")

_POLL_S = 0.25


class ProcessGroup:
    """The command's process group: its leader (the shell) and all it started."""

    def __init__(self, proc: subprocess.Popen[bytes], output: CommandOutput, grace: float) -> None:
        """``grace``: seconds between the polite signal and SIGKILL when stopped."""
        self.proc = proc
        self.output = output
        self.grace = grace
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
            self.kill_at = time.monotonic() + self.grace

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
def _forwarding(group: ProcessGroup) -> Iterator[None]:
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


def run_command(
    line: str | list[str],
    *,
    shell: bool,
    cwd: str,
    env: dict[str, str],
    timeout: float | None,
    grace: float,
    out: logging.Logger,
    err: logging.Logger,
    keep: int,
) -> tuple[int, bool, list[str]]:
    """Run it, stream its output; (exit code, timed out, last ``keep`` lines).

    ``grace``: seconds between the polite signal and SIGKILL when the group is stopped.
    """
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
        output = CommandOutput(proc, out, err, keep)
    except BaseException:  # (Ctrl-C right after the start) no process of it may outlive us
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    group = ProcessGroup(proc, output, grace)
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
