from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from slurm_support import slurm_cluster  # noqa: F401 - the fixture, for every test
from sshd_support import sshd  # noqa: F401 - the fixture of the remote-mode tests

from xhelpers import framework
from xhelpers.cli import build_cli

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test works in its own folder and leaves the group registry as it found it.

    Its runs see no GPU, as on a machine without (CUDA_VISIBLE_DEVICES="" is what a
    local run reads first): on one with GPUs their output would otherwise differ.
    """
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    before = set(framework.groups())
    yield
    for name in set(framework.groups()) - before:
        framework.unregister(name)


@pytest.fixture(params=["fork", "spawn"])
def start_method(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def invoke(*args: str) -> tuple[int, str, str]:
    """The CLI of the registered groups, in this process: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(build_cli(), list(args), prog_name="run.py")
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def meta(folder: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((folder / "metafile.json").read_text())
    return data


RUN_PY_HEADER = """\
import sys
sys.path.insert(0, {tests!r})
from functools import partial
import xhelpers as xh
import experiments as ex
"""


def write_run_py(folder: Path, body: str) -> Path:
    path = folder / "run.py"
    path.write_text(
        RUN_PY_HEADER.format(tests=str(TESTS))
        + textwrap.dedent(body)
        + "\nif __name__ == '__main__':\n    xh.experiment_cli()\n"
    )
    return path


def run_py(
    folder: Path, *args: str, timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def popen_run_py(folder: Path, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
    """``python run.py ARGS`` started in ``folder``, its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def wait_until(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` (bounded, never a fixed sleep)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False
