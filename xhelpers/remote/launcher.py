"""The remote end of a ``--remote`` run: runs the command and acts on what the laptop says.

Its source is sent as ``python -c`` and run by the remote environment's Python, so it
imports nothing but the standard library (the remote's xhelpers may be another version).

SSH without a terminal forwards no signal, so this side listens on its standard input
instead: its first line holds the variables the run gets (the Slack token travels
there, never on a command line); then each ``int`` line is a Ctrl-C, delivered as
SIGINT to the run's whole process group, as a terminal would. End of input means the
connection is gone: that is a Ctrl-C too, so the run stops and records it, and a rerun
resumes. The run's output is relayed, not inherited, so that a dropped connection
cannot fail its writes while it records how it ended.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
from typing import IO

__all__ = ["main"]


def _relay(source: IO[bytes], target: IO[bytes]) -> None:
    connected = True
    while True:
        chunk = os.read(source.fileno(), 65536)
        if not chunk:
            return
        if connected:
            try:
                target.write(chunk)
                target.flush()
            except OSError:  # the connection is gone: keep draining, so the run goes on
                connected = False


def _interrupt(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)
    except ProcessLookupError:
        pass


def _line(fd: int) -> bytes | None:
    """One line of input, None at its end. Read unbuffered: what follows stays in the
    pipe, where ``select`` sees it."""
    data = bytearray()
    while True:
        byte = os.read(fd, 1)
        if not byte:
            return None
        if byte == b"\n":
            return bytes(data)
        data += byte


def _listen(process: subprocess.Popen[bytes], fd: int) -> None:
    while (line := _line(fd)) is not None:
        if line.strip() == b"int":
            _interrupt(process)
    _interrupt(process)  # end of input: the laptop or the connection is gone


def main() -> None:
    """Run ``sys.argv[1:]`` (script and arguments) with this interpreter."""
    fd = sys.stdin.fileno()
    first = _line(fd)
    if first is None:
        os._exit(1)  # the connection went while the environment was set up: run nothing
    if select.select([fd], [], [], 0)[0]:
        os._exit(130)  # Ctrl-C (or the end) came during the set-up: do not start now
    env = dict(os.environ)
    env.update({str(k): str(v) for k, v in json.loads(first or b"{}").items()})
    env.setdefault("PYTHONUNBUFFERED", "1")  # its output is a pipe: stream it live
    process = subprocess.Popen(
        [sys.executable, *sys.argv[1:]],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,  # its own process group, for the SIGINT of a Ctrl-C
    )
    assert process.stdout is not None and process.stderr is not None
    relays = [
        threading.Thread(target=_relay, args=(process.stdout, sys.stdout.buffer)),
        threading.Thread(target=_relay, args=(process.stderr, sys.stderr.buffer)),
    ]
    for relay in relays:
        relay.start()
    threading.Thread(target=_listen, args=(process, fd), daemon=True).start()
    for received in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
        signal.signal(received, lambda *_: _interrupt(process))
    code = process.wait()
    for relay in relays:
        relay.join(timeout=5)  # a detached child may hold the pipes: do not wait for it
    os._exit(code if code >= 0 else 128 - code)
