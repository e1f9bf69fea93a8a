"""Submitting a 3-stage pipeline to SLURM: xhelpers' SlurmBackend against plain submitit.

    .venv/bin/python benchmarks/slurm_pipeline.py [-n 1000] [--wait] [--keep]

Needs a SLURM cluster (``scripts/local-slurm start``). The pipeline: ``n`` experiments
per stage, element-wise (``b/i`` after ``a/i``, ``c/i`` after ``b/i``), 3n tasks:

* xhelpers: one ``SlurmBackend.submit`` call for all of them as the runner makes it
  (``records.submit_marked``: lock every experiment, submit, ``submitted`` markers);
  stage arrays held by ``aftercorr`` dependencies. ``--wait`` also waits for every
  result; otherwise its jobs are cancelled once submitted;
* plain: ``executor.submit`` once per task for the same 3n tasks, as a user would write
  it, without dependencies (the faster, harder case for the goal), submitit's 0.2 s
  pause between submits set to 0; its jobs are cancelled once submitted.

Printed: sbatch calls and submission wall time of each side, and their ratio (goal:
at most 3 sbatch calls plus MaxArraySize splits, at most 0.2x plain's time).
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import submitit
from submitit.slurm import slurm as submitit_slurm

from xhelpers.backends import Finished
from xhelpers.backends.slurm.backend import SlurmBackend, cancel_jobs
from xhelpers.config import BaseConfig
from xhelpers.core import records, results
from xhelpers.core.execution import RunContext, Task
from xhelpers.core.fingerprints import describe

SBATCH_CALLS = 0
STAGES = ("a", "b", "c")


def _count_sbatch() -> None:
    """Count every sbatch command submitit builds (both sides go through it)."""
    original = submitit_slurm.SlurmExecutor._make_submission_command

    def counting(self: Any, path: Path) -> list[str]:
        global SBATCH_CALLS
        SBATCH_CALLS += 1
        result: list[str] = original(self, path)
        return result

    submitit_slurm.SlurmExecutor._make_submission_command = counting  # type: ignore[method-assign,assignment]


def trivial(i: int) -> int:
    return i


def pipeline(root: Path, n: int, config: BaseConfig) -> list[Task]:
    tasks = []
    for k, stage in enumerate(STAGES):
        for i in range(n):
            fn = functools.partial(trivial, i)
            description, pass_config, own = describe(fn, config)
            folder = results.experiment_folder(root, "bench", f"{stage}/{i:04d}")
            after: tuple[str, ...] = ()
            if k:
                after = (results.experiment_folder(root, "bench", f"{STAGES[k - 1]}/{i:04d}"),)
            tasks.append(
                Task(f"{stage}/{i:04d}", folder, fn, description, pass_config, own, after=after)
            )
    return tasks


def run_xhelpers(root: Path, n: int, wait: bool, timeout: float) -> dict[str, float]:
    config = BaseConfig.with_updates(
        {"output_directory": root, "slurm_poll_interval_s": 5.0, "slurm_timeout_min": 10}
    )
    ctx = RunContext("bench", config, '"xhelpers": "benchmark"')
    tasks = pipeline(root, n, config)
    backend = SlurmBackend(ctx)
    backend.cluster_max_array_size  # noqa: B018 - scontrol once, outside the timing (cached)
    before = SBATCH_CALLS
    t0 = time.perf_counter()
    records.submit_marked(backend, tasks, backend.ctx)
    submit = time.perf_counter() - t0
    sbatch = SBATCH_CALLS - before
    print(
        f"xhelpers: submitted {len(tasks)} in {submit:.3f}s with {sbatch} sbatch call(s): ", end=""
    )
    print(" ".join(backend.arrays), flush=True)
    out = {"submit": submit, "sbatch": float(sbatch)}
    if not wait:
        cancel_jobs(backend.arrays)
        return out
    done = 0
    deadline = time.monotonic() + timeout
    try:
        for report in backend.reports():
            assert isinstance(report, Finished) and report.result.status == "success", report
            done += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done}/{len(tasks)} results after {timeout}s")
    except BaseException:
        backend.cancel(backend.arrays)
        raise
    out["results"] = time.perf_counter() - t0
    print(f"xhelpers: all {done} results recorded {out['results']:.1f}s after submission began")
    return out


def run_plain(root: Path, count: int) -> dict[str, float]:
    executor = submitit.SlurmExecutor(folder=root / "plain")
    executor.update_parameters(time=10)
    executor._throttling = 0.0
    before = SBATCH_CALLS
    jobs: list[Any] = []
    t0 = time.perf_counter()
    try:
        for i in range(count):
            jobs.append(executor.submit(trivial, i))
        submit = time.perf_counter() - t0
    finally:
        cancel_jobs({str(job.job_id) for job in jobs})
    sbatch = SBATCH_CALLS - before
    print(f"plain:    submitted {count} in {submit:.3f}s with {sbatch} sbatch call(s)", flush=True)
    return {"submit": submit, "sbatch": float(sbatch)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="experiments per stage (1000)")
    parser.add_argument("--wait", action="store_true", help="wait for xhelpers' results")
    parser.add_argument("--timeout", type=float, default=3600.0, help="bound on the wait (s)")
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm folders")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        print("no sbatch here: start a cluster with scripts/local-slurm start", file=sys.stderr)
        return 2
    _count_sbatch()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = Path(tempfile.mkdtemp(prefix="xhelpers-bench-", dir=base))
    print(f"folders under {root}; {len(STAGES)} stages x {args.n} experiments", flush=True)
    try:
        mine = run_xhelpers(root / "xhelpers", args.n, args.wait, args.timeout)
        plain = run_plain(root, len(STAGES) * args.n)
    finally:
        deadline = time.monotonic() + 30  # cancelled jobs may still write their logs a moment
        while not args.keep and root.exists() and time.monotonic() < deadline:
            shutil.rmtree(root, ignore_errors=True)
            time.sleep(0.5)
    ratio = mine["submit"] / plain["submit"]
    print()
    print(f"{'':28}{'xhelpers':>12}{'plain':>12}")
    print(f"{'sbatch calls':28}{mine['sbatch']:>12.0f}{plain['sbatch']:>12.0f}")
    print(f"{'submission wall time (s)':28}{mine['submit']:>12.3f}{plain['submit']:>12.3f}")
    verdict = "ok" if ratio <= 0.2 else "ABOVE GOAL"
    print(f"submission time ratio xhelpers/plain: {ratio:.3f} (goal <= 0.2: {verdict})")
    return 0 if ratio <= 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())
