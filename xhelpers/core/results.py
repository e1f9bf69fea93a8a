"""The result tree on disk: experiment folders, their metafiles and their locks.

``<output_directory>/<group>/<name>/`` holds everything of one experiment. Its
metafile is the truth about it and is only ever replaced atomically (write a
temporary file beside it, then rename). A lock file beside it is held while the
experiment runs, so two runners never run it at once; the lock is a plain OS
``flock`` that the kernel releases when its holder dies, which is how a ``running``
metafile left by a dead runner is told apart from a live run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import stat
import time
from collections.abc import Mapping, Sequence
from typing import Any

from xhelpers.errors import ResultTreeError

__all__ = [
    "BLOCKED",
    "DONE",
    "FAILED",
    "INTERRUPTED",
    "LOCKFILE",
    "LONGEST_ENTRY",
    "METAFILE",
    "PATH_MAX",
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
    "prepare_folder",
    "read_heads",
    "read_member",
    "read_metafile",
    "read_own_metafile",
    "read_status",
    "real_root",
    "runs_so_far",
    "standing",
    "write_metafile",
]

METAFILE = "metafile.json"
LOCKFILE = ".xhelpers.lock"
_TMP = ".metafile.json.tmp"
LONGEST_ENTRY = _TMP  # the longest name xhelpers puts in an experiment folder
PATH_MAX = 4096  # the longest path Linux takes (ENAMETOOLONG past it)

RUNNING = "running"
DONE = "success"
FAILED = "failed"
INTERRUPTED = "interrupted"
SUBMITTED = "submitted"
BLOCKED = "blocked"  # not run: an upstream it needs failed or was interrupted

# The metafile always starts with its status and the experiment's fingerprint, so "is
# it done, and still current?" reads a few bytes instead of parsing JSON: this keeps
# scanning 100,000 finished experiments cheap.
_HEAD = b'{"status": "'
_HEAD_LEN = len(_HEAD)
_FP = b'", "fingerprint": "'
_FP_LEN = len(_FP)
_HEAD_READ = 96  # status and fingerprint fit


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
    """Create ``folder`` (and parents); return True if it existed already.

    For folders the caller knows to be safe; experiment folders go through
    :func:`prepare_folder`.
    """
    try:
        os.mkdir(folder)
    except FileExistsError:
        return True
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    return False


def real_root(output_directory: str | os.PathLike[str]) -> str:
    """The output directory with every symlink resolved (the runner asks once per run).

    The output directory itself may be a link (results kept on a scratch filesystem):
    it is followed. Below it, nothing is (see :func:`prepare_folder`).
    """
    return os.path.realpath(output_directory)


def prepare_folder(folder: str, root: str) -> bool:
    """Make sure the experiment folder ``folder`` exists inside ``root``; True if it existed.

    ``root`` is :func:`real_root` of the output directory. Raises ResultTreeError naming
    the entry when the folder or a parent is a file, or a symlink on the way leads out
    of ``root``: nothing is then created, written or locked there. The deepest existing
    folder on the way is opened and checked (one readlink of its descriptor), and what
    is missing below it is created relative to that descriptor, so nothing made here
    can itself be a link. A new experiment's folder costs an open, a readlink and a
    mkdir; an existing one an open more.
    """
    cut = folder.rfind(os.sep)
    parent, leaf = folder[:cut], folder[cut + 1 :]
    try:  # the common cases: the parent exists and is inside, the folder is new or a folder
        fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        pass
    else:
        try:
            real = _real_path(fd, parent)
            if real == root or real.startswith(root + os.sep):
                try:
                    os.mkdir(leaf, dir_fd=fd)
                    return False
                except FileExistsError:
                    pass
                try:  # a folder, not a link, in a checked parent: inside
                    os.close(os.open(leaf, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd))
                    return True
                except OSError:
                    pass  # a link or a file: the walk below says which, and checks it
        finally:
            os.close(fd)
    missing = [leaf]
    while True:
        try:
            fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
            break
        except FileNotFoundError:
            if parent == os.path.dirname(parent):  # (nothing of the path exists)
                raise
            missing.append(os.path.basename(parent))
            parent = os.path.dirname(parent)
        except NotADirectoryError:
            raise _not_a_folder(parent) from None
    try:
        real = _real_path(fd, parent)
        if root.startswith(real.rstrip(os.sep) + os.sep) and not os.path.isdir(root):
            # The output directory itself is missing (a backend called directly; a run
            # makes it first): make it, then the folder below it as usual.
            os.makedirs(root, exist_ok=True)
            return prepare_folder(folder, root)
        _check_inside(real, parent, root)
        last = len(missing) - 1
        for i, name in enumerate(reversed(missing)):
            try:
                os.mkdir(name, dir_fd=fd)
            except FileExistsError:
                pass  # there already (or another runner made it meanwhile): open it below
            else:
                if i == last:
                    return False  # made here, so a folder (not a link)
            try:
                child = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            except OSError:
                path = os.path.join(parent, name)
                if not os.path.islink(path):  # a file where a folder belongs
                    raise _not_a_folder(path) from None
                child = os.open(path, os.O_RDONLY | os.O_DIRECTORY)  # where the link leads
                try:
                    _check_inside(_real_path(child, path), path, root)
                except BaseException:
                    os.close(child)
                    raise
            os.close(fd)
            fd, parent = child, os.path.join(parent, name)
    finally:
        os.close(fd)
    return True


def _real_path(fd: int, path: str) -> str:
    """Where the open folder ``fd`` (opened as ``path``) really is."""
    try:  # Linux: the kernel's own answer, one system call
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(path)


def _check_inside(real: str, path: str, root: str) -> None:
    if real == root or real.startswith(root + os.sep):
        return
    link = _last_link(path)
    if link is None:  # (the output directory was removed under the run)
        raise ResultTreeError(f"{path} is not inside the output directory {root}", path=path)
    raise ResultTreeError(
        f"{link} is a symlink to {os.path.realpath(link)}, outside the output directory "
        f"{root}: xhelpers does not follow it (link the whole output_directory instead)",
        path=link,
    )


def _last_link(path: str) -> str | None:
    """The innermost symlink on ``path``: the one below the (followed) output directory."""
    while path and path != os.path.dirname(path):
        if os.path.islink(path):
            return path
        path = os.path.dirname(path)
    return None


def _not_a_folder(path: str) -> ResultTreeError:
    """The error for a path that should be a folder on the way to an experiment's."""
    current = path
    while current and current != os.path.dirname(current):  # name the entry that is a file
        if os.path.lexists(current) and not os.path.isdir(current):
            break
        current = os.path.dirname(current)
    else:
        current = path
    return ResultTreeError(
        f"{current} is a file, where an experiment folder (or a folder above one) belongs; "
        "move it away to run the experiment",
        path=current,
    )


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
    except OSError:
        return [nothing] * len(names)
    suffix = "/" + METAFILE
    try:
        for name in names:
            try:
                fd = os.open(name + suffix if name else METAFILE, os.O_RDONLY, dir_fd=base_fd)
            except OSError:  # none, a folder that is a file, no permission: not done
                append(nothing)
                continue
            try:
                head = os.read(fd, _HEAD_READ)
                # Complete only if it ends as encode_metafile ends it: a metafile cut
                # short (a full disk, an editor) must never read as done.
                tail = (
                    os.pread(fd, 2, os.fstat(fd).st_size - 2)
                    if len(head) == _HEAD_READ
                    else head[-2:]
                )
            except OSError:  # "metafile.json" is a directory, or unreadable
                append(nothing)
                continue
            finally:
                os.close(fd)
            if tail == b"}\n" and head.startswith(_HEAD):
                end = head.find(b'"', _HEAD_LEN)
                if end > 0:
                    start = end + _FP_LEN
                    if head[end:start] == _FP and head[start + 16 : start + 17] == b'"':
                        append((head[_HEAD_LEN:end].decode(), head[start : start + 16].decode()))
                        continue
            # an older, hand-edited or incomplete metafile: parse it properly
            data = read_metafile(os.path.join(base, name)) or {}
            status, fp = data.get("status"), data.get("fingerprint")
            append(
                (status if isinstance(status, str) else None, fp if isinstance(fp, str) else None)
            )
    finally:
        os.close(base_fd)
    return heads


def read_own_metafile(folder: str) -> dict[str, Any] | None:
    """The metafile for the run that holds the lock: None when missing or not JSON.

    Raises ResultTreeError when ``metafile.json`` is there but not a file (a folder,
    a device): the run could never record itself, so it must not start.
    """
    path = f"{folder}/{METAFILE}"
    if not os.access(path, os.F_OK):  # a new experiment: no exception raised to say so
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ResultTreeError(
                f"{path} is not a file (a folder?): move it away to run the experiment",
                path=path,
            )
        with open(fd, "rb", closefd=False) as f:
            text = f.read()
    finally:
        os.close(fd)
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def read_metafile(folder: str) -> dict[str, Any] | None:
    """The parsed metafile, or None when missing or unreadable."""
    try:
        with open(os.path.join(folder, METAFILE), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


_DECODER = json.JSONDecoder()


def read_member(folder: str, marker: str) -> tuple[bool, Any]:
    """The JSON value that follows the first ``marker`` in the metafile (``marker`` ends
    with the key's ``": "``, and may also hold the start of the value itself), without
    parsing the rest: (found, value). For checks over thousands of metafiles, which are
    mostly the run's config. (False, None) when missing, unreadable, or not found: the
    caller then parses the metafile whole, if it needs certainty.
    """
    try:
        with open(os.path.join(folder, METAFILE), "rb") as f:
            text = f.read().decode()
    except (OSError, ValueError):
        return False, None
    at = text.find(marker)
    if at < 0 or not text.endswith("}\n"):
        return False, None
    start = text.index(": ", at) + 2
    try:
        return True, _DECODER.raw_decode(text, start)[0]
    except ValueError:
        return False, None


def runs_so_far(meta: Mapping[str, Any] | None) -> int:
    """How many runs a metafile counts: a marker (``submitted``, ``blocked``) holds the
    runs before it; a run's own record counts itself (at least 1)."""
    if meta is None:
        return 0
    if meta.get("status") in (SUBMITTED, BLOCKED):
        return int(meta.get("runs") or 0)
    return int(meta.get("runs") or 1)


def standing(meta: Mapping[str, Any] | None, folder: str) -> str | None:
    """Where an experiment stands, by its metafile ``meta`` (None: it has none).

    The metafile's status, except that ``running`` with a free lock is ``interrupted``
    (its runner died), and a held lock over no metafile, or over a run that failed or
    was interrupted, is ``running``: a worker records ``running`` only once its
    experiment has run for a moment (see ``RunContext.running_record_delay``). The one
    reading of a metafile that every view and the runner share; each then words it its
    own way (``done``/``stale``, ``success``, ...).
    """
    if meta is None:
        return RUNNING if is_locked(folder) else None
    status = str(meta.get("status"))
    if status == RUNNING:
        return RUNNING if is_locked(folder) else INTERRUPTED
    if status in _RERUN and is_locked(folder):
        return RUNNING
    return status


_RERUN = (FAILED, INTERRUPTED, BLOCKED)  # what a runner may be running again right now


def encode_metafile(status: str, body: str) -> str:
    """A metafile's text: ``status`` first, then ``body`` (JSON members, no braces)."""
    return '{"status": "' + status + '", ' + body + "}\n"


def write_metafile(folder: str, data: str | Mapping[str, Any], *, durable: bool = False) -> None:
    """Replace the metafile atomically with ``data`` (encode_metafile text, or a dict).

    The new text goes to a temporary file that is renamed over the metafile only once
    every byte is written: a full disk raises OSError and leaves the old metafile (and
    no temporary file) behind. ``durable`` also flushes the text to the disk before the
    rename, so that after a power cut the metafile is the old one or the new one, never
    an empty file: the core asks it for the final record of a run (an ``fsync``, ~0.2 ms
    on an SSD), not for the ``running`` and ``submitted`` markers, whose loss only
    means a rerun. Every writer holds the experiment's lock, so one temporary name does.
    """
    if not isinstance(data, str):
        rest = {k: v for k, v in data.items() if k != "status"}
        data = encode_metafile(str(data["status"]), json.dumps(rest, default=repr)[1:-1])
    tmp = f"{folder}/{_TMP}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, data.encode())
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, f"{folder}/{METAFILE}")
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_all(fd: int, payload: bytes) -> None:
    """``os.write`` until all of ``payload`` is written; a write that stalls is ENOSPC."""
    written = os.write(fd, payload)  # (all of it, nearly always)
    view = memoryview(payload)[written:]
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


class ExperimentLock:
    """An exclusive, non-blocking lock on one experiment folder.

    ``flock`` (not ``fcntl`` byte-range locks) because it excludes two holders in the
    same process too, which the in-process runner relies on; on NFS Linux emulates it
    with byte-range locks, which still exclude across nodes.
    """

    __slots__ = ("_fd", "path")

    def __init__(self, folder: str) -> None:
        self.path = f"{folder}/{LOCKFILE}"
        self._fd: int | None = None

    def acquire(self) -> bool:
        """Take the lock if free; False if another process holds it.

        Who created the lock file says nothing about who ran the experiment: decide
        from the metafile read after this returns True.
        """
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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
    except (FileNotFoundError, NotADirectoryError):
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
