"""One SSH connection to a remote, through OpenSSH's own client.

Every call goes through one ControlMaster connection (its socket in a private folder),
kept for a few minutes after the last use: the first call of an invocation logs in
(keys, agent, ~/.ssh/config: whatever the user's ssh does), later ones, and rsync, ride
on it, which is what keeps a second ``--remote`` call fast. Host keys are checked
strictly: an unknown or changed key is an error, never accepted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import stat
import subprocess
import tempfile

from xhelpers.config import RemoteSettings
from xhelpers.errors import RemoteError

__all__ = ["Connection", "remote_path", "rsync_path"]

logger = logging.getLogger(__name__)

CONTROL_PERSIST = "300"  # seconds the shared connection outlives its last user


def remote_path(folder: str) -> str:
    """``folder`` as a word of the remote shell: quoted, with ``~/`` (or a relative
    path, which ssh starts in the home of) as ``"$HOME"/...``."""
    if folder == "~":
        return '"$HOME"'
    if folder.startswith("~/"):
        folder = folder[2:]
    elif folder.startswith("/"):
        return shlex.quote(folder)
    return '"$HOME"/' + shlex.quote(folder.rstrip("/") or ".")


def rsync_path(folder: str) -> str:
    """``folder`` as rsync names it on the remote: relative paths start at the home."""
    if folder in ("~", "~/"):
        return "."
    return folder[2:] if folder.startswith("~/") else folder


def _control_folder() -> str:
    """A folder only this user can enter: a ControlPath socket lets whoever reaches it
    use the logged-in connection."""
    folder = os.path.join(tempfile.gettempdir(), f"xhelpers-ssh-{os.getuid()}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(folder)
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IRWXG | stat.S_IRWXO)
    ):
        raise RemoteError(
            f"{folder} (for SSH connection sockets) must be a folder of yours that nobody "
            "else can enter (chmod 700); remove it and xhelpers makes it anew"
        )
    return folder


class Connection:
    """ssh command lines for one remote, sharing one logged-in connection."""

    def __init__(self, name: str, settings: RemoteSettings) -> None:
        self.name = name
        self.settings = settings
        self.host = settings.host
        config = settings.ssh_config
        self._config = os.path.abspath(os.path.expanduser(config)) if config else None
        if self._config is not None and not os.path.isfile(self._config):
            raise RemoteError(f"remote {name!r}: ssh_config {config!r} is not a file", remote=name)
        # One socket per way of connecting (host, config file, options), not ssh's %C
        # alone: that ignores the config file, so a connection made with one
        # known_hosts would serve a call that names another.
        ident = "\0".join([self.host, self._config or "", *settings.ssh_options])
        digest = hashlib.sha256(ident.encode()).hexdigest()[:24]
        self._control = os.path.join(_control_folder(), digest)

    def ssh_argv(self) -> list[str]:
        """``ssh`` and its options, without the host. Ours come first: for ``-o`` ssh
        keeps the first value it reads, so no option or config file turns off the host
        key check."""
        argv = ["ssh"]
        if self._config:
            argv += ["-F", self._config]
        argv += [
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPath={self._control}",
            "-o",
            f"ControlPersist={CONTROL_PERSIST}",
        ]
        for option in self.settings.ssh_options:
            argv += ["-o", option]
        return argv

    def argv(self, command: str) -> list[str]:
        """The ssh call that runs ``command`` (a remote shell line, already quoted)."""
        return [*self.ssh_argv(), "-T", "--", self.host, command]

    def rsync_shell(self) -> str:
        """The ``rsync -e`` value: rsync splits it on spaces and honours quotes."""
        return shlex.join(self.ssh_argv())

    def failure(self, stderr: str, during: str = "") -> RemoteError:
        """ssh's own failure (exit 255) as one line that says what to do."""
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and "@@@" not in ln]
        text = " ".join(lines)
        host, name = self.host, self.name
        if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
            message = (
                f"the host key of {host} has CHANGED since your known_hosts recorded it "
                "(the server was reinstalled, or someone is in between): ask its admins, "
                "then correct known_hosts; xhelpers never accepts a host key"
            )
        elif "Host key verification failed" in text or "host key is known" in text:
            message = (
                f"the host key of {host} is unknown: log in once with `ssh {host}` and "
                "check the fingerprint it shows (or add the key to known_hosts); xhelpers "
                "never accepts an unknown host key"
            )
        elif "Permission denied" in text:
            message = (
                f"{host} refused the login ({lines[-1]}): xhelpers logs in with your "
                "SSH keys, agent and ~/.ssh/config, as `ssh` does"
            )
        else:
            detail = lines[-1] if lines else "ssh exited with 255 and said nothing"
            message = f"ssh to {host} failed{during}: {detail}"
        return RemoteError(f"remote {name!r}: {message}", remote=name)

    def close(self) -> None:
        """End the shared connection now instead of after its idle time (tests)."""
        subprocess.run(
            [*self.ssh_argv(), "-O", "exit", self.host],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
        )
