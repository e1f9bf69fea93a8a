"""Pipelines through the runner and the CLI on the real local SLURM cluster.

``python run.py ... --slurm``: one array per stage, held by dependencies; a failed
upstream blocks its downstreams (SLURM cancels them, the core records them blocked);
``--no-wait`` then ``-l`` from new processes follows the pipeline until it is done.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from conftest import TESTS, meta, run_py, wait_until, write_run_py
from slurm_support import SlurmCluster

RUN_PIPELINE = """
import os

def train(*, lr):
    if lr == 0.3:
        raise ValueError("diverged")
    with open("model.txt", "w") as f:
        f.write(str(lr))

def evaluate(*, model, lr):
    return float(model.load("model.txt")) * 10

def best(*, runs):
    return max(r.returned for r in runs)

g = xh.ParametrizedExperiments("g", {
    **xh.grid(train, "train/lr={lr}", lr=[0.1, 0.2, 0.3]),
    **xh.grid(evaluate, "eval/lr={lr}", lr=[0.1, 0.2, 0.3],
              model=xh.upstream("g", "train/lr={lr}")),
    "best": partial(best, runs=xh.upstreams("g", "eval/lr=0.[12]")),
    "all": partial(best, runs=xh.upstreams("g", "eval/*")),
})
"""


def _project(tmp_path: Path, cluster: SlurmCluster) -> Path:
    write_run_py(tmp_path, RUN_PIPELINE)
    (tmp_path / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {cluster.partition!r}\n"
        "    slurm_poll_interval_s = 0.5\n"
        "    slurm_timeout_min = 5\n"
    )
    return tmp_path


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    return run_py(folder, *args, timeout=300, env=env)


def _statuses(folder: Path) -> dict[str, str]:
    listed = _cli(folder, "g", "-l", "--format", "json")
    return {row["name"]: row["status"] for row in json.loads(listed.stdout)}


def test_a_pipeline_goes_to_slurm_in_one_go_and_a_failure_blocks_its_downstreams(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    project = _project(tmp_path, slurm_cluster)
    proc = _cli(project, "g", "--slurm")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert "5 succeeded, 0 skipped, 1 failed, 0 interrupted, 2 blocked" in proc.stdout, proc.stdout
    assert _statuses(project) == {
        "train/lr=0.1": "done",
        "train/lr=0.2": "done",
        "train/lr=0.3": "failed",
        "eval/lr=0.1": "done",
        "eval/lr=0.2": "done",
        "eval/lr=0.3": "blocked",
        "best": "done",
        "all": "blocked",
    }
    assert meta(project / "results/g/best")["returned"] == 2.0
    blocked = meta(project / "results/g/eval/lr=0.3")
    assert blocked["status"] == "blocked" and blocked["blocked_by"] == ["train/lr=0.3"]


def test_no_wait_pipeline_is_followed_from_another_process_until_done(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    project = _project(tmp_path, slurm_cluster)
    proc = _cli(project, "g", "best", "--slurm", "--no-wait")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "submitted to SLURM" in proc.stdout and "(1 selected + 4 upstream" in proc.stdout
    seen: set[str] = set()

    def finished() -> bool:
        statuses = _statuses(project)
        seen.update(statuses.values())
        return statuses["best"] == "done"

    wait_until(finished, 240, "the pipeline to finish on SLURM")
    assert seen <= {"done", "submitted", "waiting", "running", "pending", "failed", "blocked"}
    assert meta(project / "results/g/best")["returned"] == 2.0
    again = _cli(project, "g", "best", "--slurm")
    assert again.returncode == 0 and "0 succeeded, 1 skipped" in again.stdout, again.stdout


def test_dry_run_on_slurm_shows_the_arrays_and_their_dependencies(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    project = _project(tmp_path, slurm_cluster)
    proc = _cli(project, "g", "-n", "--slurm")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "g: dry run (slurm): would run 8 and skip 0 of 8 selected" in out, out
    assert "sbatch A1 (stage 0): an array of 3: train/lr=0.1 ... train/lr=0.3;" in out, out
    assert "sbatch A2 (stage 1): an array of 3: eval/lr=0.1 ... eval/lr=0.3;" in out, out
    assert "--dependency=aftercorr:A1" in out, out
    assert "--dependency=afterok:A2_0:A2_1" in out and "--dependency=afterok:A2" in out, out
    assert out.count("sbatch A") == 4, out  # best waits for two evals, all for the array
    assert not (project / "results").exists()  # nothing submitted, nothing written
