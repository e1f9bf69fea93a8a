"""When ``running`` is recorded: a local pool's worker writes it only after a moment.

Until then the experiment's lock is what says it runs: ``-l``, the runner and a second
runner read the lock; a worker that dies before the record is written is recorded by its
runner, with the run's number and where it ran.
"""

from __future__ import annotations

import json
import os
import time
from functools import partial
from pathlib import Path

from conftest import meta, popen_run_py, run_py, wait_until, write_run_py

import xhelpers as xh
from xhelpers.config import BaseConfig
from xhelpers.core import results
from xhelpers.core.execution import RunContext, Task, execute
from xhelpers.core.provenance import GitProbe


def _seen_by_itself(*, wait_s: float = 0.0) -> dict[str, object]:
    """The metafile as the experiment sees it from inside (once it says running, or now)."""
    deadline = time.monotonic() + wait_s
    while True:
        seen = results.read_metafile(".")
        if seen is not None or time.monotonic() >= deadline:
            return {"seen": seen, "runs": xh.current_experiment().runs}  # type: ignore[union-attr]
        time.sleep(0.01)


def _execute_here(tmp_path: Path, fn: object, delay: float) -> dict[str, object]:
    root = results.real_root(tmp_path)
    os.makedirs(f"{root}/g", exist_ok=True)
    ctx = RunContext("g", BaseConfig(output_directory=str(tmp_path)), '"x": 1', root=root)
    ctx.running_record_delay = delay
    task = Task("e", f"{root}/g/e", fn, '"fingerprint": "f", "function": "f"', False)  # type: ignore[arg-type]
    outcome = execute(task, ctx)
    assert outcome.status == "success", outcome
    returned: dict[str, object] = meta(tmp_path / "g/e")["returned"]
    return returned


def test_running_is_written_before_the_call_without_a_delay(tmp_path: Path) -> None:
    seen = _execute_here(tmp_path, _seen_by_itself, 0.0)["seen"]
    assert isinstance(seen, dict) and seen["status"] == "running" and seen["pid"] == os.getpid()


def test_with_a_delay_a_short_run_writes_only_its_end(tmp_path: Path) -> None:
    assert _execute_here(tmp_path, _seen_by_itself, 60.0)["seen"] is None
    assert meta(tmp_path / "g/e")["status"] == "success"


def test_with_a_delay_a_longer_run_is_recorded_running(tmp_path: Path) -> None:
    seen = _execute_here(tmp_path, partial(_seen_by_itself, wait_s=30.0), 0.05)["seen"]
    assert isinstance(seen, dict) and seen["status"] == "running", seen
    assert seen["pid"] == os.getpid() and seen["runs"] == 1
    assert meta(tmp_path / "g/e")["status"] == "success"  # the end replaced it, not after


RUN_GATED = """
g = xh.ParametrizedExperiments("g", {
    "gate": partial(ex.wait_for_file, started="started", release="../../../release"),
    "segv": ex.segfault,
})
"""


def test_a_held_lock_lists_as_running_over_no_metafile_or_a_failure(tmp_path: Path) -> None:
    write_run_py(tmp_path, RUN_GATED)
    folder = tmp_path / "results/g/gate"
    folder.mkdir(parents=True)
    lock = results.ExperimentLock(str(folder))
    assert lock.acquire()
    try:
        listed = run_py(tmp_path, "g", "gate", "-l")
        assert "running" in listed.stdout, listed.stdout
        results.write_metafile(str(folder), {"status": "failed", "runs": 1})
        listed = run_py(tmp_path, "g", "gate", "-l")
        assert "running" in listed.stdout and "failed" not in listed.stdout, listed.stdout
        again = run_py(tmp_path, "g", "gate")  # a second runner leaves it alone
        assert again.returncode == 0 and "running elsewhere" in again.stdout, again.stdout
    finally:
        lock.release()
    listed = run_py(tmp_path, "g", "gate", "-l")
    assert "failed" in listed.stdout and "running" not in listed.stdout, listed.stdout


def test_a_worker_records_running_once_its_experiment_has_run_a_moment(tmp_path: Path) -> None:
    write_run_py(tmp_path, RUN_GATED)
    proc = popen_run_py(tmp_path, "g", "gate", "-j2")
    folder = tmp_path / "results/g/gate"
    try:
        wait_until(lambda: (folder / "started").exists(), 60, "the gate to start")
        assert "running" in run_py(tmp_path, "g", "gate", "-l").stdout
        wait_until(lambda: results.read_status(str(folder)) == "running", 30, "its running record")
        record = meta(folder)
        assert record["pid"] != proc.pid and record["host"] == os.uname().nodename
    finally:
        (tmp_path / "release").write_text("")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert meta(folder)["status"] == "success" and meta(folder)["runs"] == 1


def test_a_worker_dead_before_its_record_is_recorded_by_its_runner(tmp_path: Path) -> None:
    write_run_py(tmp_path, RUN_GATED)
    folder = tmp_path / "results/g/segv"
    for run in (1, 2):
        proc = run_py(tmp_path, "g", "segv", "-j2")
        assert proc.returncode == 1, proc.stderr
        record = meta(folder)
        assert record["status"] == "failed" and "SIGSEGV" in record["error"]["message"]
        assert record["runs"] == run and record["host"] == os.uname().nodename
        assert record["pid"] > 0 and record["group"] == "g" and record["name"] == "segv"


def test_current_experiment_knows_its_run_number(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        """
def count():
    return xh.current_experiment().runs

g = xh.ParametrizedExperiments("g", {"c": count})
""",
    )
    for run in (1, 2, 3):
        args = ("g", "-j2") if run < 3 else ("g", "-j1", "--force")
        proc = run_py(tmp_path, *args, *(["--force"] if run == 2 else []))
        assert proc.returncode == 0, proc.stderr
        assert meta(tmp_path / "results/g/c")["returned"] == run


def test_git_probe_outside_a_repository_is_none(tmp_path: Path) -> None:
    assert GitProbe(str(tmp_path)).result() is None
    probe = GitProbe(str(tmp_path))
    probe.close()  # a run that stops before it needs the answer leaves no process
    assert json.dumps(probe.result()) == "null"
