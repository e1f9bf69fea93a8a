"""Seeing and collecting results: -l, --format, --results, stale results, --failed."""

from __future__ import annotations

import csv
import io
import json
import os
import pty
import select
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from conftest import invoke, meta, popen_run_py, run_py, wait_until, write_run_py
from experiments import (
    changed_function,
    no_config,
    raises,
    returns_result,
    wait_for_file,
    write_param,
    writes_result,
)

import xhelpers as xh


@pytest.fixture()
def ran(tmp_path: Path) -> xh.ParametrizedExperiments:
    group = xh.ParametrizedExperiments(
        "g",
        {
            "ok": no_config,
            "bad": raises,
            "never": partial(no_config, value=2),
        },
    )
    group("ok", "bad", quiet=True)
    return group


def test_status_rows_and_formats(ran: xh.ParametrizedExperiments, tmp_path: Path) -> None:
    rows = {r.name: r for r in ran.status()}
    assert rows["ok"].status == "done" and rows["ok"].where == os.uname().nodename
    assert rows["bad"].status == "failed" and rows["bad"].error == "ValueError: bad value"
    assert rows["never"].status == "pending"
    code, out, err = invoke("g", "-l", "--format", "json")
    assert code == 0
    data = json.loads(out)  # stdout holds only the data
    assert [d["name"] for d in data] == ["ok", "bad", "never"]
    assert [d["status"] for d in data] == ["done", "failed", "pending"]
    assert "1 done, 1 failed, 1 pending" in err
    code, out, err = invoke("g", "-l", "--format", "csv")
    table = list(csv.DictReader(io.StringIO(out)))
    assert table[0].keys() >= {"name", "status", "duration", "ended", "where", "error"}
    assert [r["status"] for r in table] == ["done", "failed", "pending"]
    assert "1 done" in err and "1 done" not in out
    code, out, _ = invoke("g", "-l")
    assert out.splitlines()[0].split()[:2] == ["name", "status"]
    assert out.rstrip().endswith("1 done, 1 failed, 1 pending")


def test_running_with_free_lock_shows_interrupted(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("g", {"a": no_config})
    folder = tmp_path / "results/g/a"
    folder.mkdir(parents=True)
    (folder / "metafile.json").write_text('{"status": "running", "host": "h"}')
    assert group.status()[0].status == "interrupted"
    lock = xh.results.ExperimentLock(str(folder))
    assert lock.acquire()
    try:
        assert group.status()[0].status == "running"
    finally:
        lock.release()


def test_results_table_params_and_fields(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments(
        "r",
        {
            "lr=0.1/seed=1": partial(writes_result, lr=0.1, seed=1),
            "lr=0.2/seed=2": partial(writes_result, lr=0.2, seed=2),
            "returned": partial(returns_result, lr=0.5),
            "missing": partial(raises),
        },
    )
    group(quiet=True)
    rows = {r["name"]: r for r in group.results()}
    first = rows["lr=0.1/seed=1"]
    assert first["status"] == "done" and first["lr"] == 0.1 and first["seed"] == 1
    assert first["loss"] == pytest.approx(2.0) and first["result.seed"] == 100
    assert rows["returned"]["loss"] == 0.5 and rows["returned"]["nested"] == {"a": 1}
    assert rows["missing"]["loss"] is None and rows["missing"]["status"] == "failed"
    assert list(first) == [
        *("name", "status", "duration", "lr", "seed", "loss", "result.seed", "nested")
    ]
    code, out, _ = invoke("r", "--results", "--format", "json")
    assert code == 0 and json.loads(out)[0]["result.seed"] == 100
    code, out, _ = invoke("r", "--results", "--format", "csv")
    parsed = list(csv.DictReader(io.StringIO(out)))
    assert parsed[3]["loss"] == "" and parsed[0]["lr"] == "0.1"
    code, out, _ = invoke("r", "--results", "lr=*")
    assert "lr=0.2/seed=2" in out and "returned" not in out
    assert out.splitlines()[0].split() == [
        *("name", "status", "duration", "lr", "seed", "loss", "result.seed")
    ]


def test_stale_results_are_shown_skipped_and_rerun_on_request(tmp_path: Path) -> None:
    xh.ParametrizedExperiments("s", {"a": partial(write_param, param=1), "b": no_config})(
        quiet=True
    )
    xh.framework.unregister("s")
    changed = xh.ParametrizedExperiments("s", {"a": partial(write_param, param=2), "b": no_config})
    assert [r.status for r in changed.status()] == ["stale", "done"]
    code, _, err = invoke("s")
    assert code == 0
    assert "1 stale experiment not rerun" in err and ": a;" in err
    assert "--rerun-stale" in err and err.count("stale experiment") == 1
    assert (tmp_path / "results/s/a/result.txt").read_text() == "1"  # never silently reused
    code, out, _ = invoke("s", "--rerun-stale")
    assert code == 0 and "1 succeeded, 1 skipped" in out
    assert (tmp_path / "results/s/a/result.txt").read_text() == "2"
    assert [r.status for r in changed.status()] == ["done", "done"]


def test_changed_function_is_stale_too(tmp_path: Path) -> None:
    xh.ParametrizedExperiments("s", {"a": partial(write_param, param=1)})(quiet=True)
    xh.framework.unregister("s")
    group = xh.ParametrizedExperiments("s", {"a": partial(changed_function, lr=1)})
    summary = group(quiet=True)
    assert summary["a"].status == "stale" and summary.exit_code == 0
    assert (tmp_path / "results/s/a/metafile.json").exists()  # never silently deleted
    assert group(force=True, quiet=True)["a"].status == "success"


def test_failed_listing_and_retry_failed(tmp_path: Path) -> None:
    xh.ParametrizedExperiments("f", {"bad": raises, "ok": no_config, "never": no_config})
    invoke("f", "bad", "ok")
    code, out, _ = invoke("f", "--failed")
    assert code == 0
    assert "== bad: failed: ValueError: bad value" in out
    assert "ValueError: bad value" in out  # the end of its experiment.log
    assert "results/f/bad/metafile.json" in out
    assert "1 failed or interrupted of 3 selected" in out
    code, out, _ = invoke("f", "--retry-failed")
    assert code == 1
    assert "(1 selected" in out and "never" not in out  # exactly the failed one
    assert meta(tmp_path / "results/f/bad")["runs"] == 2
    assert not (tmp_path / "results/f/never").exists()


def test_completion_of_groups_and_names(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        """
g = xh.ParametrizedExperiments("main", {
    "exp_1": ex.no_config, "exp_2": ex.no_config, "sweep/a=1/s=1": ex.no_config,
    "sweep/a=1/s=2": ex.no_config, "sweep/a=2/s=1": ex.no_config})
other = xh.ParametrizedExperiments("mainly", {"x": ex.no_config})
""",
    )

    def complete(words: str) -> list[str]:
        env = dict(
            os.environ,
            _XHELPERS_COMPLETE="bash_complete",
            COMP_WORDS=words,
            COMP_CWORD=str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        )
        out = subprocess.run(
            [sys.executable, "run.py"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return [line.split(",", 1)[1] for line in out.splitlines()]

    assert complete("run.py mai") == ["main", "mainly"]
    assert complete("run.py main exp") == ["exp_1", "exp_2"]
    assert complete("run.py main sw") == ["sweep/"]
    assert complete("run.py main sweep/a=1/") == ["sweep/a=1/s=1", "sweep/a=1/s=2"]
    assert "--retry-failed" in complete("run.py main --re")


RUN_PROGRESS = """
names = {"gate": partial(ex.wait_for_file, started="started", release="../../../release")}
names.update({f"x{i}": partial(ex.no_config, value=i) for i in range(3)})
g = xh.ParametrizedExperiments("g", names)
"""


def test_progress_line_in_a_real_terminal(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        RUN_PROGRESS
        + """
import logging
g2 = xh.ParametrizedExperiments("talk", {"t": partial(ex.chatty, n=3)})
""",
    )
    pid, fd = pty.fork()
    if pid == 0:  # the child: a runner whose stderr is a terminal
        os.chdir(tmp_path)
        os.execv(sys.executable, [sys.executable, "run.py", "g", "-j2"])
    output = b""
    started = tmp_path / "results/g/gate/started"

    def read_some() -> None:
        nonlocal output
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                output += os.read(fd, 65536)
            except OSError:
                pass

    wait_until(lambda: (read_some(), b"3/4 done" in output)[1], what=f"progress 3/4 in {output!r}")
    assert started.exists()
    (tmp_path / "release").write_text("")
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    text = output.decode()
    assert "\r" in text and "\x1b[K" in text  # redrawn in place
    assert "g: 3/4 done, 1 running, 0 left" in text
    assert "g: 4 succeeded" in text


def test_progress_lines_are_not_garbled_by_log_lines(tmp_path: Path) -> None:
    from xhelpers.core import logs
    from xhelpers.views.progress import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    with logs.console_logging("WARNING"), Progress("g", 10, 2, stream=stream) as progress:
        progress.update("success")
        assert logs._status_line is progress
        sys.stderr, old = stream, sys.stderr
        try:
            import logging

            logging.getLogger("x").warning("a log line")
        finally:
            sys.stderr = old
    text = stream.getvalue()
    # the log line starts on a cleared line and the status line is drawn again after it
    assert "\r\x1b[KWARNING a log line\n\rg: 1/10 done" in text
    assert logs._status_line is None


def test_plain_progress_lines_without_terminal(tmp_path: Path) -> None:
    import threading

    write_run_py(tmp_path, RUN_PROGRESS)
    (tmp_path / "config.py").write_text("class Config:\n    progress_interval_s = 0.05\n")
    proc = popen_run_py(tmp_path, "g", "-j2", "--progress")
    lines: list[str] = []
    assert proc.stderr is not None
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")))
    reader.start()
    # the gate holds the run open: progress lines must come while it waits
    wait_until(
        lambda: any("3/4 done, 1 running, 0 left" in line for line in lines),
        what="a plain progress line",
    )
    (tmp_path / "release").write_text("")
    proc.wait(timeout=60)
    reader.join(timeout=60)
    assert proc.returncode == 0, lines
    progress = [line for line in lines if line.startswith("g: ") and "done," in line]
    assert progress and all("\r" not in line and "\x1b" not in line for line in progress)
    quiet = run_py(tmp_path, "g", "--force")  # not a terminal, no --progress: no lines
    assert "done, " not in quiet.stderr


def test_wait_for_file_is_importable() -> None:
    assert callable(wait_for_file)


def test_big_status_table_looks_like_tabulate() -> None:
    from tabulate import tabulate

    from xhelpers.views.status import _simple_table

    cols = ["name", "status", "duration", "finished", "where", "error"]
    rows = [
        [f"sweep/{i}", "done" if i % 3 else "pending", "0.10s", "", "vm", "E: x" * (i % 2)]
        for i in range(50)
    ]
    assert _simple_table(cols, rows) == tabulate(rows, headers=cols, disable_numparse=True)


def test_results_are_not_stale_between_cli_and_import_and_sets_are_stable(
    tmp_path: Path,
) -> None:
    write_run_py(
        tmp_path,
        """
def f(*, tags, lr):
    return sorted(tags)

g = xh.ParametrizedExperiments("g", {"a": partial(f, tags={"alpha", "beta", "gamma"}, lr=0.1)})
""",
    )
    for seed in ("1", "2"):  # string hashing, and so set order, differs per process
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = run_py(tmp_path, "g", env=env).stdout
        assert "stale" not in out, out
    data = meta(tmp_path / "results/g/a")
    assert data["function"] == "run.f"  # the script's name, not __main__
    code = "import sys; sys.argv = ['x']; import run; print([r.status for r in run.g.status()])"
    imported = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONHASHSEED="3"),
    )
    assert imported.stdout.strip() == "['done']", imported.stderr


def test_unreadable_metafile_is_shown_as_such(tmp_path: Path) -> None:
    group = xh.ParametrizedExperiments("u", {"a": no_config})
    folder = tmp_path / "results/u/a"
    folder.mkdir(parents=True)
    (folder / "metafile.json").write_text('{"status": "succ')  # cut short by a full disk
    row = group.status()[0]
    assert row.status == "unreadable" and row.error and "not readable" in row.error
    assert group(quiet=True)["a"].status == "success"  # a run redoes it
