"""Per-experiment overhead of a local run, against a bare process pool.

2,000 experiments that each write a small result.json, run with -j2 through the CLI
(in this process, so interpreter start-up is not counted on either side), against a
hand-written ProcessPoolExecutor(2) doing the same mkdir/chdir/write per task, one task
per submission. The two alternate, and the ratio is that of their medians: on a 2-core
VM one slow moment otherwise decides a whole ratio. Goal: ratio <= 1.25. Folders go to
tmpfs (/dev/shm): disk timings here swing several-fold.

    python benchmarks/local_overhead.py [--n 2000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import xhelpers as xh


def experiment(i: int) -> None:
    with open("result.json", "w") as f:
        json.dump({"i": i, "value": i * i}, f)


def baseline_task(root: str, i: int) -> None:
    folder = os.path.join(root, f"exp_{i}")
    os.makedirs(folder, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        experiment(i)
    finally:
        os.chdir(cwd)


def run_baseline(root: str, n: int) -> float:
    start = time.perf_counter()
    with ProcessPoolExecutor(2) as pool:
        futures = [pool.submit(baseline_task, root, i) for i in range(n)]
        for future in futures:
            future.result()
    return time.perf_counter() - start


def run_xhelpers(root: str, n: int, name: str) -> float:
    xh.ParametrizedExperiments(name, {f"exp_{i}": partial(experiment, i) for i in range(n)})
    start = time.perf_counter()
    try:
        xh.experiment_cli(
            [name, "-j2", "--config", os.path.join(root, "bench_config.py")],
            standalone_mode=False,
        )
    finally:
        elapsed = time.perf_counter() - start
        xh.framework.unregister(name)
    return elapsed


GOAL = 1.25


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    bases, ours = [], []
    for r in range(args.repeat):
        root = tempfile.mkdtemp(prefix="xh-bench-", dir=base)
        try:
            with open(os.path.join(root, "bench_config.py"), "w") as f:
                f.write(f"class Config:\n    output_directory = {os.path.join(root, 'xh')!r}\n")
            t_base = run_baseline(os.path.join(root, "base"), args.n)
            t_xh = run_xhelpers(root, args.n, f"bench{r}")
            done = sum(1 for _ in os.scandir(os.path.join(root, "xh", f"bench{r}")))
            assert done == args.n, done
        finally:
            shutil.rmtree(root)
        bases.append(t_base)
        ours.append(t_xh)
        print(
            f"run {r}: baseline {t_base:.3f}s ({t_base / args.n * 1e3:.3f} ms/exp), "
            f"xhelpers {t_xh:.3f}s ({t_xh / args.n * 1e3:.3f} ms/exp), "
            f"ratio {t_xh / t_base:.2f}"
        )
    ratio = statistics.median(ours) / statistics.median(bases)
    print(
        f"local_overhead: ratio {ratio:.2f} (medians of {args.repeat}; best runs "
        f"{min(ours) / min(bases):.2f}; goal <= {GOAL}) {'OK' if ratio <= GOAL else 'OVER GOAL'}"
    )


if __name__ == "__main__":
    main()
