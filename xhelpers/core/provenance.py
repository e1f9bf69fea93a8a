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

__all__ = ["git_state", "run_members"]


def git_state(cwd: str) -> dict[str, Any] | None:
    """Commit and dirty flag of the git repository at ``cwd``; None outside one."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def run_members(config: BaseConfig, backend: str, jobs: int) -> str:
    """JSON members every metafile of a run holds: versions, command line, git, config."""
    cwd = os.getcwd()
    info = {
        "xhelpers": __version__,
        "python": sys.version.split()[0],
        "argv": sys.argv,
        "cwd": cwd,
        "git": git_state(cwd),
        "backend": backend,
        "jobs": jobs,
        "config": config.redacted(),
    }
    return json.dumps(info, default=str)[1:-1]
