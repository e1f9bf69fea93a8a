"""Faults stay contained: each kind of death costs only its own experiment."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest
from conftest import meta, pid_alive, run_py, wait_until, write_run_py
from experiments import exits, hard_exit, no_config, raises, segfault, sigkill

import xhelpers as xh
from xhelpers.core import results

FAULTS = {
    "raises": (raises, "ValueError: bad value"),
    "exits": (exits, "SystemExit: sys.exit(3)"),
    "hard_exit": (hard_exit, "worker process exited with code 7"),
    "segfault": (segfault, "worker process killed by SIGSEGV (11)"),
    "sigkill": (sigkill, "worker process killed by SIGKILL (9)"),
}


def test_every_fault_is_recorded_and_the_pool_recovers(tmp_path: Path, start_method: str) -> None:
    experiments = {name: fn for name, (fn, _) in FAULTS.items()}
    # good ones after each fault: the pool must replace dead workers and go on
    experiments.update({f"ok_{i}": partial(no_config, value=i) for i in range(6)})
    group = xh.ParametrizedExperiments("g", experiments)
    summary = group(jobs=2, quiet=True, config={"start_method": start_method})
    assert summary.exit_code == 1
    for name, (_, message) in FAULTS.items():
        outcome = summary[name]
        assert outcome.status == "failed", name
        assert outcome.error is not None and message in outcome.error, (name, outcome.error)
        data = meta(tmp_path / "results/g" / name)
        assert data["status"] == "failed" and message.split(": ")[-1] in str(data["error"])
    for i in range(6):
        assert summary[f"ok_{i}"].status == "success"
        assert meta(tmp_path / f"results/g/ok_{i}")["returned"] == i
    assert meta(tmp_path / "results/g/segfault")["error"]["signal"] == 11
    assert meta(tmp_path / "results/g/hard_exit")["error"]["exit_code"] == 7
    assert meta(tmp_path / "results/g/exits")["error"]["exit_code"] == 3


def test_in_process_sys_exit_does_not_end_the_run(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"exits": exits, "after": no_config})
    summary = group(quiet=True)
    assert summary["exits"].status == "failed" and summary["after"].status == "success"


def ctrl_c_run(
    tmp_path: Path,
    body: str,
    jobs: str,
    prefix: str,
    running: int,
    before: Callable[[list[Path]], None] | None = None,
) -> str:
    """Run group g of ``body``, Ctrl-C it once ``running`` experiments announced
    themselves, and return its stdout; it must exit 130."""
    write_run_py(tmp_path, body)
    proc = subprocess.Popen(
        [sys.executable, "run.py", "g", f"-j{jobs}"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = [tmp_path / f"results/g/{prefix}{i}/{i}.started" for i in range(running)]
    wait_until(lambda: all(p.exists() and p.read_text() for p in started), what="experiments")
    if before is not None:
        before(started)
    proc.send_signal(signal.SIGINT)  # what the terminal sends on Ctrl-C
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    return out


RUN_BLOCKING = """
class Cfg(xh.BaseConfig):
    pass
names = {f"block_{i}": partial(ex.block_with_child, started=f"{i}.started") for i in range(2)}
names.update({f"later_{i}": partial(ex.no_config, value=i) for i in range(3)})
g = xh.ParametrizedExperiments("g", names, configcls=Cfg)
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_records_interrupted_and_leaves_no_process(tmp_path: Path, jobs: str) -> None:
    running = 2 if jobs == "2" else 1
    pids: list[int] = []

    def check_alive(started: list[Path]) -> None:
        pids.extend(int(x) for p in started for x in p.read_text().split())
        assert all(pid_alive(pid) for pid in pids)

    out = ctrl_c_run(tmp_path, RUN_BLOCKING, jobs, "block_", running, check_alive)
    for i in range(running):
        data = meta(tmp_path / f"results/g/block_{i}")
        assert data["status"] == "interrupted"
        assert (tmp_path / f"results/g/block_{i}/checkpoint.pt").exists()
    for i in range(3):  # not started after Ctrl-C
        assert not (tmp_path / f"results/g/later_{i}/metafile.json").exists()
    assert "interrupted" in out and "stopped by Ctrl-C" in out
    assert f"{running} interrupted" in out
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=10, what="no orphans")
    # the interrupted ones run again next time, in their folder
    rerun = run_py(tmp_path, "g", "later_*")
    assert rerun.returncode == 0


def test_killed_runner_leaves_running_then_reruns(tmp_path: Path) -> None:
    """SIGKILL of the whole runner: the metafile says running, the lock is free."""
    write_run_py(tmp_path, RUN_BLOCKING)
    proc = subprocess.Popen(
        [sys.executable, "run.py", "g", "block_0"], cwd=tmp_path, start_new_session=True
    )
    started = tmp_path / "results/g/block_0/0.started"
    wait_until(lambda: started.exists() and bool(started.read_text()), what="experiment")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    wait_until(
        lambda: not xh.results.is_locked(str(tmp_path / "results/g/block_0")), what="lock released"
    )
    assert meta(tmp_path / "results/g/block_0")["status"] == "running"
    listed = run_py(tmp_path, "g", "-l")
    assert "interrupted" in listed.stdout.splitlines()[2]


RUN_SWALLOW = """
names = {f"s{i}": partial(ex.swallows_ctrl_c, started=f"{i}.started") for i in range(2)}
names.update({f"later_{i}": partial(ex.no_config, value=i) for i in range(3)})
g = xh.ParametrizedExperiments("g", names)
"""


@pytest.mark.parametrize("sent", [True, False], ids=["just-after", "just-before"])
def test_ctrl_c_as_a_task_goes_to_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sent: bool
) -> None:
    # At -jN Ctrl-C raises KeyboardInterrupt anywhere in the runner: here just after
    # (or just before) the first task is sent to its worker. The pool knows what it
    # sent: its outcome is recorded, nothing else starts, and the run ends interrupted
    # (it crashed on the worker's report of a task it had no record of).
    parent = os.getpid()
    struck: list[bytes] = []
    real = Connection.send_bytes

    def send_then_ctrl_c(self: Connection, buf: Any, *args: Any, **kwargs: Any) -> None:
        if os.getpid() != parent or struck or pickle.loads(buf) is None:
            return real(self, buf, *args, **kwargs)
        struck.append(bytes(buf))
        if sent:
            real(self, buf, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(Connection, "send_bytes", send_then_ctrl_c)
    names = {f"e{i}": partial(no_config, value=i) for i in range(4)}
    group = xh.ParametrizedExperiments("g", names)
    out = tmp_path / "results"
    summary = group(jobs=2, quiet=True, config_file=False, config={"output_directory": str(out)})
    assert struck, "the run sent no task"
    assert summary.exit_code == 130
    first = pickle.loads(struck[0]).name
    status = results.read_status(str(out / "g" / first))
    # Not sent: in flight all the same (a send cut short may have reached it), so
    # recorded interrupted, to run next time; never success.
    assert status in ((results.DONE, results.INTERRUPTED) if sent else (results.INTERRUPTED,))
    others = [n for n in names if n != first]
    assert not any((out / "g" / n / "metafile.json").exists() for n in others)


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_caught_ctrl_c_is_still_interrupted_never_success(tmp_path: Path, jobs: str) -> None:
    running = 2 if jobs == "2" else 1
    out = ctrl_c_run(tmp_path, RUN_SWALLOW, jobs, "s", running)
    for i in range(running):
        folder = tmp_path / f"results/g/s{i}"
        data = meta(folder)
        assert data["status"] == "interrupted", data
        assert data["returned"] == "swallowed"  # what it returned is kept, not trusted
        assert (folder / "partial_result.txt").exists()
    for i in range(3):
        assert not (tmp_path / f"results/g/later_{i}/metafile.json").exists()
    assert f"{running} interrupted" in out
