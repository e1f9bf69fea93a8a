"""Where a run came from: what every metafile of a run records about its origin.

Computed once per run in the main process and spliced into each metafile as JSON,
so the per-experiment cost is nil. ``git status`` ignores untracked files: a result
tree inside the repository must not make every run look dirty, nor slow it down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

from xhelpers._version import __version__
from xhelpers.config import BaseConfig

__all__ = ["GitProbe", "git_state", "run_members"]


class GitProbe:
    """The git state of ``cwd``, asked at once and read later.

    Both questions run as subprocesses side by side while the runner describes its
    experiments (~10 ms otherwise spent waiting at the start of every run).
    """

    def __init__(self, cwd: str) -> None:
        self._procs: list[subprocess.Popen[str]] = []
        try:
            for command in _GIT_QUESTIONS:
                self._procs.append(
                    subprocess.Popen(
                        command,
                        cwd=cwd,
                        stdin=subprocess.DEVNULL,
                        stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL,
                        text=True,
                    )
                )
        except OSError:  # no git: no state
            self.close()

    def result(self) -> dict[str, Any] | None:
        """Commit and dirty flag; None outside a repository (or without git)."""
        if not self._procs:
            return None
        try:
            (commit, _), (dirty, _) = (p.communicate(timeout=30) for p in self._procs)
            inside = self._procs[0].returncode == 0
        except subprocess.TimeoutExpired:
            return None
        finally:
            self.close()
        return {"commit": commit.strip(), "dirty": bool(dirty.strip())} if inside else None

    def close(self) -> None:
        """End the questions not answered yet (the run stops before it needs them)."""
        procs, self._procs = self._procs, []
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


# ``git status`` ignores untracked files (see the module's docstring).
_GIT_QUESTIONS = (
    ["git", "rev-parse", "HEAD"],
    ["git", "status", "--porcelain", "--untracked-files=no"],
)


def git_state(cwd: str) -> dict[str, Any] | None:
    """Commit and dirty flag of the git repository at ``cwd``; None outside one."""
    return GitProbe(cwd).result()


def run_members(config: BaseConfig, backend: str, jobs: int, git: GitProbe | None = None) -> str:
    """JSON members every metafile of a run holds: versions, command line, git, config.

    ``git``: a probe started earlier in this directory (else it is asked now).
    """
    cwd = os.getcwd()
    info = {
        "xhelpers": __version__,
        "python": sys.version.split()[0],
        "argv": sys.argv,
        "cwd": cwd,
        "git": (git or GitProbe(cwd)).result(),
        "backend": backend,
        "jobs": jobs,
        "config": config.redacted(),
    }
    return json.dumps(info, default=str)[1:-1]
