"""Two runners on one group never run one experiment twice at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import meta, run_py, wait_until, write_run_py

RUN = """
names = {"slow": partial(ex.wait_for_file, started="started", release="../../../release")}
names.update({f"fast_{i}": partial(ex.append_run, "x") for i in range(40)})
g = xh.ParametrizedExperiments("g", names)
"""


def test_second_runner_reports_running_elsewhere(tmp_path: Path) -> None:
    write_run_py(tmp_path, RUN)
    first = subprocess.Popen(
        [sys.executable, "run.py", "g", "slow"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = tmp_path / "results/g/slow/started"
    wait_until(started.exists, what="first runner's experiment")
    second = run_py(tmp_path, "g", "slow")
    assert second.returncode == 0, second.stderr
    assert "1 running elsewhere" in second.stdout
    assert meta(tmp_path / "results/g/slow")["status"] == "running"
    forced = run_py(tmp_path, "g", "slow", "--force")  # never breaks into a live run
    assert "1 running elsewhere" in forced.stdout
    assert started.exists()
    (tmp_path / "release").write_text("")
    _out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert meta(tmp_path / "results/g/slow")["status"] == "success"


def test_two_runners_started_together_run_each_experiment_once(tmp_path: Path) -> None:
    write_run_py(tmp_path, RUN)
    procs = [
        subprocess.Popen(
            [sys.executable, "run.py", "g", "fast_*", "-j2"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    for i in range(40):
        runs = (tmp_path / f"results/g/fast_{i}/runs.txt").read_text().splitlines()
        assert len(runs) == 1, (i, runs)
        assert meta(tmp_path / f"results/g/fast_{i}")["status"] == "success"
    # between them, every experiment succeeded exactly once
    succeeded = sum(int(out.split(" succeeded")[0].rsplit(" ", 1)[-1]) for out, _ in outs)
    assert succeeded == 40


SLOW_LOCK = """
import fcntl, os, time
_flock = fcntl.flock


def _held_back(fd, op):
    # This runner has created (or opened) the lock file and is about to take the lock:
    # it stops here until the test says go, while another runner does all the work.
    if os.environ.get("HOLD_LOCK") and os.readlink(f"/proc/self/fd/{fd}").endswith(
        ".xhelpers.lock"
    ):
        open(os.environ["HOLD_LOCK"] + ".waiting", "w").close()
        deadline = time.monotonic() + 60
        while not os.path.exists(os.environ["HOLD_LOCK"]) and time.monotonic() < deadline:
            time.sleep(0.01)
    return _flock(fd, op)


fcntl.flock = _held_back
names = {"a": partial(ex.append_run, "x")}
g = xh.ParametrizedExperiments("g", names)
"""


def test_runner_that_made_the_lock_file_rechecks_after_another_ran_it(tmp_path: Path) -> None:
    """Finding 1 of the soak: runner A creates the lock file, runner B takes the lock on
    it first and runs the experiment to success; A then gets the lock and must skip."""
    import os

    write_run_py(tmp_path, SLOW_LOCK)
    go = tmp_path / "go"
    held = subprocess.Popen(
        [sys.executable, "run.py", "g"],
        cwd=tmp_path,
        env=dict(os.environ, HOLD_LOCK=str(go)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_until((tmp_path / "go.waiting").exists, what="runner A at its flock")
    assert (tmp_path / "results/g/a/.xhelpers.lock").exists()
    other = run_py(tmp_path, "g")
    assert other.returncode == 0, other.stderr
    assert "1 succeeded" in other.stdout
    go.write_text("")
    out, err = held.communicate(timeout=60)
    assert held.returncode == 0, err
    assert "1 skipped" in out, out
    assert len((tmp_path / "results/g/a/runs.txt").read_text().splitlines()) == 1
    assert meta(tmp_path / "results/g/a")["runs"] == 1
