"""What ``--remote`` adds to a call with nothing changed, against the same run by hand.

A throwaway OpenSSH server on 127.0.0.1 (tests/sshd_server.py) is the remote; a small
project (one group of --n experiments, all done after the first call) goes to a folder
in /dev/shm. After one untimed call (sync, environment made with uv from its cache),
the two alternate --repeat times: ``python run.py main --remote bench`` (local start,
git ls-files, rsync of the unchanged project, the remote check and run) against
``ssh host 'cd folder && .venv/bin/python run.py main'`` typed by hand, each a fresh
process. The difference of the medians is what xhelpers adds. Goal: <= 1 s.

    python benchmarks/remote_overhead.py [--n 20] [--repeat 7]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from sshd_server import ALIAS, start_sshd  # noqa: E402 - tests/ is put on the path above

GOAL_S = 1.0
RUN_PY = """\
from functools import partial
import xhelpers as xh

def experiment(i):
    with open("result.txt", "w") as f:
        f.write(str(i))

xh.ParametrizedExperiments("main", {{f"exp_{{i}}": partial(experiment, i) for i in range({n})}})

if __name__ == "__main__":
    xh.experiment_cli()
"""


def _uv() -> str:
    for candidate in (
        shutil.which("uv"),
        ROOT / ".venv-uv" / "bin" / "uv",
        Path(sys.executable).parents[2] / ".venv-uv" / "bin" / "uv",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    sys.exit("remote_overhead: needs uv (make test installs it in .venv-uv) to make the env")


def _project(base: Path, n: int, ssh_config: Path, remote: Path) -> Path:
    source = base / "xhelpers-src"
    shutil.copytree(ROOT / "xhelpers", source / "xhelpers")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    folder = base / "laptop"
    folder.mkdir()
    (folder / "run.py").write_text(RUN_PY.format(n=n))
    (folder / "requirements.txt").write_text(f"xhelpers @ {source.as_uri()}\n")
    (folder / ".gitignore").write_text("results/\n")
    uv = _uv()
    settings = {
        "host": ALIAS,
        "folder": str(remote),
        "ssh_config": str(ssh_config),
        "python": sys.executable,
        "installer": "uv",
        "install_options": ["--offline"],
        "setup": [f"export PATH={os.path.dirname(uv)}:$PATH"],
    }
    (folder / "config.py").write_text(f"class Config:\n    remote = {{'bench': {settings!r}}}\n")
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    subprocess.run(["git", "-C", str(folder), "add", "run.py", ".gitignore"], check=True)
    return folder


def _timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{shlex.join(argv)} exited {done.returncode}: {done.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    base = Path(
        tempfile.mkdtemp(
            prefix="xh-bench-remote-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
    )
    server = start_sshd(base / "sshd")
    try:
        ssh_config = server.client_config("bench")
        remote = base / "remote"
        folder = _project(base, args.n, ssh_config, remote)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        ours = [sys.executable, "run.py", "main", "--remote", "bench"]
        by_hand = [
            "ssh",
            "-F",
            str(ssh_config),
            ALIAS,
            f"cd {shlex.quote(str(remote))} && .venv/bin/python run.py main",
        ]
        first = _timed(ours, folder, env)
        print(f"first call (sync, environment made, {args.n} experiments run): {first:.2f}s")
        ours_s, hand_s = [], []
        for r in range(args.repeat):
            hand_s.append(_timed(by_hand, folder, env))
            ours_s.append(_timed(ours, folder, env))
            print(
                f"run {r}: by hand {hand_s[-1]:.3f}s, --remote {ours_s[-1]:.3f}s, "
                f"difference {ours_s[-1] - hand_s[-1]:+.3f}s"
            )
        difference = statistics.median(ours_s) - statistics.median(hand_s)
        print(
            f"remote_overhead: --remote adds {difference:+.3f}s (medians of {args.repeat}: "
            f"{statistics.median(ours_s):.3f}s vs {statistics.median(hand_s):.3f}s by hand; "
            f"goal <= {GOAL_S:.0f}s) {'OK' if difference <= GOAL_S else 'OVER GOAL'}"
        )
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
