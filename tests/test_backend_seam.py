"""The backend seam (xhelpers/backends/base.py): its types, the registry, and the
questions any later process asks a backend about refs (states, cancel), answered by
real processes and the real cluster. Only sacct/squeue output is faked, in unit tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, meta, run_py, wait_until, write_run_py
from slurm_support import SlurmCluster

import xhelpers as xh
from xhelpers.backends import (
    UNKNOWN_STATUS,
    Backend,
    JobState,
    JobStatus,
    Submitted,
    backend_names,
    find_backend,
    get_backend,
)
from xhelpers.backends.local import LocalBackend, process_ref
from xhelpers.backends.slurm import queue as slurm_queue
from xhelpers.core import jobs
from xhelpers.errors import BackendError

GARBAGE = ["", "abc", "12_", "_3", "1;rm -rf /", "99999999999", "host:1:2", "12 13"]


def fresh(code: str, *args: str, timeout: float = 60) -> Any:
    """Run ``code`` in a new interpreter (no state shared with this one); its JSON print."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(os.environ, PYTHONPATH=str(TESTS)),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


ASK = """
import json, sys
from xhelpers.backends import get_backend
cls = get_backend(sys.argv[1])
refs = json.loads(sys.argv[3])
if sys.argv[2] == "states":
    print(json.dumps({r: [s.state.value, s.raw] for r, s in cls.states(refs).items()}))
else:
    print(json.dumps(cls.cancel(refs)))
"""


def ask(backend: str, verb: str, refs: list[str]) -> dict[str, Any]:
    answer: dict[str, Any] = fresh(ASK, backend, verb, json.dumps(refs))
    return answer


# -- the types and the registry ----------------------------------------------------------------
def test_one_state_vocabulary() -> None:
    assert [s.value for s in JobState] == [
        "pending",
        "running",
        "completed",
        "failed",
        "cancelled",
        "timeout",
        "unknown",
    ]
    assert {s for s in JobState if s.final} == {
        JobState.COMPLETED,
        JobState.FAILED,
        JobState.CANCELLED,
        JobState.TIMEOUT,
    }
    assert {s for s in JobState if s.active} == {JobState.PENDING, JobState.RUNNING}
    assert not JobState.UNKNOWN.final and not JobState.UNKNOWN.active
    assert JobStatus(JobState.FAILED, "NODE_FAIL").word == "NODE_FAIL"
    assert UNKNOWN_STATUS.word == "UNKNOWN" and not UNKNOWN_STATUS.final
    assert Submitted("12_3").members == {}


def test_slurm_states_map_in_one_place() -> None:
    expected = {
        "PENDING": JobState.PENDING,
        "REQUEUED": JobState.PENDING,
        "SUSPENDED": JobState.PENDING,
        "REQUEUE_HOLD": JobState.PENDING,
        "RUNNING": JobState.RUNNING,
        "COMPLETING": JobState.RUNNING,
        "COMPLETED": JobState.COMPLETED,
        "CANCELLED": JobState.CANCELLED,
        "TIMEOUT": JobState.TIMEOUT,
        "NODE_FAIL": JobState.FAILED,
        "OUT_OF_MEMORY": JobState.FAILED,
        "PREEMPTED": JobState.FAILED,
    }
    for raw, state in expected.items():
        assert slurm_queue.normalize(raw) == JobStatus(state, raw)
    # every state after which SLURM runs a job no more is final; nothing else is
    for raw in slurm_queue.TERMINAL_STATES:
        assert slurm_queue.normalize(raw).final, raw
    for raw in slurm_queue.ACTIVE_STATES:
        assert slurm_queue.normalize(raw).state.active, raw


def test_capabilities_are_declared() -> None:
    assert {"local", "slurm"} <= set(backend_names())
    local, slurm = get_backend("local"), get_backend("slurm")
    assert issubclass(local, Backend) and issubclass(slurm, Backend)
    assert (local.can_detach, local.marks_submitted, local.can_requeue) == (True, False, False)
    assert (slurm.can_detach, slurm.marks_submitted, slurm.can_requeue) == (True, True, True)
    assert (local.label, slurm.label) == ("local", "SLURM")
    assert find_backend("nosuch") is None and find_backend(None) is None
    with pytest.raises(BackendError, match="unknown backend 'nosuch'") as info:
        get_backend("nosuch")
    assert info.value.usage


def test_third_party_backend_by_entry_point(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dist = tmp_path / "xh_fake-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: xh-fake\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[xhelpers.backends]\nfake = xh_fake_backend:FakeBackend\nlocal = xh_fake_backend:X\n"
    )
    (tmp_path / "xh_fake_backend.py").write_text(
        textwrap.dedent(
            """
            from xhelpers.backends import UNKNOWN_STATUS, Backend

            class FakeBackend(Backend):
                name = label = "fake"
                def submit(self, tasks): return {}
                def reports(self): return iter(())
                @classmethod
                def states(cls, refs): return dict.fromkeys(refs, UNKNOWN_STATUS)
                @classmethod
                def cancel(cls, refs): return dict.fromkeys(refs, False)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "fake" in backend_names()
    fake = get_backend("fake")
    assert fake.name == "fake" and fake.states(["x"]) == {"x": UNKNOWN_STATUS}
    assert get_backend("local") is LocalBackend  # a package cannot take over a built-in name


# -- states() for refs nobody knows: unknown, never an error ----------------------------------
def test_local_states_of_garbage_are_unknown() -> None:
    refs = [*GARBAGE, f"{os.uname().nodename}:999999999:1", f"elsewhere:{os.getpid()}:1"]
    assert LocalBackend.states(refs) == dict.fromkeys(refs, UNKNOWN_STATUS)
    assert LocalBackend.cancel(refs) == dict.fromkeys(refs, False)
    me = process_ref(os.getpid())
    assert me is not None
    assert LocalBackend.states([me]) == {me: JobStatus(JobState.RUNNING)}
    stale = me.rsplit(":", 1)[0] + ":1"  # this pid, another start time: a reused pid
    assert LocalBackend.states([stale]) == {stale: UNKNOWN_STATUS}


def test_slurm_states_of_garbage_are_unknown(slurm_cluster: SlurmCluster) -> None:
    assert ask("slurm", "states", GARBAGE) == {ref: ["unknown", ""] for ref in GARBAGE}
    assert ask("slurm", "cancel", GARBAGE) == dict.fromkeys(GARBAGE, False)


class FakeSlurm:
    def __init__(self, answers: dict[str, tuple[int, str, str]]) -> None:
        self.answers = answers
        self.calls: list[str] = []

    def __call__(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd[0])
        rc, out, err = self.answers[cmd[0]]
        return subprocess.CompletedProcess(cmd, rc, out, err)


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeSlurm]:
    def install(**answers: tuple[int, str, str]) -> FakeSlurm:
        slurm = FakeSlurm(answers)
        monkeypatch.setattr(slurm_queue, "_run", slurm)
        return slurm

    return install


def test_squeue_answers_when_accounting_is_down(fake: Callable[..., FakeSlurm]) -> None:
    down = (1, "", "sacct: error: Problem talking to the database: Connection refused\n")
    slurm = fake(sacct=down, squeue=(0, "5_0|RUNNING\n5_[1-2]|PENDING\n", ""))
    states = get_backend("slurm").states(["5_0", "5_2", "6", "junk"])
    assert states == {
        "5_0": JobStatus(JobState.RUNNING, "RUNNING"),
        "5_2": JobStatus(JobState.PENDING, "PENDING"),
        "6": UNKNOWN_STATUS,  # not in the queue: ended, or never was
        "junk": UNKNOWN_STATUS,
    }
    assert slurm.calls == ["sacct", "squeue"]
    # neither answers: SLURM cannot be asked (an error), and queued work is left alone
    fake(sacct=down, squeue=(1, "", "squeue: error: Unable to contact slurm controller\n"))
    with pytest.raises(BackendError, match="Unable to contact"):
        get_backend("slurm").states(["5_0"])
    assert jobs.still_queued({"x": {"status": "submitted", "ref": "5_0", "backend": "slurm"}}) == {
        "x": None
    }


def test_a_job_sacct_does_not_know_yet_is_asked_of_squeue(fake: Callable[..., FakeSlurm]) -> None:
    slurm = fake(sacct=(0, "", ""), squeue=(0, "7|PENDING\n", ""))
    assert get_backend("slurm").states(["7"]) == {"7": JobStatus(JobState.PENDING, "PENDING")}
    assert slurm.calls == ["sacct", "squeue"]


# -- from another process: a finished local run, SLURM jobs ------------------------------------
LOCAL_RUN = """
names = {f"w{i}": partial(ex.wait_for_file, started="started", release="../../../release",
                          timeout=120) for i in range(2)}
g = xh.ParametrizedExperiments("g", names)
"""


def _local_run(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    write_run_py(tmp_path, LOCAL_RUN)
    proc = subprocess.Popen(
        [sys.executable, "run.py", "g", "-j2"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(TESTS)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    folders = [tmp_path / "results/g/w0", tmp_path / "results/g/w1"]
    wait_until(lambda: all((f / "started").exists() for f in folders), 60, "both running")
    ref = process_ref(proc.pid)
    assert ref is not None
    return proc, ref


def test_local_refs_answered_by_another_process(tmp_path: Path) -> None:
    proc, ref = _local_run(tmp_path)
    try:
        assert ask("local", "states", [ref]) == {ref: ["running", ""]}
    finally:
        (tmp_path / "release").write_text("")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    # the run is over: nobody runs under that ref, and nothing is left to cancel
    assert ask("local", "states", [ref]) == {ref: ["unknown", ""]}
    assert ask("local", "cancel", [ref]) == {ref: False}


def test_local_cancel_from_another_process_interrupts_the_run(tmp_path: Path) -> None:
    proc, ref = _local_run(tmp_path)
    try:
        assert ask("local", "cancel", [ref]) == {ref: True}
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    for name in ("w0", "w1"):
        assert meta(tmp_path / "results/g" / name)["status"] == "interrupted"


SLURM_RUN = """
g = xh.ParametrizedExperiments("g", {"a": partial(ex.no_config, value=3), "b": ex.no_config})
"""


def test_slurm_refs_answered_by_another_process(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    write_run_py(tmp_path, SLURM_RUN)
    (tmp_path / "config.py").write_text(
        f"class Config:\n    slurm_partition = {slurm_cluster.partition!r}\n"
        "    slurm_timeout_min = 5\n"
    )
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    submitted = run_py(tmp_path, "g", "--slurm", "--no-wait", env=env)
    assert submitted.returncode == 0, submitted.stderr
    folders = {n: tmp_path / "results/g" / n for n in ("a", "b")}
    wait_until(
        lambda: all(meta(f)["status"] == "success" for f in folders.values()), 120, "jobs done"
    )
    data = {n: meta(f) for n, f in folders.items()}
    refs = [data["a"]["ref"], data["b"]["ref"]]
    for m in data.values():  # what the core wrote from what the backend handed over
        assert m["backend"] == "slurm" and m["ref"] == m["slurm_job_id"]
    wait_until(
        lambda: all(s == ["completed", "COMPLETED"] for s in ask("slurm", "states", refs).values()),
        60,
        "sacct to show both COMPLETED",
    )
    assert ask("slurm", "cancel", refs) == dict.fromkeys(refs, False)
    # the CLI: marked nothing, says they had ended
    ref_a = data["a"]["ref"]
    # the marker of a long-gone job, as a runner killed before the job started leaves it
    (folders["a"] / "metafile.json").write_text(
        json.dumps({**data["a"], "status": "submitted", "submitted": "2000-01-01T00:00:00"})
    )
    cancelled = run_py(tmp_path, "g", "a", "--cancel", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"already ended: SLURM job {ref_a} (nothing to cancel)"
    assert meta(folders["a"])["status"] == "submitted"  # untouched
    listing = run_py(tmp_path, "g", "-l", "--format", "json", env=env)
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["a"]["status"] == "failed" and rows["a"]["error"] == "SLURM job ended COMPLETED"
    assert rows["a"]["where"] == ref_a and rows["b"]["status"] == "done"


# -- bad input ----------------------------------------------------------------------------------
ORPHAN_RUN = """
g = xh.ParametrizedExperiments("g", {"a": ex.no_config, "b": ex.no_config})
"""


def test_an_unregistered_backend_shows_unknown(tmp_path: Path) -> None:
    write_run_py(tmp_path, ORPHAN_RUN)
    folder = tmp_path / "results/g/a"
    folder.mkdir(parents=True)
    (folder / "metafile.json").write_text(
        json.dumps({"status": "submitted", "backend": "nosuch", "ref": "r-1", "runs": 0})
    )
    listing = run_py(tmp_path, "g", "-l")
    assert listing.returncode == 0 and "Traceback" not in listing.stderr, listing.stderr
    line = next(line for line in listing.stdout.splitlines() if line.startswith("a "))
    assert "unknown" in line and "nosuch" in line and "r-1" in line
    assert "1 unknown" in listing.stdout
    as_json = run_py(tmp_path, "g", "-l", "--format", "json")
    (row, _) = json.loads(as_json.stdout)
    assert row["status"] == "unknown" and "'nosuch'" in row["error"]
    # a run leaves it alone (its job may run: nobody here can tell), and says why
    ran = run_py(tmp_path, "g")
    assert ran.returncode == 0, ran.stderr
    assert "backend 'nosuch'" in ran.stderr and "1 queued" in ran.stdout
    assert "Traceback" not in ran.stderr
    cancelled = run_py(tmp_path, "g", "--cancel")
    assert cancelled.returncode == 0 and "Traceback" not in cancelled.stderr
    assert "backend 'nosuch'" in cancelled.stdout


def test_no_wait_needs_a_backend_that_can_detach(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(LocalBackend, "can_detach", False)  # as a backend that cannot
    group = xh.ParametrizedExperiments("nw", {"a": print})
    with pytest.raises(BackendError, match="the local backend cannot detach") as info:
        group(backend="local", wait=False, quiet=True, config={"output_directory": tmp_path})
    assert info.value.usage
    assert not (tmp_path / "nw").exists()  # nothing ran
