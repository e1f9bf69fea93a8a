"""Processes of this host: references that outlive pids (host, pid, start time),
process groups, and the children an experiment left behind."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

__all__ = [
    "DETACHED_SUFFIX",
    "boot_clock",
    "killpg",
    "live_pid",
    "proc_stat",
    "process_ref",
    "stop_children_since",
]

DETACHED_SUFFIX = ":detached"  # ends the ref of a detached run: its tasks wait in it


def boot_clock() -> float:
    try:
        return time.clock_gettime(time.CLOCK_BOOTTIME)  # same clock as /proc/<pid>/stat
    except (AttributeError, OSError):
        return time.monotonic()


def stop_children_since(since: float) -> None:
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
            fields = proc_stat(entry)
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


def killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


# -- references: a process by host, pid and start time (pids are reused) -------------------
def proc_stat(pid: int | str) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first); None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_ticks(pid: int) -> int | None:
    """The process' start time in clock ticks since boot (/proc/<pid>/stat field 22)."""
    fields = proc_stat(pid)
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


def live_pid(ref: object) -> int | None:
    """The pid of the process ``ref`` names if it still runs on this host, else None."""
    if not isinstance(ref, str):
        return None
    head, _, start = ref.removesuffix(DETACHED_SUFFIX).rpartition(":")
    host, _, pid_text = head.rpartition(":")
    if host != os.uname().nodename or not (pid_text.isdigit() and start.isdigit()):
        return None
    pid = int(pid_text)
    return pid if pid > 0 and _start_ticks(pid) == int(start) else None
