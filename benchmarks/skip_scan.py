"""Deciding that nothing is left to run, with 100,000 finished experiments.

Times a full run call (select, resolve config, read every status, summarize) on a
group whose experiments are all done, against checking the 100,000 metafiles with
``os.path.exists`` in a plain loop. Goal: ratio <= 3. Folders go to tmpfs.
``--recorded arguments`` writes the fingerprints an xhelpers from before fingerprint
scopes wrote (name and arguments only), as a tree looks just after an upgrade.

    python benchmarks/skip_scan.py [--n 100000] [--recorded arguments]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from functools import partial

import xhelpers as xh
from xhelpers.core.fingerprints import fingerprint
from xhelpers.core.results import METAFILE, encode_metafile


def noop(i: int) -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--recorded", choices=["code", "arguments"], default="code")
    args = parser.parse_args()
    root = tempfile.mkdtemp(
        prefix="xh-scan-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    try:
        names = [f"sweep/a={i % 100}/b={i // 100}" for i in range(args.n)]
        group = xh.ParametrizedExperiments(
            "scan", {n: partial(noop, i) for i, n in enumerate(names)}
        )
        for name in names:  # as xhelpers writes them: status, then the fingerprint
            folder = os.path.join(root, "scan", name)
            os.makedirs(folder)
            fp = fingerprint(group.experiments[name], args.recorded)
            body = f'"fingerprint": "{fp}", "group": "scan", "duration": 0.1'
            with open(os.path.join(folder, METAFILE), "w") as f:
                f.write(encode_metafile("success", body))
        ratios = []
        for r in range(args.repeat):
            start = time.perf_counter()
            base = os.path.join(root, "scan")
            found = 0
            for name in names:
                found += os.path.exists(os.path.join(base, name, METAFILE))
            t_base = time.perf_counter() - start
            assert found == args.n
            start = time.perf_counter()
            summary = group(config={"output_directory": root}, config_file=False, quiet=True)
            t_xh = time.perf_counter() - start
            assert summary.counts()["skipped"] == args.n, summary.counts()
            ratios.append(t_xh / t_base)
            print(
                f"run {r}: os.path.exists loop {t_base:.3f}s, xhelpers decides in {t_xh:.3f}s, "
                f"ratio {t_xh / t_base:.2f}"
            )
    finally:
        shutil.rmtree(root)
    median = sorted(ratios)[len(ratios) // 2]
    print(
        f"skip_scan: ratio {median:.2f} (median of {args.repeat}; goal <= 3) "
        f"{'OK' if median <= 3 else 'OVER GOAL'}"
    )


if __name__ == "__main__":
    main()
