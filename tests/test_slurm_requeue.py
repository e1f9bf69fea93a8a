"""A job SLURM requeues (node failure, preemption) is queued, not failed (issue 9, finding 7).

sacct shows a requeued job's old end (NODE_FAIL, PREEMPTED, ...) until the new record
arrives, while squeue already holds it PENDING; the experiment's metafile still says
``running`` (its process died with the node, so its lock is free). The first tests
fake sacct/squeue to pin down the decisions; the last one sets the real node down
while jobs run.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, meta, run_py, wait_until, write_run_py
from slurm_support import SlurmCluster

import xhelpers as xh
from xhelpers.backends.base import Lost
from xhelpers.backends.slurm import queue as slurm_queue
from xhelpers.config import BaseConfig
from xhelpers.core import jobs, planning, results
from xhelpers.core.execution import RunContext, Task
from xhelpers.errors import BackendError


# -- sacct and squeue, faked -----------------------------------------------------------------
class FakeSlurm:
    """Stands in for slurm_queue._run: canned sacct/squeue answers, every call logged."""

    def __init__(self, sacct: str, squeue: str = "", squeue_rc: int = 0, squeue_err: str = ""):
        self.sacct = sacct
        self.squeue = squeue
        self.squeue_rc = squeue_rc
        self.squeue_err = squeue_err
        self.calls: list[list[str]] = []

    def __call__(self, cmd: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        if cmd[0] == "sacct":
            return subprocess.CompletedProcess(cmd, 0, self.sacct, "")
        if cmd[0] == "squeue":
            return subprocess.CompletedProcess(cmd, self.squeue_rc, self.squeue, self.squeue_err)
        raise AssertionError(f"unexpected SLURM call {cmd}")

    def commands(self) -> list[str]:
        return [cmd[0] for cmd in self.calls]


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeSlurm]:
    def install(*args: Any, **kwargs: Any) -> FakeSlurm:
        slurm = FakeSlurm(*args, **kwargs)
        monkeypatch.setattr(slurm_queue, "_run", slurm)
        return slurm

    return install


# as seen on the local cluster ~1 s after `scontrol update ... state=down`, and more
SACCT_WINDOW = (
    "70_0|NODE_FAIL\n70_1|PREEMPTED\n70_2|COMPLETED\n70_3|RUNNING\n"
    "71|NODE_FAIL\n72|CANCELLED by 0\n"
)


def test_an_end_sacct_shows_is_final_only_once_squeue_lets_go(
    fake: Callable[..., FakeSlurm],
) -> None:
    slurm = fake(SACCT_WINDOW, "70_0|PENDING\n70_3|RUNNING\n71|NODE_FAIL\n72|CANCELLED\n")
    ids = ["70_0", "70_1", "70_2", "70_3", "71", "72"]
    states = slurm_queue.job_states(ids)
    assert {j: states[j] for j in ids} == {
        "70_0": "PENDING",  # requeued: its new record is not in sacct yet
        "70_1": "PREEMPTED",  # gone from the queue: final
        "70_2": "COMPLETED",
        "70_3": "RUNNING",
        "71": "NODE_FAIL",  # squeue holds it ended (MinJobAge): final
        "72": "CANCELLED",
    }
    assert slurm.commands() == ["sacct", "squeue"]  # one batched call each
    squeue = slurm.calls[1]
    assert squeue[squeue.index("-j") + 1] == "70,71,72"
    assert "-t" in squeue and squeue[squeue.index("-t") + 1] == "all" and "-r" in squeue
    assert [j for j in ids if slurm_queue.is_final(states[j])] == ["70_1", "70_2", "71", "72"]


def test_no_squeue_call_while_nothing_ended(fake: Callable[..., FakeSlurm]) -> None:
    slurm = fake("80_0|PENDING\n80_1|RUNNING\n80_[2-3]|PENDING\n")
    states = slurm_queue.job_states(["80_0", "80_1", "80_3", "81"])
    assert states["80_3"] == "PENDING" and "81" not in states
    assert slurm.commands() == ["sacct"]


def test_squeue_answers_parsed(fake: Callable[..., FakeSlurm]) -> None:
    assert slurm_queue.parse_squeue("90_[2-4%2]|PENDING\n91|RUNNING\n92_1|\n\n") == {
        "90_2": "PENDING",
        "90_3": "PENDING",
        "90_4": "PENDING",
        "91": "RUNNING",
        "92_1": "UNKNOWN",
    }
    # one id the controller forgot is an error to squeue: not in the queue, so final
    fake("93|NODE_FAIL\n", "", 1, "slurm_load_jobs error: Invalid job id specified\n")
    assert slurm_queue.job_states(["93"]) == {"93": "NODE_FAIL"}


def test_squeue_unreachable_means_nothing_is_known(fake: Callable[..., FakeSlurm]) -> None:
    fake("94_0|NODE_FAIL\n", "", 1, "slurm_load_jobs error: Unable to contact slurm controller")
    with pytest.raises(BackendError, match=r"squeue: .*Unable to contact slurm controller"):
        slurm_queue.job_states(["94_0"])
    # so an experiment of that job counts as queued: nothing runs twice
    metas = {"x": {"status": "running", "backend": "slurm", "ref": "94_0"}}
    assert jobs.still_queued(metas) == {"x": None}


def test_still_queued_counts_requeued_and_held_jobs(fake: Callable[..., FakeSlurm]) -> None:
    fake("95_0|NODE_FAIL\n95_1|SUSPENDED\n95_2|NODE_FAIL\n95_3|REQUEUE_HOLD\n", "95_0|PENDING\n")
    metas = {f"e{i}": {"status": "running", "slurm_job_id": f"95_{i}"} for i in range(4)}
    queued = jobs.still_queued(metas)  # (old metafiles: slurm_job_id alone)
    assert {name: status and status.raw for name, status in queued.items()} == {
        "e0": "PENDING",
        "e1": "SUSPENDED",
        "e3": "REQUEUE_HOLD",
    }


def _metafile(folder: Path, **members: Any) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metafile.json").write_text(json.dumps(members))


@pytest.fixture()
def orphans(tmp_path: Path) -> xh.ParametrizedExperiments:
    """Metafiles as a node failure leaves them (no process holds any lock)."""
    from experiments import no_config

    base = tmp_path / "results/g"
    _metafile(base / "requeued", status="running", slurm_job_id="60_0", host="vm")
    _metafile(base / "local", status="running", host="vm")  # a local runner died
    _metafile(base / "gone", status="submitted", slurm_job_id="60_1")
    _metafile(base / "ran", status="running", slurm_job_id="60_2", host="vm")
    _metafile(base / "failed", status="failed", error={"type": "ValueError", "message": "x"})
    names = ("requeued", "local", "gone", "ran", "failed", "new")
    return xh.ParametrizedExperiments("g", dict.fromkeys(names, no_config))


ORPHAN_SACCT = "60_0|NODE_FAIL\n60_1|NODE_FAIL\n60_2|NODE_FAIL\n"
ORPHAN_SQUEUE = "60_0|PENDING\n60_2|RUNNING\n"  # 60_1 ended for good


def test_listing_shows_a_requeued_job_queued(
    orphans: xh.ParametrizedExperiments, fake: Callable[..., FakeSlurm]
) -> None:
    slurm = fake(ORPHAN_SACCT, ORPHAN_SQUEUE)
    rows = {row.name: row for row in orphans.status()}
    assert rows["requeued"].status == "submitted" and rows["requeued"].where == "60_0"
    assert rows["local"].status == "interrupted"
    assert rows["gone"].status == "failed"
    assert rows["gone"].error == "SLURM job ended NODE_FAIL"
    assert rows["ran"].status == "running"  # restarted already, before it took its lock
    assert rows["failed"].status == "failed" and rows["new"].status == "pending"
    assert slurm.commands() == ["sacct", "squeue"]


def test_plan_and_retry_leave_a_requeued_job_alone(
    orphans: xh.ParametrizedExperiments, tmp_path: Path, fake: Callable[..., FakeSlurm]
) -> None:
    base = results.group_prefix(tmp_path / "results", "g")
    names = orphans.select()
    slurm = fake(ORPHAN_SACCT, ORPHAN_SQUEUE)
    retry = planning.failed_only(list(names), base)
    assert retry == ["local", "failed"]  # neither 60_0 (requeued) nor 60_2 (running)
    assert slurm.commands() == ["sacct", "squeue"]
    slurm.calls.clear()
    to_run, skip = planning.plan(orphans, names, base, planning.RunOptions())
    assert [name for name, _, _ in to_run] == ["local", "gone", "failed", "new"]  # in order
    assert skip == {"requeued": "queued", "ran": "queued"}
    assert slurm.commands() == ["sacct", "squeue"]


def test_retry_asks_slurm_nothing_without_slurm_jobs(
    orphans: xh.ParametrizedExperiments, tmp_path: Path, fake: Callable[..., FakeSlurm]
) -> None:
    slurm = fake("")
    base = results.group_prefix(tmp_path / "results", "g")
    assert planning.failed_only(["local", "failed", "new"], base) == ["local", "failed"]
    to_run, _ = planning.plan(orphans, ["local", "new"], base, planning.RunOptions())
    assert [name for name, _, _ in to_run] == ["local", "new"]
    assert slurm.calls == []


def test_waiting_backend_waits_for_a_requeued_job(
    tmp_path: Path, fake: Callable[..., FakeSlurm]
) -> None:
    from experiments import no_config

    from xhelpers.backends.slurm.backend import SlurmBackend

    config = BaseConfig.with_updates({"output_directory": tmp_path})
    backend = SlurmBackend(RunContext("g", config, '"xhelpers": "test"'))
    task = Task("x", str(tmp_path / "results/g/x"), no_config, '"function": "f"', False)
    backend._pending["61_0"] = [task]
    slurm = fake("61_0|NODE_FAIL\n", "61_0|PENDING\n")
    for _ in range(3):  # seen ended on polls in a row, yet requeued: not lost
        assert list(backend._collect_lost()) == []
    assert slurm.commands() == ["sacct", "squeue"] * 3
    slurm.squeue = ""  # gone from the queue: ended for good (on the second poll in a row)
    assert list(backend._collect_lost()) == []
    (lost,) = list(backend._collect_lost())
    assert isinstance(lost, Lost) and lost.why == "NODE_FAIL" and not backend._pending


# -- the real cluster: the node goes down while jobs run ----------------------------------------
N = 4
RUN = f"""
names = {{f"n{{i}}": partial(ex.wait_for_file, started="started", release="../../../release",
                            timeout=300) for i in range({N})}}
g = xh.ParametrizedExperiments("rq", names, configcls=ex.TConfig)
"""


def _slurm(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)
    return proc.stdout


def _queue(job_ids: set[str]) -> dict[str, str]:
    bases = ",".join(sorted({j.split("_")[0] for j in job_ids}))
    lines = _slurm("squeue", "-h", "-r", "-t", "all", "-o", "%i|%T", "-j", bases).splitlines()
    return {job: state for job, _, state in (line.partition("|") for line in lines)}


def _others_running(ours: set[str]) -> bool:
    bases = {j.split("_")[0] for j in ours}
    running = _slurm("squeue", "-h", "-t", "running,completing", "-o", "%F").split()
    return any(job not in bases for job in running)


@contextlib.contextmanager
def node_down(node: str) -> Iterator[None]:
    """The node down (SLURM requeues its batch jobs, JobRequeue=1); always resumed."""
    subprocess.run(
        ["scontrol", "update", f"nodename={node}", "state=down", "reason=xhelpers requeue test"],
        check=True,
        timeout=60,
    )
    try:
        yield
    finally:
        subprocess.run(
            ["scontrol", "update", f"nodename={node}", "state=resume"], check=False, timeout=60
        )


def test_node_failure_requeues_and_nothing_fails_or_runs_twice(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    write_run_py(tmp_path, RUN)
    (tmp_path / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {slurm_cluster.partition!r}\n"
        "    slurm_poll_interval_s = 0.25\n"  # polls often enough to see sacct's NODE_FAIL
        "    slurm_timeout_min = 10\n"
    )
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    folders = [tmp_path / f"results/rq/n{i}" for i in range(N)]
    slurm_dir = tmp_path / "results/rq/.slurm"
    proc = subprocess.Popen(
        [sys.executable, "run.py", "rq", "--slurm"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(
            lambda: all((f / "started").exists() for f in folders), timeout=120, what="all running"
        )
        jobs = {f.name: str(meta(f)["slurm_job_id"]) for f in folders}
        ours = set(jobs.values())
        node = str(meta(folders[0])["node"])
        # The node is shared: wait a little for a moment when only our jobs run on it
        # (a courtesy to other work, not a sync: past the bound the test goes on).
        deadline = time.monotonic() + 30
        while _others_running(ours) and time.monotonic() < deadline:
            time.sleep(0.1)
        with node_down(node):
            wait_until(
                lambda: set(_queue(ours).values()) == {"PENDING"},
                timeout=60,
                what="SLURM to requeue the jobs",
            )
            wait_until(
                lambda: not any(results.is_locked(str(f)) for f in folders),
                timeout=60,
                what="the experiments' processes to die with the node",
            )
            assert proc.poll() is None, proc.communicate()  # still waiting, nothing failed
            assert all(meta(f)["status"] == "running" for f in folders)

            listing = run_py(tmp_path, "rq", "-l", "--format", "json", env=env)
            rows = {r["name"]: r for r in json.loads(listing.stdout)}
            assert {name: r["status"] for name, r in rows.items()} == dict.fromkeys(
                jobs, "submitted"
            ), listing.stdout
            assert {name: r["where"] for name, r in rows.items()} == jobs

            retry = run_py(tmp_path, "rq", "--retry-failed", "--slurm", "--no-wait", env=env)
            assert retry.returncode == 0, (retry.stdout, retry.stderr)
            assert "submitted to SLURM" not in retry.stdout, retry.stdout
            assert len(list(slurm_dir.glob("*_submission.sh"))) == 1  # no second array
            assert {f.name: meta(f)["slurm_job_id"] for f in folders} == jobs

            (tmp_path / "release").write_text("")
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, (out, err)
        assert f"rq: {N} succeeded, 0 skipped, 0 failed" in out, out
        for folder in folders:
            data = meta(folder)
            assert data["status"] == "success" and data["attempts"] == 2, data
            assert data["slurm_job_id"] == jobs[folder.name]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        submitted = {p.name.split("_")[0] for p in slurm_dir.glob("*_submission.sh")}
        if submitted:  # whatever this test left queued (a second array, on failure)
            subprocess.run(["scancel", *sorted(submitted)], check=False, timeout=60)
