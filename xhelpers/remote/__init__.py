"""Remote mode: the project run on another machine through SSH, its results brought home.

``--remote NAME`` syncs the project (:mod:`~xhelpers.remote.sync`), readies the remote
environment (:mod:`~xhelpers.remote.environment`) and runs the same command line there
(:mod:`~xhelpers.remote.launch`); ``--pull NAME`` copies results back
(:mod:`~xhelpers.remote.pull`). Built on OpenSSH's ``ssh`` (one shared connection per
remote, :mod:`~xhelpers.remote.ssh`) and ``rsync``: no protocol of our own.
"""

from __future__ import annotations

from xhelpers.remote.launch import RemoteRun, follow_hint, remote_arguments, run_remote
from xhelpers.remote.pull import PullOutcome, pull

__all__ = ["PullOutcome", "RemoteRun", "follow_hint", "pull", "remote_arguments", "run_remote"]
