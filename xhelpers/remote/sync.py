"""The project's files to the remote folder, with rsync: only what changed is sent.

What goes is what git would commit: tracked files and untracked ones it does not
ignore (``git ls-files -co --exclude-standard``), minus what belongs to this machine or
the remote's own: the result trees, virtual environments, xhelpers' remote state
(``.xhelpers/``) and this machine's config file (it may hold a token, and the remote's
settings are its own). Nothing there is deleted: files removed here stay there.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterable, Sequence
from pathlib import Path

from xhelpers.errors import RemoteError
from xhelpers.remote.ssh import Connection, remote_path, rsync_path

__all__ = ["STATE_FOLDER", "project_files", "project_root", "push"]

logger = logging.getLogger(__name__)

STATE_FOLDER = ".xhelpers"  # on the remote: environments, their log and lock
_ALWAYS_LEFT = (STATE_FOLDER, ".git", ".venv")
_RSYNC_TIMEOUT_S = 3600


def project_root(cwd: str | os.PathLike[str]) -> Path:
    """The git work tree ``cwd`` is in: the project that is synced."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise RemoteError("--remote syncs the files git lists: git is not installed") from None
    if done.returncode != 0:
        raise RemoteError(
            f"--remote syncs the project's git-tracked and untracked non-ignored files: "
            f"{os.fspath(cwd)!r} is in no git repository (git init there)"
        )
    return Path(done.stdout.strip())


def _inside(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f + "/") for f in folders)


def project_files(root: Path, leave_out: Sequence[str] = ()) -> list[str]:
    """Paths (relative to ``root``) to sync; ``leave_out``: folders or files, relative."""
    done = subprocess.run(
        ["git", "ls-files", "-z", "-c", "-o", "--exclude-standard"],
        cwd=root,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )
    if done.returncode != 0:
        raise RemoteError(f"git ls-files failed in {root}: {done.stderr.decode().strip()}")
    skipped = {p.strip("/") for p in (*_ALWAYS_LEFT, *leave_out) if p.strip("/")}
    venvs: dict[str, bool] = {}
    files: list[str] = []
    for raw in dict.fromkeys(done.stdout.split(b"\0")):  # -c and -o may both list a path
        path = os.fsdecode(raw)
        if not path or path.endswith("/") or _inside(path, skipped):
            continue  # an untracked nested repository is listed as "dir/"
        if _in_venv(root, path, venvs) or not os.path.lexists(root / path):
            continue  # tracked but deleted here: nothing to send
        files.append(path)
    return files


def _in_venv(root: Path, path: str, seen: dict[str, bool]) -> bool:
    """Whether a folder above ``path`` is a virtual environment (holds pyvenv.cfg)."""
    parts = path.split("/")[:-1]
    for depth in range(1, len(parts) + 1):
        folder = "/".join(parts[:depth])
        if folder not in seen:
            seen[folder] = (root / folder / "pyvenv.cfg").is_file()
        if seen[folder]:
            return True
    return False


def push(connection: Connection, root: Path, files: Sequence[str], folder: str) -> int:
    """Send ``files`` to the remote ``folder`` (made if missing); the number sent.

    This is the invocation's first ssh call: it opens the shared connection, so an
    unknown host key or a refused login is reported from here.
    """
    argv = [
        "rsync",
        "--links",
        "--perms",
        "--times",
        "--protect-args",  # the remote path goes as data, never through its shell
        "--files-from=-",
        "--from0",
        "--out-format=%n",
        # The folder is made in the same call: no round trip of its own.
        f"--rsync-path=mkdir -p -- {remote_path(folder)} && rsync",
        "-e",
        connection.rsync_shell(),
        "./",
        f"{connection.host}:{rsync_path(folder)}/",
    ]
    listing = b"".join(os.fsencode(f) + b"\0" for f in files)
    try:
        done = subprocess.run(
            argv, cwd=root, input=listing, capture_output=True, timeout=_RSYNC_TIMEOUT_S
        )
    except FileNotFoundError:
        raise RemoteError("rsync is not installed: --remote syncs the project with it") from None
    stderr = done.stderr.decode(errors="replace")
    if done.returncode == 255 or "connection unexpectedly closed" in stderr:
        raise connection.failure(stderr, " while syncing the project")
    if done.returncode != 0:
        detail = stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RemoteError(
            f"remote {connection.name!r}: syncing the project failed: {detail[0]}",
            remote=connection.name,
        )
    sent = [ln for ln in done.stdout.decode(errors="replace").splitlines() if ln[-1:] != "/"]
    logger.info(
        "synced %d changed file(s) of %d to %s:%s", len(sent), len(files), connection.host, folder
    )
    return len(sent)
