"""Start-up time and memory of a run.py with many registered experiments.

1. ``python run.py --help`` with 10,000 experiments, against the floor of any CLI
   with a pydantic config: a script that imports click and pydantic and defines one
   10-field model. Goal: ratio <= 1.5 (best of several runs each, interleaved).
2. Peak memory (max RSS) of the runner deciding that 100,000 finished experiments
   need no run. Goal: <= 300 MB. Folders go to tmpfs.

    python benchmarks/startup.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

FLOOR = """
import click
import pydantic

class Settings(pydantic.BaseModel):
    a: int = 1
    b: int = 2
    c: str = "c"
    d: str = "d"
    e: float = 0.5
    f: float = 0.25
    g: bool = False
    h: bool = True
    i: list[int] = []
    j: dict[str, int] = {}

@click.command()
def main():
    "A floor."

if __name__ == "__main__":
    main()
"""

RUN_PY = """
from functools import partial
import xhelpers as xh

def train(*, lr, seed, config=None):
    pass

xh.ParametrizedExperiments("main", {{
    f"sweep/lr={{i % 100}}/seed={{i // 100}}": partial(train, lr=i % 100, seed=i // 100)
    for i in range({n})
}})

if __name__ == "__main__":
    xh.experiment_cli()
"""


def timed(cmd: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


MEASURE = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def peak_rss_mb(cmd: list[str], cwd: str) -> float:
    # A fresh parent, so the maximum is over this one command and its children alone.
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, *cmd], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout
    return int(out.strip()) / 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    root = tempfile.mkdtemp(
        prefix="xh-start-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
    )
    try:
        with open(os.path.join(root, "floor.py"), "w") as f:
            f.write(textwrap.dedent(FLOOR))
        with open(os.path.join(root, "run.py"), "w") as f:
            f.write(RUN_PY.format(n=10_000))
        floor, ours = [], []
        for _ in range(args.repeat):  # interleaved, so drift hits both alike
            floor.append(timed([sys.executable, "floor.py", "--help"], root))
            ours.append(timed([sys.executable, "run.py", "--help"], root))
        ratio = min(ours) / min(floor)
        print(
            f"floor (click + pydantic + a 10-field model): {min(floor) * 1e3:.0f} ms; "
            f"run.py --help with 10,000 experiments: {min(ours) * 1e3:.0f} ms"
        )
        print(
            f"startup: ratio {ratio:.2f} (best of {args.repeat}; goal <= 1.5) "
            f"{'OK' if ratio <= 1.5 else 'OVER GOAL'}"
        )

        big = os.path.join(root, "big")
        os.mkdir(big)
        with open(os.path.join(big, "run.py"), "w") as f:
            f.write(RUN_PY.format(n=100_000))
        subprocess.run(
            [sys.executable, "run.py", "main", "-j2"],
            cwd=big,
            check=True,
            stdout=subprocess.DEVNULL,
        )  # now all are done
        mb = peak_rss_mb([sys.executable, "run.py", "main"], big)
        print(
            f"memory: peak RSS {mb:.0f} MB deciding on 100,000 done experiments "
            f"(goal <= 300 MB) {'OK' if mb <= 300 else 'OVER GOAL'}"
        )
    finally:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
