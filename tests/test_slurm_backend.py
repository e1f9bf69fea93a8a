"""The SLURM backend, driven directly, on the real local cluster (scripts/local-slurm).

Tasks are built as the runner builds them (``describe`` + ``Task``/``RunContext``);
nothing of SLURM is mocked. Waits are bounded polls, never fixed sleeps.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import os
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cloudpickle  # type: ignore[import-untyped]
import pytest
from slurm_support import SlurmCluster  # the slurm_cluster fixture is in conftest.py

from xhelpers.backends import Finished, Lost, Report, get_backend
from xhelpers.backends.slurm import backend as slurm_mod
from xhelpers.backends.slurm.backend import SlurmBackend
from xhelpers.config import BaseConfig
from xhelpers.core import execution, records, results
from xhelpers.core.execution import RunContext, Task
from xhelpers.core.fingerprints import describe
from xhelpers.errors import BackendError

# The experiments below live in this test module, which the node cannot import:
# ship them by value.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

WAIT_S = 90.0  # bound on every wait for the cluster
GROUP = "grp"


# -- experiments (they run on the node) ----------------------------------------------------
def double(x: int) -> int:
    return 2 * x


def boom() -> None:
    raise ValueError("boom on the node")


def wait_for(path: str, timeout: float = 120.0) -> str:
    """Block until ``path`` exists (bounded), so a test can observe a running job."""
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(path)
        time.sleep(0.05)
    return "released"


def cpus(config: Any = None) -> str | None:
    return os.environ.get("SLURM_CPUS_PER_TASK")


def resumable(start: int, config: Any = None) -> int:
    """Write a checkpoint, then wait to be signalled; resumed, finish from the checkpoint."""
    if os.path.exists("checkpoint.txt"):
        return int(Path("checkpoint.txt").read_text()) + 100
    Path("checkpoint.txt.tmp").write_text(str(start))
    os.replace("checkpoint.txt.tmp", "checkpoint.txt")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return -1


# -- helpers --------------------------------------------------------------------------------
@dataclasses.dataclass(slots=True)
class ResourceTask(Task):
    """A task with a per-experiment resource override, as the framework may attach later."""

    resources: dict[str, Any] | None = None


def make_config(cluster: SlurmCluster, out: Path, **values: Any) -> BaseConfig:
    return BaseConfig.with_updates(
        {
            "output_directory": out,
            "slurm_partition": cluster.partition,
            "slurm_timeout_min": 10,
            "slurm_poll_interval_s": 0.5,
            **values,
        }
    )


def make_backend(
    config: BaseConfig, experiments: dict[str, Callable[..., Any]], **resources: dict[str, Any]
) -> tuple[SlurmBackend, list[Task]]:
    """Tasks built like runner.py builds them, and a backend for them."""
    ctx = RunContext(GROUP, config, '"xhelpers": "test"')
    tasks: list[Task] = []
    for name, fn in experiments.items():
        description, pass_config, own = describe(fn, config)
        folder = results.experiment_folder(config.output_directory, GROUP, name)
        if name in resources:
            tasks.append(
                ResourceTask(
                    name, folder, fn, description, pass_config, own, resources=resources[name]
                )
            )
        else:
            tasks.append(Task(name, folder, fn, description, pass_config, own))
    backend = get_backend("slurm")(ctx)
    assert isinstance(backend, SlurmBackend)
    return backend, tasks


def start(backend: SlurmBackend, tasks: list[Task]) -> dict[str, str]:
    """Submit as the runner does: the core locks, the backend submits, the core marks."""
    refs, settled = records.submit_marked(backend, tasks, backend.ctx)
    assert settled == []
    return refs


def collect(backend: SlurmBackend, timeout: float = WAIT_S) -> dict[str, Report]:
    """Every report of the backend, by task name; fails (and stops waiting) after ``timeout``."""
    got: dict[str, Report] = {}
    error: list[BaseException] = []

    def consume() -> None:
        try:
            for report in backend.reports():
                assert report.task.name not in got, f"{report.task.name} reported twice"
                got[report.task.name] = report
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        backend.interrupt()
        thread.join(10)
        pytest.fail(f"reports not complete after {timeout}s; got {sorted(got)}")
    if error:
        raise error[0]
    return got


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)
        delay = min(2 * delay, 0.25)


def meta(config: BaseConfig, name: str) -> dict[str, Any]:
    data = results.read_metafile(results.experiment_folder(config.output_directory, GROUP, name))
    return data or {}


def sh(*cmd: str) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)}: {proc.stderr}"
    return proc.stdout


def is_running(job_id: str) -> bool:
    return sh("squeue", "-h", "-o", "%T", "-j", job_id).strip() == "RUNNING"


@pytest.fixture
def sacct_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put a logging ``sacct`` in front of the real one; the log gets one line per call."""
    bindir = tmp_path / "shim"
    bindir.mkdir()
    log = tmp_path / "sacct.log"
    real = subprocess.run(["which", "sacct"], capture_output=True, text=True).stdout.strip()
    shim = bindir / "sacct"
    shim.write_text(f'#!/bin/sh\necho "$*" >> {log}\nexec {real} "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return log


@pytest.fixture
def cleanup_jobs() -> Iterator[list[str]]:
    """Job ids to cancel when the test ends, whatever happened (only ours)."""
    ids: list[str] = []
    yield ids
    if ids:
        subprocess.run(["scancel", *ids], capture_output=True, timeout=60, check=False)


# -- on the cluster -------------------------------------------------------------------------
def test_mixed_group(
    slurm_cluster: SlurmCluster, tmp_path: Path, sacct_log: Path, cleanup_jobs: list[str]
) -> None:
    config = make_config(slurm_cluster, tmp_path / "out")
    release = tmp_path / "never-created"
    backend, tasks = make_backend(
        config,
        {
            "ok/a": functools.partial(double, 1),
            "ok/b": functools.partial(double, 21),
            "bad": boom,
            "cancelled": functools.partial(wait_for, str(release)),
        },
    )
    start(backend, tasks)
    cleanup_jobs.extend(backend.arrays)

    # One sbatch, one array; every experiment marked `submitted` with its own job id.
    assert backend.sbatch_calls == 1 and len(backend.arrays) == 1
    array = backend.arrays[0]
    assert sorted(backend.job_ids.values()) == [f"{array}_{i}" for i in range(4)]
    for task in tasks:
        assert not results.is_locked(task.folder)  # the submitter holds no lock now
        m = meta(config, task.name)
        if m["status"] == results.SUBMITTED:  # fast tasks may be running already
            assert m["slurm_job_id"] == backend.job_ids[task.name]
            assert m["slurm_stdout"].endswith(f"{backend.job_ids[task.name]}_0_log.out")
            assert m["runs"] == 0

    cancelled = backend.job_ids["cancelled"]
    wait_until(lambda: meta(config, "cancelled").get("status") == "running", "job running")
    backend.cancel([cancelled])
    reports = collect(backend)

    assert set(reports) == {"ok/a", "ok/b", "bad", "cancelled"}
    for name, value in (("ok/a", 2), ("ok/b", 42)):
        report = reports[name]
        assert isinstance(report, Finished) and report.result.status == results.DONE
        m = meta(config, name)
        assert m["status"] == results.DONE and m["returned"] == value
        assert m["slurm_job_id"] == backend.job_ids[name]
        assert m["attempts"] == 1 and m["runs"] == 1 and m["node"]
        assert Path(m["slurm_stdout"]).parent == tmp_path / "out" / GROUP / ".slurm"
        # a success's submitit files have served (see test_slurm_housekeeping.py)
        assert not Path(m["slurm_stdout"]).exists() and not Path(m["slurm_stderr"]).exists()

    bad = reports["bad"]
    assert isinstance(bad, Finished) and bad.result.status == results.FAILED
    assert bad.result.error == "ValueError: boom on the node"
    error = meta(config, "bad")["error"]
    assert error["type"] == "ValueError"
    assert 'raise ValueError("boom on the node")' in error["traceback"]

    lost = reports["cancelled"]
    assert isinstance(lost, Lost)
    assert (lost.pid, lost.exitcode, lost.why) == (None, None, "CANCELLED")
    # What the runner then records (record_lost's SLURM hook: the metafile of that job).
    assert meta(config, "cancelled")["status"] == results.RUNNING
    assert records.record_lost(
        lost.task,
        backend.ctx,
        None,
        "CANCELLED",
        {"type": "Interrupted"},
        "interrupted",
        job_id=cancelled,
    )
    assert meta(config, "cancelled")["status"] == results.INTERRUPTED

    # Job states came from one batched sacct call per poll, never more often than the interval.
    calls = sacct_log.read_text().splitlines()
    assert len(calls) == backend.sacct_calls >= 1
    assert all(call.endswith(f"-j {array}") for call in calls)


def test_cancelled_before_any_task_started(
    slurm_cluster: SlurmCluster, tmp_path: Path, cleanup_jobs: list[str]
) -> None:
    # Held: no task can start. Cancelled whole, the array is one sacct record ("123").
    config = make_config(
        slurm_cluster, tmp_path / "out", slurm_additional_parameters={"hold": True}
    )
    backend, tasks = make_backend(config, {f"h{i}": functools.partial(double, i) for i in range(3)})
    start(backend, tasks)
    cleanup_jobs.extend(backend.arrays)
    backend.cancel(backend.arrays)
    reports = collect(backend)
    assert {name: getattr(r, "why", None) for name, r in reports.items()} == dict.fromkeys(
        ("h0", "h1", "h2"), "CANCELLED"
    )
    for task in tasks:  # the runner turns the `submitted` markers into `interrupted`
        assert meta(config, task.name)["status"] == results.SUBMITTED
        assert records.record_lost(
            task,
            backend.ctx,
            None,
            "CANCELLED",
            {"type": "Interrupted", "message": "CANCELLED"},
            "interrupted",
            job_id=backend.job_ids[task.name],
        )


def test_arrays_split_by_max_array_size(
    slurm_cluster: SlurmCluster,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cleanup_jobs: list[str],
) -> None:
    reads: list[int] = []
    real_read = slurm_mod.read_max_array_size

    def counting_read() -> int:
        reads.append(1)
        return real_read()

    monkeypatch.setattr(slurm_mod, "read_max_array_size", counting_read)
    config = make_config(slurm_cluster, tmp_path / "out", slurm_max_array_size=2)
    backend, tasks = make_backend(config, {f"e{i}": functools.partial(double, i) for i in range(5)})
    # The cluster's MaxArraySize, read with scontrol once per backend, capped by the config.
    assert backend.cluster_max_array_size == slurm_cluster.max_array_size
    assert backend.max_array_size == min(2, slurm_cluster.max_array_size)
    start(backend, tasks)
    cleanup_jobs.extend(backend.arrays)
    assert len(reads) == 1

    assert backend.sbatch_calls == 3 and len(set(backend.arrays)) == 3
    a, b, c = backend.arrays
    assert [backend.job_ids[f"e{i}"] for i in range(5)] == [
        f"{a}_0",
        f"{a}_1",
        f"{b}_0",
        f"{b}_1",
        c,  # one left over: a plain job
    ]
    reports = collect(backend)
    assert all(isinstance(r, Finished) and r.result.status == "success" for r in reports.values())
    assert [meta(config, f"e{i}")["returned"] for i in range(5)] == [0, 2, 4, 6, 8]


def test_array_throttle_and_interrupt(
    slurm_cluster: SlurmCluster, tmp_path: Path, cleanup_jobs: list[str]
) -> None:
    config = make_config(slurm_cluster, tmp_path / "out", slurm_array_parallelism=2)
    release = tmp_path / "release"
    names = [f"t{i}" for i in range(4)]
    backend, tasks = make_backend(
        config, {n: functools.partial(wait_for, str(release)) for n in names}
    )
    start(backend, tasks)
    cleanup_jobs.extend(backend.arrays)
    (array,) = backend.arrays

    # The %2 throttle: in squeue's array id, in scontrol's job, and in what runs.
    assert "ArrayTaskThrottle=2" in sh("scontrol", "show", "job", array)
    wait_until(lambda: "%2]" in sh("squeue", "-h", "-o", "%i", "-j", array), "squeue shows %2")

    def running() -> int:
        states = sh("squeue", "-h", "-r", "-o", "%T", "-j", array).split()
        assert states.count("RUNNING") <= 2
        return states.count("RUNNING") == 2

    wait_until(running, "two tasks running")
    assert sum(meta(config, n).get("status") == "running" for n in names) <= 2

    # Ctrl-C while waiting: stop waiting at once, leave the jobs running.
    backend.interrupt()
    t0 = time.monotonic()
    assert list(backend.reports()) == []
    assert time.monotonic() - t0 < 5
    assert sh("squeue", "-h", "-r", "-o", "%i", "-j", array).split()  # still queued/running

    release.touch()
    wait_until(
        lambda: all(meta(config, n).get("status") == "success" for n in names),
        "all finished after release",
    )


def test_different_resources_make_separate_arrays(
    slurm_cluster: SlurmCluster, tmp_path: Path, cleanup_jobs: list[str]
) -> None:
    config = make_config(slurm_cluster, tmp_path / "out")
    backend, tasks = make_backend(
        config,
        {
            "one/a": cpus,
            "one/b": cpus,
            "two/a": cpus,
            "two/b": cpus,
            # its own config (the partial binds config=...) asks for 3 CPUs
            "three": functools.partial(cpus, config={"slurm_cpus_per_task": 3}),
        },
        **{"two/a": {"cpus_per_task": 2}, "two/b": {"cpus_per_task": 2}},
    )
    start(backend, tasks)
    cleanup_jobs.extend(backend.arrays)
    assert backend.sbatch_calls == 3
    ones, twos, three = backend.arrays
    assert {backend.job_ids["one/a"], backend.job_ids["one/b"]} == {f"{ones}_0", f"{ones}_1"}
    assert {backend.job_ids["two/a"], backend.job_ids["two/b"]} == {f"{twos}_0", f"{twos}_1"}
    assert backend.job_ids["three"] == three
    reports = collect(backend)
    assert all(isinstance(r, Finished) for r in reports.values())
    returned = {name: meta(config, name)["returned"] for name in reports}
    assert returned == {"one/a": "1", "one/b": "1", "two/a": "2", "two/b": "2", "three": "3"}


def test_requeue_resumes_from_checkpoint(
    slurm_cluster: SlurmCluster, tmp_path: Path, cleanup_jobs: list[str]
) -> None:
    config = make_config(slurm_cluster, tmp_path / "out")
    backend, tasks = make_backend(
        config,
        {
            "resume": functools.partial(resumable, 7),
            "quick": functools.partial(double, 4),  # makes "resume" an array task
            # no requeue allowed: signalled, it fails saying so
            "limited": functools.partial(resumable, 1, config={"slurm_max_requeues": 0}),
        },
    )
    start(backend, tasks)
    cleanup_jobs.extend(backend.arrays)
    resume_id, limited_id = backend.job_ids["resume"], backend.job_ids["limited"]
    assert "_" in resume_id and "_" not in limited_id

    seen: list[str] = []  # every status the metafile of "resume" shows
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            status = meta(config, "resume").get("status")
            if status and (not seen or seen[-1] != status):
                seen.append(status)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for name, job_id in (("resume", resume_id), ("limited", limited_id)):
            checkpoint = Path(
                results.experiment_folder(config.output_directory, GROUP, name), "checkpoint.txt"
            )
            wait_until(checkpoint.exists, f"{name} checkpoint")
            wait_until(functools.partial(is_running, job_id), f"{name} RUNNING")
            sh("scancel", "--signal=USR2", job_id)

        # Requeued: `submitted` again, not failed, while the job waits for its next run.
        requeued = wait_until(
            lambda: (m := meta(config, "resume")).get("requeued") and m, "requeue marker"
        )
        assert requeued["status"] == results.SUBMITTED and requeued["attempts"] == 1
        reports = collect(backend, timeout=120)
    finally:
        stop.set()
        watcher.join(5)

    resume = reports["resume"]
    assert isinstance(resume, Finished) and resume.result.status == results.DONE
    m = meta(config, "resume")
    assert m["returned"] == 107  # resumed from its checkpoint, in the same folder
    assert m["attempts"] == 2 and m["runs"] == 2 and m["slurm_job_id"] == resume_id
    assert m["resumed_from"] == ["checkpoint.txt"]
    assert results.FAILED not in seen and seen[-1] == results.DONE
    log = Path(
        results.experiment_folder(config.output_directory, GROUP, "resume"), "experiment.log"
    )
    assert "requeued by SLURM" in log.read_text()

    limited = reports["limited"]
    assert isinstance(limited, Finished) and limited.result.status == results.FAILED
    error = meta(config, "limited")["error"]
    assert error["type"].endswith("RequeueLimitReached")
    assert "slurm_max_requeues=0" in error["message"]
    assert isinstance(reports["quick"], Finished)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"slurm_partition": "no-such-partition"}, "invalid partition"),
        ({"slurm_mem_gb": 100_000}, "Memory specification can not be satisfied"),
    ],
)
def test_sbatch_failure_leaves_nothing_submitted(
    slurm_cluster: SlurmCluster,
    tmp_path: Path,
    bad: dict[str, Any],
    message: str,
    cleanup_jobs: list[str],
) -> None:
    config = make_config(slurm_cluster, tmp_path / "out")
    # The good group is submitted first, then the bad one fails: the good one is withdrawn.
    backend, tasks = make_backend(
        config,
        {
            "good/a": functools.partial(double, 1),
            "good/b": functools.partial(double, 2),
            "bad": functools.partial(cpus, config=bad),
        },
    )
    with pytest.raises(BackendError) as info:
        start(backend, tasks)
    cleanup_jobs.extend(backend.arrays)
    text = str(info.value)
    assert text.startswith("sbatch: ") and message in text and "\n" not in text
    assert backend.job_ids == {} and list(backend.reports()) == []
    for task in tasks:
        assert results.read_metafile(task.folder) is None  # never marked, never ran
        assert not results.is_locked(task.folder)
    (withdrawn,) = backend.arrays

    def cancelled() -> bool:  # sacct shows "123", "123_[0-1%2]" or "123_0", "123_1"
        states = slurm_mod.query_states([withdrawn])
        return bool(states) and set(states.values()) == {"CANCELLED"}

    wait_until(cancelled, "withdrawn array CANCELLED")
    leftovers = [n for n in os.listdir(backend.folder) if n.endswith((".pkl", ".sh"))]
    assert leftovers == []  # its pickles and script are gone too


# -- without a cluster --------------------------------------------------------------------
def test_unknown_resource_lists_valid_ones() -> None:
    from xhelpers.backends.slurm.resources import resources_for, sbatch_parameters
    from xhelpers.errors import ConfigError

    config = BaseConfig()
    with pytest.raises(ConfigError) as info:
        resources_for(config, {"gpus_per_task": 1})
    assert "'gpus_per_task'" in str(info.value)
    assert "gpus_per_node (default: 0)" in str(info.value)
    assert "gpus (default: 0)" in str(info.value)  # the local run's, a resource too
    assert resources_for(config, {"mem_gb": 64})["mem_gb"] == 64
    assert sbatch_parameters(resources_for(config, {"mem_gb": 64}), "g")["mem"] == "64GB"
    assert sbatch_parameters(resources_for(config, {"mem_gb": 1.5}), "g")["mem"] == "1536MB"


def test_parse_sacct() -> None:
    text = "12_[3-5%2]|PENDING\n12_0|COMPLETED\n12_1|CANCELLED by 0\n13|RUNNING\n13.batch|RUNNING\n"
    assert slurm_mod.parse_sacct(text) == {
        "12_3": "PENDING",
        "12_4": "PENDING",
        "12_5": "PENDING",
        "12_0": "COMPLETED",
        "12_1": "CANCELLED",
        "13": "RUNNING",
    }
    # An array cancelled before any task started is one record under its bare id.
    assert slurm_mod.parse_sacct("14|CANCELLED by 0\n", ["14_0", "14_1", "15_0"]) == {
        "14": "CANCELLED",
        "14_0": "CANCELLED",
        "14_1": "CANCELLED",
    }


def _local_task(tmp_path: Path, fn: Callable[..., Any]) -> tuple[Task, RunContext]:
    config = BaseConfig.with_updates({"output_directory": tmp_path})
    description, pass_config, own = describe(fn, config)
    folder = results.experiment_folder(tmp_path, GROUP, "x")
    return Task("x", folder, fn, description, pass_config, own), RunContext(
        GROUP, config, '"xhelpers": "test"'
    )


def test_requeue_exit_is_not_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    task, ctx = _local_task(tmp_path, functools.partial(sys.exit, -1))
    # Without the hook (the local path), sys.exit in an experiment is a failure ...
    assert execution.execute(task, ctx).status == results.FAILED
    # ... after submitit's checkpoint handler declared a requeue, it is `submitted` again.
    monkeypatch.setattr(execution, "_requeue_follows", True)
    ctx = dataclasses.replace(ctx, job_id="5_1", job_members='"slurm_job_id": "5_1", "attempts": 1')
    with pytest.raises(SystemExit):
        execution.execute(task, ctx)
    m = results.read_metafile(task.folder) or {}
    assert m["status"] == results.SUBMITTED and m["requeued"] and "error" not in m
    assert m["slurm_job_id"] == "5_1" and m["attempts"] == 1 and m["runs"] == 2


def test_node_waits_for_the_submitter(tmp_path: Path) -> None:
    task, ctx = _local_task(tmp_path, functools.partial(double, 3))
    results.ensure_folder(task.folder)
    lock = results.ExperimentLock(task.folder)
    assert lock.acquire()  # the submitter: lock, submit, mark, release
    records.record_submitted(task, ctx, "5_1")
    node_ctx = dataclasses.replace(ctx, job_id="5_1")
    out: list[execution.TaskResult] = []
    thread = threading.Thread(target=lambda: out.append(execution.execute(task, node_ctx)))
    thread.start()
    try:
        assert results.read_status(task.folder) == results.SUBMITTED  # it cannot have run
    finally:
        lock.release()
    thread.join(30)
    assert out and out[0].status == results.DONE
    m = results.read_metafile(task.folder) or {}
    assert m["status"] == results.DONE and m["runs"] == 1


def test_node_does_not_wait_for_another_runner(tmp_path: Path) -> None:
    task, ctx = _local_task(tmp_path, functools.partial(double, 3))
    results.ensure_folder(task.folder)
    lock = results.ExperimentLock(task.folder)
    assert lock.acquire()  # a local runner runs it
    try:
        results.write_metafile(task.folder, {"status": results.RUNNING, "pid": 1})
        t0 = time.monotonic()
        result = execution.execute(task, dataclasses.replace(ctx, job_id="5_1"))
        assert result.status == "running elsewhere" and time.monotonic() - t0 < 5
    finally:
        lock.release()


def test_record_lost_replaces_a_submitted_marker_of_that_job(tmp_path: Path) -> None:
    task, ctx = _local_task(tmp_path, functools.partial(double, 3))
    results.ensure_folder(task.folder)
    records.record_submitted(task, ctx, "7_0")
    error = {"type": "Interrupted", "message": "CANCELLED"}
    assert not records.record_lost(task, ctx, None, "x", error, "interrupted", job_id="8_0")
    assert records.record_lost(task, ctx, None, "x", error, "interrupted", job_id="7_0")
    assert (results.read_metafile(task.folder) or {})["status"] == results.INTERRUPTED


def test_task_pickle_keeps_file_names_of_code_sent_by_value(tmp_path: Path) -> None:
    # cloudpickle 3.1.3 names by-value code "<dynamic-code>"; the node's tracebacks need
    # the real file. A relative name becomes absolute: the node works in the experiment folder.
    relative = types.FunctionType(boom.__code__.replace(co_filename="sub/boom.py"), globals())
    for fn, filename in ((boom, __file__), (relative, str(tmp_path / "sub/boom.py"))):
        task, ctx = _local_task(tmp_path, fn)
        call = slurm_mod.SlurmTask(task, ctx, 1)
        node = cloudpickle.loads(cloudpickle.dumps(call))  # as submitit ships it
        assert node.task.fn is not fn and node.task.fn.__code__.co_filename == filename
        assert node.task.fn.__code__.co_firstlineno == fn.__code__.co_firstlineno
        assert (node.task.name, node.max_requeues, node.attempt) == ("x", 1, 1)
        assert copy.copy(call).task is call.task  # checkpoint's copy stays shallow
