"""Tiny experiments through SLURM, end to end: ``python run.py main --slurm`` against
plain submitit ``map_array`` of the same function, in the same invocation.

    .venv/bin/python benchmarks/slurm_throughput.py [-n 1000] [--plain-n 200] [--mode both]

Needs a SLURM cluster (``scripts/local-slurm start``). Each experiment writes one small
file. Measured:

* xhelpers: the CLI as a user runs it (a new process), from the command to its exit,
  when every metafile is final (the runner waits for all results);
* plain: ``executor.map_array(write_one, range(n))`` then ``job.result()`` of each,
  as a user of submitit alone would write it (one sbatch, an array).

The two differ in size (plain is measured on at least 200), so they are compared per
experiment: seconds per experiment of xhelpers over plain's. Goals (issue 13): packed
(``slurm_experiments_per_task = None``: sized by xhelpers) <= 0.1x; unpacked
(``slurm_experiments_per_task = 1``: every experiment its own array task) <= 1.0x.
Folders under /dev/shm; both use the same partition and time limit. submitit's runner
imports numpy in every task; xhelpers' only when ``run.py`` had (see
``xhelpers.backends.slurm.job``): ``--numpy`` makes this study's ``run.py`` import it,
which measures xhelpers' own cost per task with numpy loaded on both sides. Both run from
cached bytecode, as after a pip install: the installed packages and xhelpers' own modules
are compiled first (a machine with PYTHONDONTWRITEBYTECODE set, or a uv install without
--compile-bytecode, would otherwise compile every import from source in every task,
which costs the side that imports more, xhelpers, the more).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

RUN_PY = """
from functools import partial
{imports}
import xhelpers as xh

def write_one(i):
    with open("out.txt", "w") as f:
        f.write(str(i))
    return i

xh.ParametrizedExperiments("main", {{f"e{{i:04d}}": partial(write_one, i)
                                    for i in range({n})}})

if __name__ == "__main__":
    xh.experiment_cli()
"""

CONFIG_PY = """
import xhelpers as xh

class Config(xh.BaseConfig):
    slurm = True
    slurm_timeout_min = 30
    slurm_poll_interval_s = {poll}
    slurm_experiments_per_task = {per_task}
"""


def write_one(i: int) -> int:  # plain submitit's side: the same work, in its folder
    folder = Path(os.environ["BENCH_PLAIN_ROOT"]) / f"e{i:04d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "out.txt").write_text(str(i))
    return i


def run_xhelpers(root: Path, n: int, poll: float, packed: bool, numpy: bool) -> float:
    mode = "packed" if packed else "unpacked"
    study = root / f"xhelpers-{mode}"
    study.mkdir()
    imports = "import numpy" if numpy else ""
    (study / "run.py").write_text(textwrap.dedent(RUN_PY.format(n=n, imports=imports)))
    per_task = "None" if packed else "1"  # None: chosen by xhelpers (see docs: packing)
    (study / "config.py").write_text(
        textwrap.dedent(CONFIG_PY.format(poll=poll, per_task=per_task))
    )
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "run.py", "main"], cwd=study, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"xhelpers run failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    statuses = [
        json.loads((study / "results/main" / f"e{i:04d}" / "metafile.json").read_text())["status"]
        for i in range(n)
    ]
    assert statuses == ["success"] * n, {s: statuses.count(s) for s in set(statuses)}
    print(f"xhelpers {mode}: {n} experiments in {elapsed:.1f}s ({elapsed / n * 1000:.0f} ms each)")
    return elapsed / n


def run_plain(root: Path, n: int) -> float:
    import submitit

    os.environ["BENCH_PLAIN_ROOT"] = str(root / "plain-results")
    executor = submitit.AutoExecutor(folder=root / "plain")
    executor.update_parameters(timeout_min=30, slurm_array_parallelism=256)
    start = time.perf_counter()
    jobs = executor.map_array(write_one, range(n))
    assert [job.result() for job in jobs] == list(range(n))
    elapsed = time.perf_counter() - start
    print(f"plain:    {n} experiments in {elapsed:.1f}s ({elapsed / n * 1000:.0f} ms each)")
    return elapsed / n


def cache_bytecode() -> None:
    """Compile what either side imports, once (see the module docstring)."""
    import compileall
    import sysconfig

    import xhelpers

    for folder in {sysconfig.get_paths()["purelib"], os.path.dirname(xhelpers.__file__)}:
        compileall.compile_dir(folder, quiet=2, workers=0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="xhelpers' experiments (1000)")
    parser.add_argument("--plain-n", type=int, default=200, help="plain's experiments (200)")
    parser.add_argument("--poll", type=float, default=2.0, help="slurm_poll_interval_s (2)")
    parser.add_argument(
        "--mode", choices=("both", "packed", "unpacked"), default="both", help="(both)"
    )
    parser.add_argument(
        "--numpy",
        action="store_true",
        help="run.py imports numpy: xhelpers' tasks then load it first, as plain's always do",
    )
    parser.add_argument("--keep", action="store_true", help="keep the /dev/shm folders")
    args = parser.parse_args()
    if shutil.which("sbatch") is None:
        print("no sbatch here: start a cluster with scripts/local-slurm start", file=sys.stderr)
        return 2
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = Path(tempfile.mkdtemp(prefix="xhelpers-throughput-", dir=base))
    ratios: dict[str, float] = {}
    cache_bytecode()
    try:
        plain = run_plain(root, args.plain_n)
        for packed in (True, False):
            mode = "packed" if packed else "unpacked"
            if args.mode in ("both", mode):
                ratios[mode] = run_xhelpers(root, args.n, args.poll, packed, args.numpy) / plain
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    goals = {"packed": 0.1, "unpacked": 1.0}
    for mode, ratio in ratios.items():
        verdict = "ok" if ratio <= goals[mode] else "ABOVE GOAL"
        print(
            f"slurm_throughput {mode}{' --numpy' * args.numpy}: per experiment "
            f"xhelpers/plain {ratio:.3f} "
            f"(goal <= {goals[mode]}: {verdict})"
        )
    return 0  # a figure to read, not a gate (issue 13 tracks the goal)


if __name__ == "__main__":
    sys.exit(main())
