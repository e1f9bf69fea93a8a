"""Running experiments through the Python API, in this process (-j1) and in workers."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
from conftest import meta
from experiments import (
    TConfig,
    append_run,
    no_config,
    raises,
    record_cwd,
    returns_unserializable,
    uses_pool,
    write_param,
)

import xhelpers as xh


def make_group(name: str = "main") -> xh.ParametrizedExperiments:
    return xh.ParametrizedExperiments(
        name,
        {
            "experiment_1": partial(write_param, param=41),
            "experiment_42": partial(write_param, param=42),
            "some/subdir/experiment_a": partial(write_param, param=1),
        },
        configcls=TConfig,
    )


@pytest.mark.parametrize("jobs", [1, 2])
def test_runs_in_its_folder_and_restores_cwd(tmp_path: Path, jobs: int) -> None:
    group = make_group()
    summary = group(jobs=jobs, quiet=True)
    assert os.getcwd() == str(tmp_path)
    assert summary.exit_code == 0
    assert [o.status for o in summary] == ["success"] * 3
    folder = tmp_path / "results" / "main" / "some" / "subdir" / "experiment_a"
    assert (folder / "result.txt").read_text() == "1"
    data = meta(folder)
    assert data["returned"]["cwd"] == str(folder)
    assert summary["some/subdir/experiment_a"].folder == str(folder)


def test_metafile_records_what_ran(tmp_path: Path) -> None:
    group = make_group()
    group("experiment_1", quiet=True, config={"slacktoken": "xoxb-123-secret"})
    text = (tmp_path / "results/main/experiment_1/metafile.json").read_text()
    assert text.startswith('{"status": "success"')
    assert "xoxb-123-secret" not in text
    data = meta(tmp_path / "results/main/experiment_1")
    assert data["group"] == "main" and data["name"] == "experiment_1"
    for key in (
        "started",
        "ended",
        "duration",
        "host",
        "pid",
        "python",
        "xhelpers",
        "argv",
        "git",
        "function",
        "arguments",
        "fingerprint",
        "config",
        "returned",
    ):
        assert key in data, key
    assert data["function"] == "experiments.write_param"
    assert data["arguments"] == {"args": [], "kwargs": {"param": "41"}}
    assert data["config"]["slacktoken"] == "***"
    assert data["config"]["user_message"] == "Hello world!"
    assert data["pid"] == os.getpid()  # -j1 runs in this process


def test_git_commit_and_dirty_flag_are_recorded(tmp_path: Path) -> None:
    import subprocess

    subprocess.run(["git", "init", "-q"], check=True)
    Path("tracked.txt").write_text("1")
    subprocess.run(["git", "add", "tracked.txt"], check=True)
    subprocess.run(
        ["git", "-c", "user.email=a@b", "-c", "user.name=a", "commit", "-qm", "x"], check=True
    )
    group = xh.ParametrizedExperiments("g", {"a": no_config, "b": no_config})
    group("a", quiet=True)
    git = meta(tmp_path / "results/g/a")["git"]
    assert len(git["commit"]) == 40 and git["dirty"] is False
    Path("tracked.txt").write_text("2")
    group("b", quiet=True)
    assert meta(tmp_path / "results/g/b")["git"]["dirty"] is True


def test_config_is_passed_only_when_accepted(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments(
        "g",
        {
            "takes": partial(write_param, param=1),
            "plain": partial(no_config, value=5),
            "own": partial(write_param, param=2, config={"user_message": "own"}),
        },
        configcls=TConfig,
    )
    summary = group(quiet=True, workers=3)
    assert summary.exit_code == 0
    assert meta(tmp_path / "results/g/takes")["returned"]["workers"] == 3
    assert meta(tmp_path / "results/g/plain")["returned"] == 5
    own = tmp_path / "results/g/own/experiment.log"
    assert meta(tmp_path / "results/g/own")["returned"]["workers"] == 3
    assert "message=own" in own.read_text()


def test_failure_is_recorded_with_traceback_and_others_run(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"bad": raises, "good": no_config})
    summary = group(quiet=True)
    assert summary.exit_code == 1
    assert summary["bad"].status == "failed" and summary["good"].status == "success"
    assert summary["bad"].error == "ValueError: bad value"
    error = meta(tmp_path / "results/g/bad")["error"]
    assert error["type"] == "ValueError" and error["message"] == "bad value\nsecond line"
    assert 'raise ValueError("bad value\\nsecond line")' in error["traceback"]
    assert "experiment.log" in os.listdir(tmp_path / "results/g/bad")
    assert "ValueError: bad value" in (tmp_path / "results/g/bad/experiment.log").read_text()
    assert "g: 1 succeeded, 0 skipped, 1 failed, 0 interrupted" in str(summary)


def test_unserializable_return_value_is_not_an_error(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"x": returns_unserializable})
    assert group(quiet=True).exit_code == 0
    assert meta(tmp_path / "results/g/x")["returned_type"] == "object"


def test_done_is_skipped_failed_reruns_in_place_force_starts_empty(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"a": partial(append_run, "x"), "b": raises})
    first = group(quiet=True)
    assert [o.status for o in first] == ["success", "failed"]
    (tmp_path / "results/g/b/checkpoint.pt").write_text("state")
    (tmp_path / "results/g/a/keep.txt").write_text("mine")
    second = group(quiet=True)
    assert [o.status for o in second] == ["skipped", "failed"]
    assert (tmp_path / "results/g/a/runs.txt").read_text().count("\n") == 1
    data = meta(tmp_path / "results/g/b")
    assert data["runs"] == 2 and data["resumed_from"] == ["checkpoint.pt"]
    assert (tmp_path / "results/g/b/checkpoint.pt").exists()  # nothing of the user's deleted
    third = group("a", force=True, quiet=True)
    assert [o.status for o in third] == ["success"]
    assert not (tmp_path / "results/g/a/keep.txt").exists()
    assert (tmp_path / "results/g/a/runs.txt").read_text().count("\n") == 1
    assert (tmp_path / "results/g/b/checkpoint.pt").exists()  # only that folder emptied


def test_force_never_follows_symlinks_out_of_the_folder(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "data.bin").write_text("keep")
    group = xh.ParametrizedExperiments("g", {"a": no_config})
    group(quiet=True)
    os.symlink(outside, tmp_path / "results/g/a/link")
    group(force=True, quiet=True)
    assert (outside / "data.bin").read_text() == "keep"
    assert not (tmp_path / "results/g/a/link").exists()


def test_running_metafile_of_dead_runner_is_rerun(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"a": partial(append_run, "x")})
    folder = tmp_path / "results/g/a"
    folder.mkdir(parents=True)
    (folder / "metafile.json").write_text('{"status": "running", "pid": 1}')
    (folder / ".xhelpers.lock").write_text("")
    summary = group(quiet=True)
    assert summary["a"].status == "success"
    assert meta(folder)["runs"] == 2


def test_held_lock_means_running_elsewhere(tmp_path: Path) -> None:
    from xhelpers.core.results import ExperimentLock

    group = xh.ParametrizedExperiments("g", {"a": partial(append_run, "x"), "b": no_config})
    folder = tmp_path / "results/g/a"
    folder.mkdir(parents=True)
    (folder / "metafile.json").write_text('{"status": "running", "pid": 1}')
    lock = ExperimentLock(str(folder))
    assert lock.acquire()
    try:
        summary = group(quiet=True)
        assert summary["a"].status == "running elsewhere"
        assert summary.exit_code == 0
        assert not (folder / "runs.txt").exists()
        # --force never runs what another runner holds either
        assert group("a", force=True, quiet=True)["a"].status == "running elsewhere"
        assert (folder / "metafile.json").exists()
    finally:
        lock.release()
    assert group(quiet=True)["a"].status == "success"


def test_lock_taken_between_plan_and_run_is_respected(tmp_path: Path) -> None:
    """A never-run experiment locked by someone else after planning is not run here."""
    from xhelpers.core.results import ExperimentLock

    folder = tmp_path / "results/g/a"
    folder.mkdir(parents=True)
    lock = ExperimentLock(str(folder))
    assert lock.acquire()
    try:
        group = xh.ParametrizedExperiments("g", {"a": partial(append_run, "x")})
        assert group(quiet=True)["a"].status == "running elsewhere"
        assert not (folder / "runs.txt").exists()
    finally:
        lock.release()


def test_experiment_with_its_own_process_pool(tmp_path: Path, start_method: str) -> None:
    group = xh.ParametrizedExperiments("g", {"pool": uses_pool, "other": no_config})
    summary = group(jobs=2, workers=2, quiet=True, config={"start_method": start_method})
    assert summary.exit_code == 0, str(summary)
    assert meta(tmp_path / "results/g/pool")["returned"] == [0, 1, 4, 9]


def test_run_from_python_never_exits(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"bad": raises})
    summary = group(quiet=True)  # would raise SystemExit if it called sys.exit
    assert summary.exit_code == 1
    assert isinstance(summary, xh.RunSummary)


def test_cwd_restored_after_failure(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"bad": raises, "cwd": record_cwd})
    group(quiet=True)
    assert os.getcwd() == str(tmp_path)
    assert meta(tmp_path / "results/g/cwd")["returned"] == str(tmp_path / "results/g/cwd")


def test_output_directory_from_config(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"a": no_config}, configcls=TConfig)
    group(quiet=True, config={"output_directory": str(tmp_path / "elsewhere")})
    assert (tmp_path / "elsewhere/g/a/metafile.json").exists()


def test_spawn_and_fork_give_the_same_result(tmp_path: Path, start_method: str) -> None:
    group = make_group()
    summary = group(jobs=2, quiet=True, config={"start_method": start_method})
    assert summary.exit_code == 0, str(summary)
    data = meta(tmp_path / "results/main/experiment_42")
    assert data["pid"] != os.getpid()
    assert data["fingerprint"] and data["arguments"]["kwargs"] == {"param": "42"}
    assert (tmp_path / "results/main/experiment_42/result.txt").read_text() == "42"


def test_worker_logs_reach_console_and_file_under_every_start_method(
    tmp_path: Path, start_method: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from experiments import logs_levels

    group = xh.ParametrizedExperiments(
        "g", {"logs": logs_levels, "w": partial(write_param, param=3)}
    )
    summary = group(
        jobs=2, loglevel="INFO", console=True, quiet=True, config={"start_method": start_method}
    )
    assert summary.exit_code == 0
    err = capsys.readouterr().err
    assert "[logs] INFO an info line" in err and "[w] INFO param=3" in err
    assert "a debug line" not in err
    log = (tmp_path / "results/g/logs/experiment.log").read_text()
    assert "DEBUG experiments: a debug line" in log and "WARNING experiments: a warning" in log


def test_typing_reexports() -> None:
    from xhelpers.typing import Any, ConfigLike, Optional, PathLike

    assert Any is not None and Optional is not None
    assert PathLike is not None and ConfigLike is not None


def test_summary_entries_hold_name_status_folder_duration_error(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"bad": raises, "ok": no_config})
    summary = group(quiet=True)
    ok, bad = summary["ok"], summary["bad"]
    assert (ok.name, ok.status, ok.error) == ("ok", "success", None)
    assert ok.duration is not None and ok.duration >= 0
    assert bad.folder == str(tmp_path / "results/g/bad") and bad.error
    assert summary.counts()["failed"] == 1 and len(summary) == 2


def test_recheck_under_lock_even_when_this_runner_made_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Runner B makes the folder, runner A runs the experiment in it and finishes before
    B gets the lock: B must see A's success and skip, not run it a second time."""
    from xhelpers.core import results

    real = results.prepare_folder

    def made_then_finished_by_other_runner(folder: str, root: str) -> bool:
        existed = real(folder, root)
        other = results.ExperimentLock(folder)  # the other runner locks, runs, finishes
        assert other.acquire()
        results.write_metafile(folder, {"status": "success", "runs": 1})
        other.release()
        return existed

    monkeypatch.setattr(results, "prepare_folder", made_then_finished_by_other_runner)
    group = xh.ParametrizedExperiments("g", {"a": partial(append_run, "x")})
    summary = group(quiet=True)
    assert summary["a"].status == "skipped"
    assert not (tmp_path / "results/g/a/runs.txt").exists()


def test_short_experiments_never_wait_behind_a_long_one(tmp_path: Path) -> None:
    """With -j2 and one experiment that blocks, all others finish on the other worker."""
    import subprocess
    import sys

    from conftest import write_run_py

    write_run_py(
        tmp_path,
        """
names = {"gate": partial(ex.wait_for_file, started="started", release="../../../release")}
names.update({f"x{i}": partial(ex.no_config, value=i) for i in range(60)})
g = xh.ParametrizedExperiments("g", names)
""",
    )
    proc = subprocess.Popen(
        [sys.executable, "run.py", "g", "-j2"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        from conftest import wait_until

        def all_short_done() -> bool:
            return all(
                xh.results.read_status(str(tmp_path / f"results/g/x{i}")) == "success"
                for i in range(60)
            )

        wait_until(all_short_done, timeout=60, what="the short experiments")
        gate = str(tmp_path / "results/g/gate")  # still running, as -l sees it
        assert xh.results.standing(xh.results.read_metafile(gate), gate) == "running"
    finally:
        (tmp_path / "release").write_text("")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "61 succeeded" in out


def test_nested_runs_keep_each_experiment_log(tmp_path: Path) -> None:
    """An experiment that runs another group in-process: both logs stay whole."""
    from experiments import log

    inner = xh.ParametrizedExperiments("inner", {"i": partial(write_param, param=5)})

    def outer() -> None:
        log.warning("before")
        inner(quiet=True, config_file=False, config={"output_directory": str(tmp_path / "results")})
        log.warning("after")

    xh.ParametrizedExperiments("outer", {"o": outer})(quiet=True)
    text = (tmp_path / "results/outer/o/experiment.log").read_text()
    assert "before" in text and "after" in text
    assert "param=5" in (tmp_path / "results/inner/i/experiment.log").read_text()
