"""The local SLURM cluster (scripts/local-slurm) really runs jobs and accounts for them."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from slurm_support import LOCAL_SLURM, SlurmCluster

JOB_TIMEOUT_S = 120


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def sbatch(cluster: SlurmCluster, *args: str, timeout: float = JOB_TIMEOUT_S) -> str:
    proc = run(["sbatch", "--parsable", "-p", cluster.partition, *args], timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def sacct_state(job_id: str) -> str:
    proc = run(["sacct", "-n", "-X", "-P", "-j", job_id, "-o", "State"])
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def wait_sacct_state(job_id: str, prefix: str, timeout: float = JOB_TIMEOUT_S) -> str:
    """Poll sacct until the job state starts with prefix (slurmdbd learns it asynchronously)."""
    deadline = time.monotonic() + timeout
    state = ""
    while time.monotonic() < deadline:
        state = sacct_state(job_id)
        if state.startswith(prefix):
            return state
        time.sleep(0.2)
    pytest.fail(f"job {job_id}: sacct state {state!r} after {timeout}s, expected {prefix}*")


def test_cluster_config(slurm_cluster: SlurmCluster) -> None:
    assert slurm_cluster.partition
    assert slurm_cluster.max_array_size >= 0


def test_sbatch_wait_writes_output(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    out = tmp_path / "job.out"
    job_id = sbatch(
        slurm_cluster, "--wait", "-o", str(out), "--wrap", "echo hello from $SLURM_JOB_ID"
    )
    assert out.read_text().strip() == f"hello from {job_id}"


def test_sacct_reports_completed(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = sbatch(slurm_cluster, "--wait", "-o", str(tmp_path / "job.out"), "--wrap", "true")
    assert wait_sacct_state(job_id, "COMPLETED") == "COMPLETED"


def test_scancel_shows_cancelled(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    job_id = sbatch(slurm_cluster, "-o", str(tmp_path / "job.out"), "--wrap", "sleep 600")
    try:
        wait_sacct_state(job_id, "RUNNING")
    finally:
        assert run(["scancel", job_id]).returncode == 0
    # "CANCELLED by <uid>"
    assert wait_sacct_state(job_id, "CANCELLED").startswith("CANCELLED")


def test_status_returns_with_captured_output(slurm_cluster: SlurmCluster) -> None:
    # Daemons holding an inherited pipe open would make this hang until the timeout.
    proc = subprocess.run([str(LOCAL_SLURM), "status"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "usable: yes" in proc.stdout
    assert slurm_cluster.partition in proc.stdout


def test_start_again_is_idempotent_and_quick(slurm_cluster: SlurmCluster) -> None:
    run_dir = Path(os.environ.get("LOCAL_SLURM_RUN_DIR", "/run/xhelpers-slurm"))
    if os.geteuid() != 0 or not (run_dir / "slurmctld.pid").exists():
        pytest.skip("cluster was not started by scripts/local-slurm as this (root) user")
    # Same knobs as the running cluster, or `start` would rewrite the config and restart it.
    env = {
        **os.environ,
        "LOCAL_SLURM_PARTITION": slurm_cluster.partition,
        "LOCAL_SLURM_MAX_ARRAY_SIZE": str(slurm_cluster.max_array_size),
    }
    pids_before = {p.name: p.read_text() for p in run_dir.glob("*.pid")}
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(LOCAL_SLURM), "start"], capture_output=True, text=True, timeout=120, env=env
    )
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ready" in proc.stdout
    assert elapsed < 15, f"warm start took {elapsed:.1f}s"
    assert {p.name: p.read_text() for p in run_dir.glob("*.pid")} == pids_before, (
        "daemons were restarted"
    )


def test_submitit_runs_python_function(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    submitit = pytest.importorskip("submitit")

    def where(x: int) -> tuple[int, str | None]:
        import os

        return x * 2, os.environ.get("SLURM_JOB_ID")

    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm")
    executor.update_parameters(slurm_partition=slurm_cluster.partition, timeout_min=5)
    job = executor.submit(where, 21)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while not job.done():  # job.result() alone would wait forever on a stuck job
        if time.monotonic() > deadline:
            job.cancel()
            pytest.fail(
                f"submitit job {job.job_id} not done after {JOB_TIMEOUT_S}s (state {job.state})"
            )
        time.sleep(0.2)
    assert job.result() == (42, job.job_id)
