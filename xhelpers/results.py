"""The result tree on disk: experiment folders, their metafiles and their locks.

``<output_directory>/<group>/<name>/`` holds everything of one experiment. Its
metafile is the truth about it and is only ever replaced atomically (write a
temporary file beside it, then rename). A lock file beside it is held while the
experiment runs, so two runners never run it at once; the lock is a plain OS
``flock`` that the kernel releases when its holder dies, which is how a ``running``
metafile left by a dead runner is told apart from a live run.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "DONE",
    "FAILED",
    "INTERRUPTED",
    "LOCKFILE",
    "METAFILE",
    "RUNNING",
    "SUBMITTED",
    "ExperimentLock",
    "empty_folder",
    "encode_metafile",
    "ensure_folder",
    "experiment_folder",
    "group_prefix",
    "is_locked",
    "now",
    "read_heads",
    "read_metafile",
    "read_status",
    "write_metafile",
]

METAFILE = "metafile.json"
LOCKFILE = ".xhelpers.lock"
_TMP_PREFIX = ".metafile.json.tmp."

RUNNING = "running"
DONE = "success"
FAILED = "failed"
INTERRUPTED = "interrupted"
SUBMITTED = "submitted"

# The metafile always starts with its status and the experiment's fingerprint, so "is
# it done, and still current?" reads a few bytes instead of parsing JSON: this keeps
# scanning 100,000 finished experiments cheap.
_HEAD = b'{"status": "'
_HEAD_LEN = len(_HEAD)
_FP = b'", "fingerprint": "'
_FP_LEN = len(_FP)


_second: tuple[int, str] = (-1, "")


def now() -> str:
    """Local time with its UTC offset, ISO 8601, to the millisecond."""
    # Twice per experiment: the formatted second (and offset) is reused within it.
    global _second
    stamp = time.time()
    whole = int(stamp)
    if whole != _second[0]:
        local = time.localtime(whole)
        offset = local.tm_gmtoff // 60
        hours, minutes = divmod(abs(offset), 60)
        sign = "+" if offset >= 0 else "-"
        _second = (
            whole,
            time.strftime("%Y-%m-%dT%H:%M:%S", local) + f"{sign}{hours:02d}:{minutes:02d}",
        )
    text = _second[1]
    return f"{text[:19]}.{int(stamp % 1 * 1000):03d}{text[19:]}"


def group_prefix(output_directory: str | os.PathLike[str], group: str) -> str:
    """``<absolute output_directory>/<group>/``: an experiment's folder is this + its name.

    A string prefix, not os.path.join per name: at 100,000 names the difference shows.
    """
    return os.path.join(os.path.abspath(output_directory), group) + os.sep


def experiment_folder(output_directory: str | os.PathLike[str], group: str, name: str) -> str:
    """The folder of one experiment; names are validated, so this never leaves the tree."""
    return os.path.join(os.fspath(output_directory), group, *name.split("/"))


def ensure_folder(folder: str) -> bool:
    """Create ``folder`` (and parents); return True if it existed already."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        return True
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    return False


def read_status(folder: str) -> str | None:
    """The status in the folder's metafile, or None when there is none (never run)."""
    return read_heads(folder, [""])[0][0]


def read_heads(base: str, names: Sequence[str]) -> list[tuple[str | None, str | None]]:
    """(status, fingerprint) of the metafiles of ``base/name`` for many names at once.

    Both are the metafile's first two members, so a few bytes answer. Opening relative
    to a descriptor of ``base`` spares the kernel walking the same leading path 100,000
    times. (None, None) where there is no metafile.
    """
    heads: list[tuple[str | None, str | None]] = []
    append = heads.append
    nothing = (None, None)
    try:
        base_fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return [nothing] * len(names)
    suffix = "/" + METAFILE
    try:
        for name in names:
            try:
                fd = os.open(name + suffix if name else METAFILE, os.O_RDONLY, dir_fd=base_fd)
            except (FileNotFoundError, NotADirectoryError):
                append(nothing)
                continue
            try:
                head = os.read(fd, 96)
            finally:
                os.close(fd)
            if head.startswith(_HEAD):
                end = head.find(b'"', _HEAD_LEN)
                if end > 0:
                    start = end + _FP_LEN
                    if head[end:start] == _FP and head[start + 16 : start + 17] == b'"':
                        append((head[_HEAD_LEN:end].decode(), head[start : start + 16].decode()))
                        continue
            # an older or hand-edited metafile: parse it properly
            data = read_metafile(os.path.join(base, name)) or {}
            status, fp = data.get("status"), data.get("fingerprint")
            append(
                (status if isinstance(status, str) else None, fp if isinstance(fp, str) else None)
            )
    finally:
        os.close(base_fd)
    return heads


def read_metafile(folder: str) -> dict[str, Any] | None:
    """The parsed metafile, or None when missing or unreadable."""
    try:
        with open(os.path.join(folder, METAFILE), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def encode_metafile(status: str, body: str) -> str:
    """A metafile's text: ``status`` first, then ``body`` (JSON members, no braces)."""
    return '{"status": "' + status + '", ' + body + "}\n"


def write_metafile(folder: str, data: str | Mapping[str, Any]) -> None:
    """Replace the metafile atomically with ``data`` (encode_metafile text, or a dict)."""
    if not isinstance(data, str):
        rest = {k: v for k, v in data.items() if k != "status"}
        data = encode_metafile(str(data["status"]), json.dumps(rest, default=repr)[1:-1])
    tmp = f"{folder}/{_TMP_PREFIX}{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.replace(tmp, f"{folder}/{METAFILE}")


class ExperimentLock:
    """An exclusive, non-blocking lock on one experiment folder.

    ``flock`` (not ``fcntl`` byte-range locks) because it excludes two holders in the
    same process too, which the in-process runner relies on; on NFS Linux emulates it
    with byte-range locks, which still exclude across nodes.
    """

    __slots__ = ("_fd", "created", "path")

    def __init__(self, folder: str) -> None:
        self.path = f"{folder}/{LOCKFILE}"
        self._fd: int | None = None
        # True when this acquire() made the lock file: no runner ever worked in the
        # folder before, so there is no metafile to check again under the lock.
        self.created = False

    def acquire(self) -> bool:
        """Take the lock if free; False if another process holds it."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            self.created = True
        except FileExistsError:
            fd = os.open(self.path, os.O_RDWR, 0o644)
            self.created = False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the only descriptor releases the flock

    @property
    def held(self) -> bool:
        return self._fd is not None


def is_locked(folder: str) -> bool:
    """True while some process holds the folder's lock (a runner is on it)."""
    try:
        fd = os.open(os.path.join(folder, LOCKFILE), os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return True
        raise
    finally:
        os.close(fd)
    return False


def empty_folder(folder: str) -> None:
    """Delete everything in ``folder`` but its lock file (held by the caller).

    Symlinks are removed, never followed, so nothing outside the folder is touched.
    """
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == LOCKFILE:
                continue
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
