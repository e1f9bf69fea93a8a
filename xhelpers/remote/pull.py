"""``--pull NAME``: a group's remote result folders brought into the local result tree.

rsync copies metafiles, logs and results, skipping files that are the same here (size
and time); checkpoints only when asked. The remote is not trusted with the local tree:
rsync writes only below the group's local folder, transfers no symlinks, devices or
special files (nothing can point out of the tree), and the tree is checked afterwards.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xhelpers.config import BaseConfig, RemoteSettings
from xhelpers.core.results import LOCKFILE
from xhelpers.errors import RemoteError
from xhelpers.remote.ssh import Connection, rsync_path

__all__ = ["PullOutcome", "pull"]

logger = logging.getLogger(__name__)

_NEVER = (LOCKFILE, ".metafile.json.tmp", ".slurm/", ".xhelpers-*")
_RSYNC_TIMEOUT_S = 24 * 3600


@dataclass(frozen=True)
class PullOutcome:
    """What a pull did: files copied, and where the group's results now are."""

    copied: int
    folder: Path
    source: str  # host:path

    def __str__(self) -> str:
        files = "file" if self.copied == 1 else "files"
        return f"pulled {self.copied} changed {files} from {self.source} into {self.folder}"


def remote_results(config: BaseConfig, settings: RemoteSettings, name: str) -> str:
    """The remote's result tree, relative to its folder (or absolute)."""
    if settings.output_directory:
        return settings.output_directory
    local = os.fspath(config.output_directory)
    if os.path.isabs(local):
        raise RemoteError(
            f"remote {name!r}: output_directory {local!r} is this machine's absolute path; "
            "set the remote's output_directory (relative to its folder, or absolute)",
            remote=name,
        )
    return local


def pull(
    name: str,
    settings: RemoteSettings,
    config: BaseConfig,
    group: str,
    experiments: Sequence[str] | None = None,
    *,
    checkpoints: bool = False,
) -> PullOutcome:
    """Copy ``group``'s remote results (only ``experiments``' folders if given) home."""
    connection = Connection(name, settings)
    folder = rsync_path(settings.folder)
    tree = remote_results(config, settings, name)
    source = os.path.join(folder, tree, group)  # join: an absolute tree replaces folder
    local = Path(config.output_directory) / group
    local.mkdir(parents=True, exist_ok=True)
    _check_inside(local, Path(config.output_directory))
    excludes = [*_NEVER, *([] if checkpoints else config.checkpoint_files)]
    argv = [
        "rsync",
        "--recursive",
        "--times",
        "--perms",
        "--chmod=u+rwX",  # whatever the remote modes, the files stay ours to replace
        "--no-links",  # a remote symlink could point anywhere here: none is copied
        "--no-devices",
        "--no-specials",
        "--protect-args",
        "--out-format=%i %n",
        *(f"--exclude={pattern}" for pattern in excludes),
        "-e",
        connection.rsync_shell(),
    ]
    listing: bytes | None = None
    if experiments is not None:
        # Each experiment's folder, recursively: --files-from turns -r off unless asked.
        argv.append("--files-from=-")
        argv.append("--from0")
        listing = b"".join(os.fsencode(n) + b"\0" for n in experiments)
    argv += [f"{connection.host}:{source}/", f"{local}/"]
    try:
        done = subprocess.run(argv, input=listing, capture_output=True, timeout=_RSYNC_TIMEOUT_S)
    except FileNotFoundError:
        raise RemoteError("rsync is not installed: --pull copies results with it") from None
    stderr = done.stderr.decode(errors="replace")
    if done.returncode == 255 or "connection unexpectedly closed" in stderr:
        raise connection.failure(stderr, " while pulling")
    missing = "No such file or directory" in stderr
    if done.returncode == 23 and missing and experiments is None:
        raise RemoteError(
            f"remote {name!r} has no results of group {group!r} yet ({source})", remote=name
        )
    if done.returncode not in (0, 23, 24) or (done.returncode == 23 and not missing):
        detail = stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        raise RemoteError(f"remote {name!r}: pull failed: {detail[0]}", remote=name)
    copied = 0
    for line in done.stdout.decode(errors="replace").splitlines():
        change, _, path = line.partition(" ")
        _check_inside(local / path, local)
        copied += change[:2] == ">f"
    return PullOutcome(copied, local, f"{settings.host}:{source}")


def _check_inside(path: Path, tree: Path) -> None:
    """Verify, not trust: what a pull wrote (or writes into) resolves inside ``tree``."""
    real, top = os.path.realpath(path), os.path.realpath(tree)
    if real != top and not real.startswith(top.rstrip(os.sep) + os.sep):
        raise RemoteError(
            f"pull: {path} leads out of the result tree {tree} (to {real}); pull writes "
            "only inside it: remove that symlink and pull again"
        )
