"""Submitting 1,000 experiments to SLURM: xhelpers' SlurmBackend against a plain submitit loop.

    .venv/bin/python benchmarks/slurm_submit.py [-n 1000] [--plain-throttle 0] [--keep]

Needs a SLURM cluster (``scripts/local-slurm start``). Both sides submit the same
trivial function, in the same run, with their folders under /dev/shm:

* xhelpers: ``SlurmBackend.start`` (lock every experiment, one job array per
  ``MaxArraySize``, ``submitted`` markers), then ``reports()`` until every result
  is recorded;
* plain: ``executor.submit`` once per experiment, as a user would write it; its jobs
  are cancelled once submitted (``--plain-wait`` waits for their results instead).

submitit sleeps 0.2 s between two plain submissions by default; this benchmark sets
that throttle to 0 (``--plain-throttle``) so the comparison is against sbatch's own
speed, the harder case for the goal (xhelpers' submission <= 0.2x the plain loop).
Printed: sbatch calls, submission wall time, their ratio, time until all results.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import subprocess
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


def run_xhelpers(root: Path, n: int, poll: float, timeout: float) -> dict[str, float]:
    config = BaseConfig.with_updates(
        {"output_directory": root, "slurm_poll_interval_s": poll, "slurm_timeout_min": 10}
    )
    ctx = RunContext("bench", config, '"xhelpers": "benchmark"')
    tasks = []
    for i in range(n):
        fn = functools.partial(trivial, i)
        description, pass_config, own = describe(fn, config)
        folder = results.experiment_folder(root, "bench", f"e{i:04d}")
        tasks.append(Task(f"e{i:04d}", folder, fn, description, pass_config, own))
    backend = SlurmBackend(ctx)
    backend.cluster_max_array_size  # noqa: B018 - scontrol once, outside the timing (cached)
    before = SBATCH_CALLS
    t0 = time.perf_counter()
    records.submit_marked(backend, tasks, backend.ctx)
    submit = time.perf_counter() - t0
    sbatch = SBATCH_CALLS - before
    print(f"xhelpers: submitted {n} in {submit:.3f}s with {sbatch} sbatch call(s): ", end="")
    print(" ".join(backend.arrays), flush=True)
    done = 0
    deadline = time.monotonic() + timeout
    try:
        for report in backend.reports():
            assert isinstance(report, Finished) and report.result.status == "success", report
            done += 1
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {done}/{n} results after {timeout}s")
    except BaseException:
        backend.cancel(backend.arrays)
        raise
    total = time.perf_counter() - t0
    assert done == n, f"{done}/{n} results"
    print(f"xhelpers: all {n} results recorded {total:.1f}s after submission began", flush=True)
    return {
        "submit": submit,
        "sbatch": float(sbatch),
        "results": total,
        "sacct": float(backend.sacct_calls),
    }


def run_plain(root: Path, n: int, throttle: float, wait: bool, timeout: float) -> dict[str, float]:
    executor = submitit.SlurmExecutor(folder=root / "plain")
    executor.update_parameters(time=10)
    executor._throttling = throttle
    before = SBATCH_CALLS
    jobs: list[Any] = []
    t0 = time.perf_counter()
    try:
        for i in range(n):
            jobs.append(executor.submit(trivial, i))
        submit = time.perf_counter() - t0
        sbatch = SBATCH_CALLS - before
        print(f"plain:    submitted {n} in {submit:.3f}s with {sbatch} sbatch call(s)", flush=True)
        out = {"submit": submit, "sbatch": float(sbatch)}
        if wait:
            deadline = time.monotonic() + timeout
            pending = list(jobs)
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{len(pending)} plain jobs not done after {timeout}s")
                pending = [job for job in pending if not job.done()]
                time.sleep(1.0)
            assert [job.result() for job in jobs] == list(range(n))
            out["results"] = time.perf_counter() - t0
            print(f"plain:    all {n} results {out['results']:.1f}s after submission began")
    except BaseException:
        cancel_jobs({str(job.job_id) for job in jobs})
        raise
    if not wait:  # they would only slow down whatever runs next on the cluster
        cancel_jobs({str(job.job_id) for job in jobs})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="experiments per side (1000)")
    parser.add_argument("--poll", type=float, default=5.0, help="slurm_poll_interval_s (5)")
    parser.add_argument(
        "--plain-throttle", type=float, default=0.0, help="submitit's pause between submits (0)"
    )
    parser.add_argument("--plain-wait", action="store_true", help="also wait for plain results")
    parser.add_argument("--timeout", type=float, default=900.0, help="bound on each wait (900 s)")
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm folders")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        print("no sbatch here: start a cluster with scripts/local-slurm start", file=sys.stderr)
        return 2
    _count_sbatch()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = Path(tempfile.mkdtemp(prefix="xhelpers-bench-", dir=base))
    print(f"folders under {root}; {args.n} experiments per side", flush=True)
    try:
        mine = run_xhelpers(root / "xhelpers", args.n, args.poll, args.timeout)
        plain = run_plain(root, args.n, args.plain_throttle, args.plain_wait, args.timeout)
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
    if "results" in plain:
        print(f"{'all results recorded (s)':28}{mine['results']:>12.1f}{plain['results']:>12.1f}")
    else:
        print(f"{'all results recorded (s)':28}{mine['results']:>12.1f}{'-':>12}")
    print(f"{'sacct calls while waiting':28}{mine['sacct']:>12.0f}")
    verdict = "ok" if ratio <= 0.2 else "ABOVE GOAL"
    print(f"submission time ratio xhelpers/plain: {ratio:.3f} (goal <= 0.2: {verdict})")
    cluster = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True)
    line = [x for x in cluster.stdout.splitlines() if x.startswith("MaxArraySize")]
    print(f"cluster: {line[0].split('=')[1].strip() if line else '?'} MaxArraySize")
    return 0 if ratio <= 0.2 else 1


if __name__ == "__main__":
    sys.exit(main())
