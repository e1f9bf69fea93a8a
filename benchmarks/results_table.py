"""The results table of 100,000 experiments (--results), and aggregating it (--by).

1. ``--results`` on 100,000 done experiments (status with the stale check, the
   parameters each metafile recorded, metrics from the returned dict and result.json,
   formatted as a table), in this process, against reading and parsing their metafiles
   and result files (``json.loads``) in a plain loop. Goal: ratio <= 3.
2. ``--by lr`` on the same table: building the DataFrame and aggregating its rows
   (count, mean, std, min, max of each metric over the seeds), beyond (1), pandas
   imported beforehand. Goal: < 1 s. Needs pandas (``pip install 'xhelpers[frames]'``).

    python benchmarks/results_table.py [--n 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from functools import partial

import xhelpers as xh
from xhelpers.core.fingerprints import Fingerprints
from xhelpers.core.results import METAFILE, encode_metafile
from xhelpers.views.frames import aggregate, to_frame
from xhelpers.views.results import collect_table, format_results


def train(*, lr: float, seed: int, layers: int = 2) -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = tempfile.mkdtemp(prefix="xh-results-", dir=tmp)
    try:
        fns = {
            f"lr={i % 100}/seed={i // 100}": partial(train, lr=(i % 100) / 1000, seed=i // 100)
            for i in range(args.n)
        }
        group = xh.ParametrizedExperiments("big", fns)
        fps = Fingerprints("code")
        paths = []
        for i, (name, fn) in enumerate(fns.items()):
            folder = os.path.join(root, "big", name)
            os.makedirs(folder)
            body = json.dumps(
                {
                    "fingerprint": fps(fn),
                    "function": "results_table.train",
                    "arguments": {
                        "args": [],
                        "kwargs": {k: repr(v) for k, v in fn.keywords.items()},
                    },
                    "group": "big",
                    "started": "2026-11-22T00:50:46.781+00:00",
                    "host": "node17",
                    "runs": 1,
                    "config": {f"field_{k}": k for k in range(20)},
                    "ended": "2026-11-22T00:50:46.790+00:00",
                    "duration": 0.009,
                    "returned": {"loss": 1 / (i + 1), "steps": i},
                }
            )[1:-1]
            with open(os.path.join(folder, METAFILE), "w") as f:
                f.write(encode_metafile("success", body))
            with open(os.path.join(folder, "result.json"), "w") as f:
                json.dump({"acc": (i % 997) / 997, "per_class": [0.5, 0.25]}, f)
            paths.append(folder)
        config = {"output_directory": root}
        try:  # its import (about 0.5 s, once per process) is not the aggregation's cost
            import pandas  # noqa: F401
        except ImportError:
            pass
        ratios, aggregations = [], []
        for r in range(args.repeat):
            start = time.perf_counter()
            for folder in paths:
                with open(os.path.join(folder, METAFILE), "rb") as f:
                    json.loads(f.read())
                with open(os.path.join(folder, "result.json"), "rb") as f:
                    json.loads(f.read())
            t_base = time.perf_counter() - start
            start = time.perf_counter()
            table = collect_table(group, config=config, config_file=False)
            text = format_results(table)
            t_xh = time.perf_counter() - start
            assert len(table.rows) == args.n and table.rows[0]["status"] == "done", table.rows[0]
            assert text.count("\n") == args.n + 1
            ratios.append(t_xh / t_base)
            line = f"run {r}: reading files {t_base:.2f}s, --results table {t_xh:.2f}s"
            try:
                start = time.perf_counter()
                agg = aggregate(to_frame(table), ["lr"])
                aggregations.append(time.perf_counter() - start)
                assert len(agg) == min(100, args.n) and int(agg["used"].sum()) == args.n
                line += f", --by lr {aggregations[-1]:.2f}s more"
            except xh.errors.MissingDependencyError as exc:
                line += f" (--by not measured: {exc})"
            print(f"{line}; ratio {t_xh / t_base:.2f}")
        median = sorted(ratios)[len(ratios) // 2]
        print(
            f"results_table: ratio {median:.2f} (median of {args.repeat}; goal <= 3) "
            f"{'OK' if median <= 3 else 'OVER GOAL'}"
        )
        if aggregations:
            slowest = max(aggregations)
            print(
                f"results_table: --by over {args.n} rows adds {slowest:.2f}s at most "
                f"(goal < 1 s) {'OK' if slowest < 1 else 'OVER GOAL'}"
            )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
