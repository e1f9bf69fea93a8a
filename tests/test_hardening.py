"""The three rules under the faults a soak found (issue 9): each on real processes.

A killed worker, a killed runner, a full disk, odd entries and symlinks in the result
tree, names the filesystem cannot hold: each costs only its own experiment, is said in
one line, and leaves every other result intact.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
from conftest import meta, pid_alive, popen_run_py, run_py, wait_until, write_run_py
from experiments import DiesOnReceive, FailsOnReceive, no_config

import xhelpers as xh
from xhelpers.core import results
from xhelpers.errors import ConfigError, ExperimentDefinitionError
from xhelpers.views.progress import Progress


def tmp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob(".metafile.json.tmp*")]


# -- 2. a killed worker never crashes the runner -------------------------------------------
def test_worker_dying_as_it_receives_its_task_fails_only_that_one(
    tmp_path: Path, start_method: str
) -> None:
    experiments = {
        "dies": partial(no_config, value=DiesOnReceive()),
        "unloadable": partial(no_config, value=FailsOnReceive()),
        "unpicklable": partial(no_config, value=lambda: 1),
    }
    experiments.update({f"ok_{i}": partial(no_config, value=i) for i in range(6)})
    group = xh.ParametrizedExperiments("g", experiments)
    summary = group(jobs=2, quiet=True, config={"start_method": start_method})
    assert summary.exit_code == 1
    expected = {
        "dies": "worker process killed by SIGKILL (9)",
        "unloadable": "could not unpickle it: RuntimeError: this argument cannot be loaded",
        "unpicklable": "cannot be sent to a worker process",
    }
    for name, message in expected.items():
        outcome = summary[name]
        assert outcome.status == "failed", (name, outcome)
        assert outcome.error is not None and message in outcome.error, (name, outcome.error)
        data = meta(tmp_path / "results/g" / name)  # made by the runner: nothing ran there
        assert data["status"] == "failed" and message in data["error"]["message"]
        assert data["name"] == name and data["group"] == "g"
    for i in range(6):
        assert summary[f"ok_{i}"].status == "success"
    # they run again next time (and fail again, the same way)
    again = group(jobs=2, quiet=True, config={"start_method": start_method})
    assert again["dies"].status == "failed" and again["ok_0"].status == "skipped"


# -- 3. no orphans, whatever dies ------------------------------------------------------------
RUN_BLOCKING = """
names = {f"block_{i}": partial(ex.block_with_child, started=f"{i}.started") for i in range(2)}
names.update({f"later_{i}": partial(ex.no_config, value=i) for i in range(3)})
g = xh.ParametrizedExperiments("g", names)
"""


@pytest.mark.parametrize("start_method", ["fork", "spawn"])
def test_kill_9_of_the_runner_ends_its_workers_and_their_children(
    tmp_path: Path, start_method: str
) -> None:
    write_run_py(tmp_path, RUN_BLOCKING)
    (tmp_path / "config.py").write_text(f"class Config:\n    start_method = {start_method!r}\n")
    runner = subprocess.Popen(
        [sys.executable, "run.py", "g", "-j2"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    started = [tmp_path / f"results/g/block_{i}/{i}.started" for i in range(2)]
    wait_until(lambda: all(p.exists() and p.read_text() for p in started), what="experiments")
    pids = [int(x) for p in started for x in p.read_text().split()]  # workers and children
    assert all(pid_alive(pid) for pid in pids)
    os.kill(runner.pid, signal.SIGKILL)  # the runner alone, as the soak did
    runner.wait(timeout=30)
    wait_until(lambda: not any(pid_alive(pid) for pid in pids), timeout=15, what="no orphans")
    for i in range(2):  # told like Ctrl-C first: they recorded themselves
        folder = tmp_path / f"results/g/block_{i}"
        wait_until(lambda f=folder: not results.is_locked(str(f)), what="locks released")
        assert meta(folder)["status"] == "interrupted"
    listed = run_py(tmp_path, "g", "-l")
    assert "2 interrupted" in listed.stdout and "running" not in listed.stdout
    assert run_py(tmp_path, "g", "later_*").returncode == 0


def test_runner_ended_normally_leaves_no_reaper(tmp_path: Path) -> None:
    """The guard process ends with the pool: a finished run leaves nothing behind."""
    write_run_py(tmp_path, 'g = xh.ParametrizedExperiments("g", {"a": ex.no_config})\n')
    proc = run_py(tmp_path, "g", "-j2")
    assert proc.returncode == 0, proc.stderr
    reapers = subprocess.run(
        ["pgrep", "-f", f"reaper.py {os.getpid()}"], capture_output=True, text=True
    )
    assert reapers.stdout == ""


# -- 4. a full disk ends in a summary, and nothing false -----------------------------------
@contextlib.contextmanager
def small_disk(path: Path, size: str = "256k") -> Iterator[Path]:
    """A tmpfs of ``size`` at ``path`` (root only: mount needs it)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(disk: Path) -> Path:
    """Fill ``disk`` to the last byte; returns the filler to delete."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 4096)
    return filler


def use_output_directory(project: Path, folder: Path) -> None:
    (project / "config.py").write_text(f"class Config:\n    output_directory = {str(folder)!r}\n")


RUN_SMALL = """
names = {f"ok_{i}": partial(ex.no_config, value=i) for i in range(3)}
names["fills"] = ex.fills_disk
g = xh.ParametrizedExperiments("g", names)
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_full_disk_fails_the_experiments_with_a_summary(tmp_path: Path, jobs: str) -> None:
    with small_disk(tmp_path / "disk") as disk:
        write_run_py(tmp_path, RUN_SMALL)
        use_output_directory(tmp_path, disk)
        assert run_py(tmp_path, "g", "ok_0").returncode == 0  # the group folder exists
        filler = fill(disk)
        proc = run_py(tmp_path, "g", "ok_*", f"-j{jobs}")
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "0 succeeded, 1 skipped, 2 failed" in proc.stdout, proc.stdout
        for i in (1, 2):
            line = next(ln for ln in proc.stdout.splitlines() if f" ok_{i}:" in ln)
            assert "No space left on device" in line, proc.stdout
        assert tmp_files(disk) == []
        filler.unlink()
        again = run_py(tmp_path, "g", "ok_*", f"-j{jobs}")
        assert again.returncode == 0 and "2 succeeded, 1 skipped" in again.stdout
        assert tmp_files(disk) == []


def test_disk_filled_by_the_experiment_is_never_success(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        write_run_py(tmp_path, RUN_SMALL)
        use_output_directory(tmp_path, disk)
        proc = run_py(tmp_path, "g", "fills")
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "could not be recorded: No space left on device" in proc.stdout, proc.stdout
        folder = disk / "g/fills"
        status = json.loads((folder / "metafile.json").read_text())["status"]
        assert status in ("running", "failed")  # whatever still fitted: never success
        listed = run_py(tmp_path, "g", "fills", "-l")
        assert "done" not in listed.stdout and "success" not in listed.stdout
        assert tmp_files(disk) == []
        (folder / "filler.bin").unlink()
        again = run_py(tmp_path, "g", "fills", "--force")
        assert again.returncode == 1  # it fills the disk again: failed again, truthfully


def test_short_write_never_replaces_the_metafile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "e"
    folder.mkdir()
    results.write_metafile(str(folder), {"status": "running", "runs": 1})
    before = (folder / "metafile.json").read_bytes()
    real_write = os.write
    calls = []

    def short_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, bytes(data[: len(data) // 2]))  # what a nearly full disk does
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", short_then_full)
    with pytest.raises(OSError, match="No space left"):
        results.write_metafile(str(folder), {"status": "success", "runs": 1, "x": "y" * 200})
    monkeypatch.undo()
    assert len(calls) == 2
    assert (folder / "metafile.json").read_bytes() == before
    assert tmp_files(tmp_path) == []


def test_cut_short_success_metafile_is_never_done(tmp_path: Path) -> None:
    write_run_py(tmp_path, 'g = xh.ParametrizedExperiments("g", {"a": ex.append_run})\n')
    assert run_py(tmp_path, "g").returncode == 0
    metafile = tmp_path / "results/g/a/metafile.json"
    text = metafile.read_bytes()
    metafile.write_bytes(text[: len(text) - 40])  # a success cut short, as by a full disk
    assert results.read_heads(str(tmp_path / "results/g"), ["a"]) == [(None, None)]
    listed = run_py(tmp_path, "g", "-l")
    assert "unreadable" in listed.stdout
    proc = run_py(tmp_path, "g")
    assert "1 succeeded" in proc.stdout, proc.stdout  # rerun, not skipped
    assert len((tmp_path / "results/g/a/runs.txt").read_text().splitlines()) == 2
    assert meta(tmp_path / "results/g/a")["status"] == "success"


# -- 5. odd filesystem entries fail only their own experiment ------------------------------
RUN_ODD = """
names = {n: partial(ex.no_config, value=1) for n in
         ["ok_1", "meta_dir", "is_file", "under/a", "ok_2"]}
g = xh.ParametrizedExperiments("g", names)
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_odd_entries_fail_their_experiment_alone(tmp_path: Path, jobs: str) -> None:
    write_run_py(tmp_path, RUN_ODD)
    base = tmp_path / "results/g"
    (base / "meta_dir/metafile.json").mkdir(parents=True)
    (base / "is_file").write_text("not a folder")
    (base / "under").write_text("not a folder either")
    proc = run_py(tmp_path, "g", f"-j{jobs}")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "2 succeeded, 0 skipped, 3 failed" in proc.stdout, proc.stdout
    lines = {ln.split(":")[0].split()[-1]: ln for ln in proc.stdout.splitlines()[1:]}
    assert "meta_dir/metafile.json is not a file" in lines["meta_dir"]
    assert "is_file is a file" in lines["is_file"]
    assert "results/g/under is a file" in lines["under/a"]
    assert (base / "is_file").read_text() == "not a folder"  # nothing of it was touched
    listed = run_py(tmp_path, "g", "-l")
    assert listed.returncode == 0 and "Traceback" not in listed.stderr


# -- 6. nothing outside the tree, ever -------------------------------------------------------
@pytest.mark.parametrize("link", ["folder", "parent", "group"])
def test_symlink_out_of_the_tree_is_never_followed(tmp_path: Path, link: str) -> None:
    write_run_py(tmp_path, 'g = xh.ParametrizedExperiments("g", {"sub/a": ex.append_run})\n')
    outside = tmp_path / "outside"
    (outside / "a").mkdir(parents=True)
    (outside / "a/precious.txt").write_text("keep me")
    (outside / "precious.txt").write_text("keep me too")
    base = tmp_path / "results/g"
    if link == "folder":  # results/g/sub/a -> outside/a
        (base / "sub").mkdir(parents=True)
        (base / "sub/a").symlink_to(outside / "a")
        named = base / "sub/a"
    elif link == "parent":  # results/g/sub -> outside
        base.mkdir(parents=True)
        (base / "sub").symlink_to(outside)
        named = base / "sub"
    else:  # results/g -> outside
        (tmp_path / "results").mkdir()
        base.symlink_to(outside)
        named = base
    before = sorted(str(p) for p in outside.rglob("*"))
    for args in (["g"], ["g", "--force"], ["g", "-j2", "--force"]):
        proc = run_py(tmp_path, *args)
        assert proc.returncode == 1, proc.stderr
        assert "Traceback" not in proc.stderr
        assert f"{named} is a symlink to {outside}" in proc.stdout, proc.stdout
        assert sorted(str(p) for p in outside.rglob("*")) == before
    assert (outside / "a/precious.txt").read_text() == "keep me"


def test_links_inside_the_tree_and_a_linked_output_directory_are_followed(
    tmp_path: Path,
) -> None:
    names = '{"x/a": ex.append_run, "y": ex.append_run}'
    write_run_py(tmp_path, f'g = xh.ParametrizedExperiments("g", {names})\n')
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "results").symlink_to(scratch)  # results kept on a scratch filesystem
    (scratch / "g/elsewhere").mkdir(parents=True)
    (scratch / "g/x").symlink_to(scratch / "g/elsewhere")  # a link that stays in the tree
    proc = run_py(tmp_path, "g")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert meta(scratch / "g/elsewhere/a")["status"] == "success"
    assert meta(scratch / "g/y")["status"] == "success"


# -- 8. names the filesystem cannot hold fail at definition ---------------------------------
def test_lone_surrogate_and_overlong_names_are_definition_errors() -> None:
    for name, why in [("bad\udc80name", "lone surrogate"), ("x/" * 1600 + "y", "longer than")]:
        with pytest.raises(ExperimentDefinitionError) as info:
            xh.ParametrizedExperiments("g", {name: no_config, "fine": no_config}, register=False)
        assert why in str(info.value) and len(str(info.value).splitlines()) == 1


def test_names_too_long_under_this_output_directory_fail_before_running(tmp_path: Path) -> None:
    deep = "d" * 200 + "/" + "e" * 200
    long_name = "/".join(["n" * 250] * 12)  # fine alone, too long under a deep tree
    names = f"{{{long_name!r}: ex.append_run, 'ok': ex.append_run}}"
    write_run_py(tmp_path, f"g = xh.ParametrizedExperiments('g', {names})\n")
    (tmp_path / "config.py").write_text(
        f"class Config:\n    output_directory = {str(tmp_path / deep / deep / deep)!r}\n"
    )
    proc = run_py(tmp_path, "g")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "would exceed the path limit" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / deep).exists()  # nothing ran, not even the short one


def test_config_file_that_exits_says_so(tmp_path: Path) -> None:
    write_run_py(tmp_path, 'g = xh.ParametrizedExperiments("g", {"a": ex.append_run})\n')
    (tmp_path / "config.py").write_text("import sys\nsys.exit(3)\nclass Config:\n    pass\n")
    proc = run_py(tmp_path, "g")
    assert proc.returncode == 2
    assert "called sys.exit(3) (line 2)" in proc.stderr, proc.stderr
    with pytest.raises(ConfigError, match=r"sys\.exit"):
        xh.config.load_machine_values("config.py")


# -- 9. views tell the truth ----------------------------------------------------------------
class _Stream:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines.append(text)

    def flush(self) -> None:
        pass


def test_progress_counts_interrupted_apart_and_only_what_runs() -> None:
    stream = _Stream()
    progress = Progress("g", 45, 2, stream=stream)  # type: ignore[arg-type]
    running = [2]
    progress.running = lambda: running[0]
    assert "0/45 done, 2 running, 43 left" in progress.text()
    running[0] = 0  # after Ctrl-C: nothing runs any more
    progress.update("interrupted")
    progress.update("interrupted")
    text = progress.text()
    assert "0/45 done, 2 interrupted, 0 running, 43 left" in text, text
    assert "failed" not in text
    progress.update("failed")
    assert "1 failed, 2 interrupted" in progress.text()


def test_progress_line_after_ctrl_c_agrees_with_the_summary(tmp_path: Path) -> None:
    """The live line of a real run (plain lines off a terminal) counts like the summary."""
    write_run_py(tmp_path, RUN_BLOCKING)
    (tmp_path / "config.py").write_text("class Config:\n    progress_interval_s = 0.05\n")
    proc = popen_run_py(tmp_path, "g", "-j2", "--progress")
    started = [tmp_path / f"results/g/block_{i}/{i}.started" for i in range(2)]
    wait_until(lambda: all(p.exists() and p.read_text() for p in started), what="experiments")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "0 failed, 2 interrupted" in out
    lines = [ln for ln in err.splitlines() if ln.startswith("g: ")]
    assert lines, err
    assert all("failed" not in ln for ln in lines), lines
    assert "2 interrupted, 0 running" in lines[-1], lines
