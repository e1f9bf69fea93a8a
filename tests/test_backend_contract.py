"""What every backend must do, asked of every registered one: the built-in backends,
and a third-party one (tests/plugin: ``inline``) that only its entry point registers.

Real processes throughout, and the real SLURM cluster for ``slurm`` (skipped without
one, failed when XHELPERS_REQUIRE_SLURM=1): outcomes are recorded by the core, a
raising experiment fails alone, Ctrl-C stops a waiting run (or, for a backend whose
jobs run apart, only the waiting), a backend that can detach survives its submitter's
session and is followed, skipped and cancelled from other processes, states and
cancel answer any process about any ref, and no backend writes a metafile itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from conftest import TESTS, meta, run_py, wait_until, write_run_py
from slurm_support import SlurmCluster

import xhelpers as xh
from xhelpers.backends import Backend, backend_names, get_backend
from xhelpers.core import results

PLUGIN = TESTS / "plugin"  # xh_inline_backend.py and the dist-info naming its entry point
sys.path.insert(0, str(PLUGIN))  # before the parameters are read: as an installed package
BACKENDS = backend_names()
GARBAGE = ["", "abc", "12_", "1;rm -rf /", "99999999999", "host:1:2", "inline:x", "a:1:2:detached"]

RUN = """
import sys, json
g = xh.ParametrizedExperiments("g", {"ok": partial(ex.no_config, value=3), "bad": ex.raises})
held = xh.ParametrizedExperiments("h", {
    f"w{i}": partial(ex.wait_for_file, started="started", release="../../../release",
                     timeout=150) for i in range(2)
})
pipe = xh.ParametrizedExperiments("p", {
    "a": partial(ex.no_config, value=1),
    "b": partial(ex.no_config, value=xh.upstream("p", "a")),
    "c": ex.raises,
    "d": partial(ex.no_config, value=xh.upstream("p", "c")),
})
if __name__ == "__main__" and sys.argv[1] == "api":  # api BACKEND GROUP JOBS wait|nowait
    group = {"g": g, "h": held, "p": pipe}[sys.argv[3]]
    summary = group(backend=sys.argv[2], jobs=int(sys.argv[4]), wait=sys.argv[5] == "wait")
    sys.exit(summary.exit_code)
"""


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A backend's name, with a project in tmp_path set up for it."""
    name = str(request.param)
    config = "class Config:\n    slurm_timeout_min = 5\n    slurm_poll_interval_s = 0.5\n"
    if name == "slurm":
        cluster: SlurmCluster = request.getfixturevalue("slurm_cluster")
        config += f"    slurm_partition = {cluster.partition!r}\n"
    write_run_py(tmp_path, RUN)
    (tmp_path / "config.py").write_text(config)
    # SLURM jobs and detached runs import the tests' modules as the submitter does
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), str(PLUGIN)]))
    return name


def py(folder: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return run_py(folder, *args, timeout=timeout, stdin=subprocess.DEVNULL)


ASK = """
import json, sys
from xhelpers.backends import get_backend
cls = get_backend(sys.argv[1])
refs = json.loads(sys.argv[3])
if sys.argv[2] == "states":
    print(json.dumps({r: s.state.value for r, s in cls.states(refs).items()}))
else:
    print(json.dumps(cls.cancel(refs)))
"""


def ask(backend: str, verb: str, refs: list[str]) -> dict[str, Any]:
    """``states`` or ``cancel`` of ``refs``, from a new interpreter."""
    proc = subprocess.run(
        [sys.executable, "-c", ASK, backend, verb, json.dumps(refs)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    answer: dict[str, Any] = json.loads(proc.stdout)
    return answer


def listing(folder: Path, group: str) -> dict[str, str]:
    proc = py(folder, group, "-l", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    return {row["name"]: row["status"] for row in json.loads(proc.stdout)}


# -- the registry ---------------------------------------------------------------------------
def test_every_backend_is_registered_and_declares_its_capabilities() -> None:
    assert {"local", "slurm", "inline"} <= set(BACKENDS)  # inline: by its entry point only
    for name in BACKENDS:
        cls = get_backend(name)
        assert issubclass(cls, Backend) and cls.name == name and cls.label
        for flag in (cls.can_detach, cls.can_requeue, cls.marks_submitted):
            assert isinstance(flag, bool)
    assert get_backend("inline").__module__ == "xh_inline_backend"


# -- outcomes, faults, and who writes metafiles ------------------------------------------------
@pytest.fixture()
def writers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """Log who writes each metafile (in this process and in forked workers): the
    module that calls the writer, and which core function a non-core caller entered."""
    log = tmp_path / "writers.jsonl"
    real = results.write_metafile

    def spy(*args: Any, **kwargs: Any) -> Any:
        frame: FrameType | None = sys._getframe(1)
        chain = []
        while frame is not None:
            chain.append((str(frame.f_globals.get("__name__")), frame.f_code.co_name))
            frame = frame.f_back
        inside = 0
        while inside < len(chain) and chain[inside][0].startswith("xhelpers.core."):
            inside += 1
        entry = chain[inside - 1] if inside else None
        caller = chain[inside][0] if inside < len(chain) else ""
        with open(log, "a") as f:
            f.write(json.dumps({"writer": chain[0][0], "entry": entry, "caller": caller}) + "\n")
        return real(*args, **kwargs)

    monkeypatch.setattr(results, "write_metafile", spy)
    yield log


def test_outcomes_and_a_fault_are_recorded_by_the_core(
    backend: str, tmp_path: Path, writers: Path
) -> None:
    from experiments import no_config, raises

    group = xh.ParametrizedExperiments("api", {"ok": partial(no_config, value=3), "bad": raises})
    summary = group(backend=backend, jobs=2, quiet=True)
    assert {o.name: o.status for o in summary} == {"ok": "success", "bad": "failed"}
    assert summary.exit_code == 1 and not summary.interrupted
    base = tmp_path / "results" / group.name
    ok, bad = meta(base / "ok"), meta(base / "bad")
    assert ok["status"] == "success" and ok["returned"] == 3 and ok["backend"] == backend
    assert bad["status"] == "failed" and bad["error"]["type"] == "ValueError"
    if get_backend(backend).marks_submitted:  # each job's ref, as the core recorded it
        assert ok["ref"] and bad["ref"] and ok["ref"] != bad["ref"]
    seen = [json.loads(line) for line in writers.read_text().splitlines()]
    assert seen  # (the spy saw the writes: in this process, and in forked workers)
    for write in seen:  # written by the core; a backend only enters it through execute
        assert write["writer"].startswith("xhelpers.core."), write
        if write["caller"].startswith("xhelpers.backends"):
            assert write["entry"] == ["xhelpers.core.execution", "execute"], write


# -- Ctrl-C on a waiting run ------------------------------------------------------------------
def test_ctrl_c_stops_a_waiting_run_or_only_the_waiting(backend: str, tmp_path: Path) -> None:
    detached = get_backend(backend).marks_submitted  # its jobs run apart even while it waits
    proc = subprocess.Popen(
        [sys.executable, "run.py", "api", backend, "h", "2", "wait"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    folders = [tmp_path / "results/h/w0", tmp_path / "results/h/w1"]
    first = 1 if backend == "inline" else 2  # inline runs one at a time
    try:
        wait_until(lambda: sum((f / "started").exists() for f in folders) >= first, 120, "started")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        (tmp_path / "release").write_text("")
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    if detached:  # its jobs run on, and end on their own
        assert "the jobs run on" in err, err
        wait_until(
            lambda: all(meta(f).get("status") == "success" for f in folders), 120, "jobs to end"
        )
    else:
        statuses = {f.name: meta(f)["status"] for f in folders if (f / "metafile.json").exists()}
        assert "interrupted" in statuses.values() and "success" not in statuses.values()


# -- detached: survive the session, follow, skip, cancel ----------------------------------------
def test_a_detached_run_is_followed_skipped_and_cancelled(backend: str, tmp_path: Path) -> None:
    if not get_backend(backend).can_detach:
        pytest.skip(f"the {backend} backend cannot detach")
    # the submitter in a session of its own, like a login shell; its end hangs that up
    shell = subprocess.Popen(
        ["bash", "-c", f"{sys.executable} run.py api {backend} h 2 nowait >out 2>err; sleep 120"],
        cwd=tmp_path,
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    try:
        # the hints and the summary line: whichever comes last, both are written then
        wait_until(
            lambda: "cancel:" in _read(tmp_path / "out") and "queued" in _read(tmp_path / "out"),
            60,
            "the submitter's hints and summary",
        )
        os.killpg(shell.pid, signal.SIGHUP)
    finally:
        shell.kill()
        shell.wait()
    out, err = _read(tmp_path / "out"), _read(tmp_path / "err")
    assert "submitted to" in out and "follow:" in out and "-l" in out, (out, err)
    assert "2 queued" in out and "Traceback" not in err, (out, err)
    folders = {n: tmp_path / "results/h" / n for n in ("w0", "w1")}
    wait_until(lambda: all((f / "started").exists() for f in folders.values()), 120, "started")
    refs = {n: meta(f)["ref"] for n, f in folders.items()}
    assert listing(tmp_path, "h") == {"w0": "running", "w1": "running"}
    assert all(
        s in ("running", "pending") for s in ask(backend, "states", [*refs.values()]).values()
    )
    # a second runner leaves them alone: they run elsewhere
    again = py(tmp_path, "api", backend, "h", "2", "wait")
    assert again.returncode == 0, (again.stdout, again.stderr)
    assert "0 succeeded" in again.stdout and "0 interrupted" in again.stdout, again.stdout
    cancelled = py(tmp_path, "h", "--cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelled {get_backend(backend).label} job" in cancelled.stdout, cancelled.stdout
    wait_until(
        lambda: all(meta(f)["status"] == "interrupted" for f in folders.values()),
        120,
        "both recorded interrupted",
    )
    assert all(meta(f)["runs"] == 1 for f in folders.values())  # none ran twice
    wait_until(
        lambda: (
            not any(
                s in ("running", "pending")
                for s in ask(backend, "states", [*refs.values()]).values()
            )
        ),
        60,
        "the jobs to end",
    )
    assert ask(backend, "cancel", [*refs.values()]) == dict.fromkeys(refs.values(), False)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


# -- refs nobody knows --------------------------------------------------------------------------
def test_garbage_refs_are_unknown_and_not_cancelled(backend: str) -> None:
    assert ask(backend, "states", GARBAGE) == dict.fromkeys(GARBAGE, "unknown")
    assert ask(backend, "cancel", GARBAGE) == dict.fromkeys(GARBAGE, False)


# -- pipelines: upstreams first, a failed one blocks what needs it ------------------------
def test_a_pipeline_runs_in_order_and_a_failure_blocks_only_its_downstream(
    backend: str, tmp_path: Path
) -> None:
    proc = py(tmp_path, "api", backend, "p", "2", "wait")
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    statuses = {n: meta(tmp_path / "results/p" / n)["status"] for n in "abcd"}
    assert statuses == {"a": "success", "b": "success", "c": "failed", "d": "blocked"}
    used = meta(tmp_path / "results/p/b")["upstreams"]
    assert [(u["name"], u["ended"]) for u in used] == [
        ("a", meta(tmp_path / "results/p/a")["ended"])
    ]
    assert meta(tmp_path / "results/p/d")["blocked_by"] == ["c"]
