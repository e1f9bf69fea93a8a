"""What dependencies cost a run that has nothing to do, and ``-l``.

10,000 finished experiments: 5,000 "train/<i>" and 5,000 "eval/<i>", each eval using
four trains (20,000 edges), against the same 10,000 without edges. Each side is run
once to make its results, then timed deciding that everything is done (a run that
skips all) and listing it (``-l``), in this process. Goals: the run with edges takes at
most 1 s more than without; ``-l`` with edges at most 3x reading every metafile with
``json.load``. Folders go to tmpfs (/dev/shm).

    python benchmarks/pipeline_plan.py [--n 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import statistics
import tempfile
import time
from functools import partial

import xhelpers as xh

PLAN_GOAL_S = 1.0
LIST_GOAL = 3.0


def train(i: int) -> None:
    pass


def evaluate(i: int, models: object = None) -> None:
    pass


def define(name: str, n: int, edges: bool) -> xh.ParametrizedExperiments:
    experiments: dict[str, object] = {f"train/{i}": partial(train, i) for i in range(n)}
    for i in range(n):
        if edges:
            ups = [xh.upstream(name, f"train/{(i + k) % n}") for k in range(4)]
            experiments[f"eval/{i}"] = partial(evaluate, i, models=ups)
        else:
            experiments[f"eval/{i}"] = partial(evaluate, i)
    return xh.ParametrizedExperiments(name, experiments)  # type: ignore[arg-type]


def timed(fn: object, *args: object, **kwargs: object) -> float:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        fn(*args, **kwargs)  # type: ignore[operator]
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = tempfile.mkdtemp(prefix="xh-bench-", dir=base)
    config = {"output_directory": os.path.join(root, "xh")}
    try:
        groups = {edges: define(f"g{int(edges)}", args.n, edges) for edges in (False, True)}
        for group in groups.values():
            summary = group(jobs=2, config=config, quiet=True, config_file=False)
            assert summary.exit_code == 0, summary
        plans: dict[bool, list[float]] = {False: [], True: []}
        lists: list[float] = []
        reads: list[float] = []
        for _ in range(args.repeat):
            for edges, group in groups.items():
                plans[edges].append(timed(group, config=config, quiet=True, config_file=False))
            lists.append(timed(groups[True].status, config=config, config_file=False))
            folder = os.path.join(root, "xh", "g1")
            start = time.perf_counter()
            for dirpath, _, files in os.walk(folder):
                if "metafile.json" in files:
                    with open(os.path.join(dirpath, "metafile.json")) as f:
                        json.load(f)
            reads.append(time.perf_counter() - start)
    finally:
        shutil.rmtree(root)
    without, with_edges = statistics.median(plans[False]), statistics.median(plans[True])
    extra = with_edges - without
    ratio = statistics.median(lists) / statistics.median(reads)
    print(
        f"pipeline_plan: {2 * args.n} done experiments: run deciding all done "
        f"{without:.3f}s without edges, {with_edges:.3f}s with {4 * args.n} "
        f"(+{extra:.3f}s; goal <= +{PLAN_GOAL_S}s) {'OK' if extra <= PLAN_GOAL_S else 'OVER GOAL'}"
    )
    print(
        f"pipeline_list: -l with edges {statistics.median(lists):.3f}s vs json.load of every "
        f"metafile {statistics.median(reads):.3f}s: ratio {ratio:.2f} (goal <= {LIST_GOAL}) "
        f"{'OK' if ratio <= LIST_GOAL else 'OVER GOAL'}"
    )


if __name__ == "__main__":
    main()
