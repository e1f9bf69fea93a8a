"""Listing 100,000 experiments (-l) and completing their names.

1. ``-l`` on 100,000 experiments (status, duration, finished, host, error, stale check,
   formatted as a table), in this process, against reading and parsing their metafiles
   (``json.load``) in a plain loop. Goal: ratio <= 3.
2. Shell completion of experiment names in a run.py with 10,000 experiments, as the shell
   runs it (a new process). Goal: <= 0.5 s.

    python benchmarks/status_list.py [--n 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial

import xhelpers as xh
from xhelpers.core.fingerprints import fingerprint
from xhelpers.core.results import METAFILE, encode_metafile
from xhelpers.views.status import format_counts, format_status

RUN_PY = """
from functools import partial
import xhelpers as xh

def train(*, lr, seed, config=None):
    pass

xh.ParametrizedExperiments("main", {
    f"sweep/lr={i % 100}/seed={i // 100}": partial(train, lr=i % 100, seed=i // 100)
    for i in range(10_000)
})

if __name__ == "__main__":
    xh.experiment_cli()
"""


def train(*, lr: int, seed: int) -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    tmp = "/dev/shm" if os.path.isdir("/dev/shm") else None
    root = tempfile.mkdtemp(prefix="xh-list-", dir=tmp)
    try:
        fns = {
            f"sweep/lr={i % 100}/seed={i // 100}": partial(train, lr=i % 100, seed=i // 100)
            for i in range(args.n)
        }
        group = xh.ParametrizedExperiments("big", fns)
        body = json.dumps(
            {
                "group": "big",
                "started": "2026-11-22T00:50:46.781+00:00",
                "ended": "2026-11-22T00:50:46.790+00:00",
                "duration": 0.009,
                "host": "node17",
                "pid": 7315,
                "runs": 1,
                "config": {f"field_{k}": k for k in range(20)},
            }
        )[1:-1]
        paths = []
        for name, fn in fns.items():
            folder = os.path.join(root, "big", name)
            os.makedirs(folder)
            fp = fingerprint(fn)
            path = os.path.join(folder, METAFILE)
            with open(path, "w") as f:
                f.write(encode_metafile("success", f'"fingerprint": "{fp}", {body}'))
            paths.append(path)
        ratios = []
        for r in range(args.repeat):
            start = time.perf_counter()
            for path in paths:
                with open(path, "rb") as f:
                    json.loads(f.read())
            t_base = time.perf_counter() - start
            start = time.perf_counter()
            rows = group.status(config={"output_directory": root}, config_file=False)
            text = format_status(rows) + "\n\n" + format_counts(r.status for r in rows)
            t_xh = time.perf_counter() - start
            assert text.rstrip().endswith(f"{args.n} done"), text[-200:]
            ratios.append(t_xh / t_base)
            print(
                f"run {r}: reading metafiles {t_base:.2f}s, -l table {t_xh:.2f}s, "
                f"ratio {t_xh / t_base:.2f}"
            )
        median = sorted(ratios)[len(ratios) // 2]
        print(
            f"status_list: ratio {median:.2f} (median of {args.repeat}; goal <= 3) "
            f"{'OK' if median <= 3 else 'OVER GOAL'}"
        )

        with open(os.path.join(root, "run.py"), "w") as f:
            f.write(RUN_PY)
        env = dict(
            os.environ,
            _XHELPERS_COMPLETE="bash_complete",
            COMP_WORDS="run.py main sweep/lr=1",
            COMP_CWORD="2",
        )
        times = []
        for _ in range(5):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "run.py"],
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            times.append(time.perf_counter() - start)
        assert "sweep/lr=1/" in out, out[:200]
        best = min(times)
        print(
            f"completion: {best * 1e3:.0f} ms with 10,000 experiments (best of 5; "
            f"goal <= 500 ms) {'OK' if best <= 0.5 else 'OVER GOAL'}"
        )
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
