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
