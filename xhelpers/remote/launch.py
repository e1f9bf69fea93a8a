"""``--remote NAME``: the same command line, run in the remote copy of the project.

Sync, then one ssh call runs the remote script (environment check, set-up if needed,
then the command under the launcher); its output is relayed to ours as it comes, and
its exit code is ours. Ctrl-C here is sent to the launcher as a line (ssh has no terminal
to carry it); a second Ctrl-C drops the connection, which the launcher also takes as
Ctrl-C. ssh runs in its own process group so that the terminal's SIGINT does not end
it before the remote run has said how it ended.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO

from xhelpers.config import BaseConfig, RemoteSettings
from xhelpers.errors import RemoteError
from xhelpers.remote.environment import SETUP_FAILED, plan_environment, remote_script
from xhelpers.remote.ssh import Connection
from xhelpers.remote.sync import project_files, project_root, push

__all__ = ["RemoteRun", "follow_hint", "remote_arguments", "run_remote"]

logger = logging.getLogger(__name__)

_INTERRUPT = b"int\n"


@dataclass(frozen=True)
class RemoteRun:
    """What ``--remote`` needs to know about the local call."""

    name: str  # the remote's name in the config
    settings: RemoteSettings
    script: str  # the script as run here (run.py), relative to the current folder
    arguments: tuple[str, ...]  # the command line after the script, --remote removed
    config: BaseConfig  # this machine's: what to leave out of the sync, Slack settings
    config_file: str | None  # this machine's config file, never synced


_DROPPED = ("--remote", "--config")  # options that name this machine's things


def remote_arguments(args: Sequence[str]) -> list[str]:
    """``args`` without ``--remote NAME`` and ``--config FILE`` (local matters)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "--":
            out.extend(args[i:])
            break
        if arg in _DROPPED:
            skip = True
            continue
        if arg.startswith(tuple(f"{option}=" for option in _DROPPED)):
            continue
        out.append(arg)
    return out


def _local_only(root: Path, run: RemoteRun) -> list[str]:
    """Paths of the project that are this machine's: never sent."""
    out: list[str] = []
    candidates: list[str | os.PathLike[str]] = [run.config.output_directory]
    if run.settings.output_directory:
        candidates.append(run.settings.output_directory)
    config_file = (run.config_file or "config.py").partition(":")[0]
    candidates.append(config_file)
    for candidate in candidates:
        path = Path(os.path.realpath(candidate))
        if path.is_relative_to(root):
            out.append(path.relative_to(root).as_posix())
    return out


def _slack_variables(config: BaseConfig, arguments: Sequence[str]) -> dict[str, str]:
    """The Slack settings the remote run gets in its environment, read from its input."""
    if "--no-slack" in arguments:
        return {}
    token = config.slacktoken.get_secret_value() if config.slacktoken else ""
    values = {
        "XHELPERS_SLACK_TOKEN": token or os.environ.get("XHELPERS_SLACK_TOKEN", ""),
        "XHELPERS_SLACK_CHANNEL": config.slackchannel
        or os.environ.get("XHELPERS_SLACK_CHANNEL", ""),
        "XHELPERS_SLACK_BASE_URL": config.slack_base_url
        or os.environ.get("XHELPERS_SLACK_BASE_URL", ""),
    }
    return {k: v for k, v in values.items() if v}


def run_remote(run: RemoteRun, *, cwd: str | None = None) -> int:
    """Sync, ready the environment, run there; the remote command's exit code."""
    here = Path(os.path.realpath(cwd or os.getcwd()))
    root = project_root(here)
    script = Path(os.path.realpath(here / run.script))
    if not script.is_file() or not script.is_relative_to(root):
        raise RemoteError(
            f"--remote runs the same script there: {run.script!r} is not a file of the "
            f"project at {root} (start it as python run.py ...)",
            remote=run.name,
        )
    env = plan_environment(root, run.settings, run.name)
    connection = Connection(run.name, run.settings)
    files = project_files(root, _local_only(root, run))
    try:
        push(connection, root, files, run.settings.folder)
    except KeyboardInterrupt:  # nothing runs there yet; rsync resumes what it sent
        print("xhelpers: sync interrupted; nothing was started there", file=sys.stderr)
        return 130
    command = [script.relative_to(root).as_posix(), *run.arguments]
    text = remote_script(run.name, run.settings, env, here.relative_to(root).as_posix(), command)
    code = _stream(connection, text, _slack_variables(run.config, run.arguments))
    if code == 255:
        raise RemoteError(
            f"remote {run.name!r}: the connection to {run.settings.host} was lost; what "
            "ran there was stopped and recorded as interrupted (SLURM jobs run on): "
            "rerun to resume",
            remote=run.name,
        )
    if code == SETUP_FAILED:
        return 1  # the remote script said which step failed, and where its log is
    return code


def _group_kwargs() -> Mapping[str, Any]:
    if sys.version_info >= (3, 11):
        return {"process_group": 0}
    return {"preexec_fn": os.setpgrp}  # pragma: no cover - Python 3.10


class _CtrlC:
    """SIGINT while ssh runs: the first is sent on as a line, the next disconnects.

    A signal handler, not KeyboardInterrupt: a second Ctrl-C arriving while the first
    is handled must not escape and leave ssh (in its own process group) behind.
    """

    def __init__(self, connection: Connection, process: subprocess.Popen[bytes]) -> None:
        self.connection, self.process, self.count = connection, process, 0

    def __call__(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count > 1:
            self.process.kill()  # the remote side takes the lost connection as Ctrl-C
            return
        print(
            f"xhelpers: Ctrl-C sent to remote {self.connection.name!r} "
            "(press it again to disconnect)",
            file=sys.stderr,
            flush=True,
        )
        _send(self.process, _INTERRUPT)


def _send(process: subprocess.Popen[bytes], data: bytes) -> None:
    assert process.stdin is not None
    try:
        process.stdin.write(data)
        process.stdin.flush()
    except BrokenPipeError:
        pass  # ssh ended already: its exit code says how


def _copy(source: IO[bytes], target: TextIO) -> None:
    """Relay ssh's output as it comes. ssh gets pipes of ours, not our terminal: a
    shared connection's master holds the client's descriptors until the remote command
    ends, and after a disconnect nothing it says may reach the terminal."""
    out = getattr(target, "buffer", None)
    while chunk := os.read(source.fileno(), 65536):
        try:
            if out is not None:
                out.write(chunk)
            else:  # a text-only stream (a test's capture)
                target.write(chunk.decode(errors="replace"))
            target.flush()
        except (OSError, ValueError):
            return


def _stream(connection: Connection, text: str, variables: Mapping[str, str]) -> int:
    process = subprocess.Popen(
        connection.argv(text),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **_group_kwargs(),
    )
    assert process.stdout is not None and process.stderr is not None
    relays = [
        threading.Thread(target=_copy, args=(process.stdout, sys.stdout), daemon=True),
        threading.Thread(target=_copy, args=(process.stderr, sys.stderr), daemon=True),
    ]
    for relay in relays:
        relay.start()
    ctrl_c = _CtrlC(connection, process)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, ctrl_c) if main else None
    try:
        _send(process, json.dumps(dict(variables)).encode() + b"\n")
        code = process.wait()
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)
        if process.poll() is None:  # whatever ended us here must not leave ssh running
            process.kill()
            process.wait()
    if ctrl_c.count > 1:
        return 130  # disconnected: ssh's own exit code means nothing
    for relay in relays:
        relay.join()
    return code


def follow_hint(run: RemoteRun, group: str, patterns: Sequence[str]) -> str:
    """How to follow from here what runs on in the remote (SLURM jobs, --no-wait)."""
    prog = os.path.basename(run.script)
    selection = " ".join(shlex.quote(p) for p in (group, *patterns))
    name = shlex.quote(run.name)
    return (
        f"on remote {run.name!r}:\n"
        f"  follow:  python {prog} {selection} -l --remote {name}\n"
        f"  fetch:   python {prog} {selection} --pull {name}"
    )
