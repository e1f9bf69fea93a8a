"""A real OpenSSH server on 127.0.0.1, for the remote-mode tests and benchmark.

:func:`start_sshd` starts Debian's ``/usr/sbin/sshd`` at a free port with a throwaway
host key and user key; ``SshServer.client_config`` writes an ssh config file for it
(known_hosts holding its key, or another one). Standard library only: the benchmark
runs without pytest (tests/sshd_support.py is the fixture).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"
ALIAS = "xhtest"  # the Host alias the client config defines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _keygen(path: Path) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


@dataclass
class SshServer:
    folder: Path
    port: int
    host_key: str  # "ssh-ed25519 AAAA..."
    user_key: Path
    process: subprocess.Popen[bytes]

    def client_config(self, name: str, *, known_key: str | None = None) -> Path:
        """An ssh config file for ``ALIAS``; ``known_key`` replaces the server's key."""
        known = self.folder / f"known_hosts-{name}"
        key = self.host_key if known_key is None else known_key
        known.write_text(f"[127.0.0.1]:{self.port} {key}\n" if key else "")
        config = self.folder / f"ssh_config-{name}"
        config.write_text(
            f"Host {ALIAS}\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            "  User root\n"
            f"  IdentityFile {self.user_key}\n"
            "  IdentitiesOnly yes\n"
            f"  UserKnownHostsFile {known}\n"
            "  GlobalKnownHostsFile /dev/null\n"
            "  BatchMode yes\n"
        )
        return config

    def session_pids(self) -> list[int]:
        """The server's per-connection processes (killing them drops connections)."""
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid == self.process.pid:
                    pids.append(int(entry))
        return pids

    def stop(self) -> None:
        """The connections first (each ends its client's shared ssh), then the server."""
        for pid in self.session_pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.process.terminate()
        self.process.wait(timeout=10)


def start_sshd(folder: Path) -> SshServer:
    """A server for ``folder`` (keys, config, log go there); RuntimeError if it fails."""
    folder.mkdir(parents=True, exist_ok=True)
    host_key = _keygen(folder / "host_key")
    user_key = folder / "user_key"
    (folder / "authorized_keys").write_text(_keygen(user_key) + "\n")
    port = _free_port()
    config = folder / "sshd_config"
    config.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPidFile {folder / 'sshd.pid'}\n"
        "UsePAM no\nStrictModes no\nPermitRootLogin yes\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nMaxSessions 50\nMaxStartups 50\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation folder
    log = open(folder / "sshd.log", "wb")  # noqa: SIM115 - the server's lifetime
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(config)], stdout=log, stderr=log, stdin=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            raise RuntimeError(
                f"sshd exited {process.returncode}: {(folder / 'sshd.log').read_text()}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("sshd did not accept connections within 20s") from None
            time.sleep(0.02)
    return SshServer(folder, port, host_key, user_key, process)
