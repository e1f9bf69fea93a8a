"""Pipelines run locally: experiments that use others' results (xh.upstream/upstreams).

Every test runs ``python run.py`` in a real process (with its worker pool for -j2).
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from conftest import meta, popen_run_py, run_py, wait_until, write_run_py

PIPELINE = """
import json, os

def train(*, lr, gate=None):
    if gate:
        ex.wait_for_file(started="started", release="../../../../" + gate)
    with open("runs.txt", "a") as f:
        f.write("run\\n")
    if lr == float(os.environ.get("FAIL_LR", "-1")):
        raise ValueError("diverged")
    with open("model.json", "w") as f:
        json.dump({"lr": lr, "w": round(1 - lr, 6)}, f)

def evaluate(*, model, lr):
    assert isinstance(model, xh.Result) and model.folder.is_dir()
    return {"lr": lr, "score": model.load("model.json")["w"] * 10, "from": model.name}

def pick_best(*, runs):
    best = max(runs, key=lambda r: r.returned["score"])
    return {"best": best.name, "n": len(runs)}

g = xh.ParametrizedExperiments("g", {
    **xh.grid(train, "train/lr={lr}", lr=[0.1, 0.2, 0.3]),
    **xh.grid(evaluate, "eval/lr={lr}", lr=[0.1, 0.2, 0.3],
              model=xh.upstream("g", "train/lr={lr}")),
    "best": partial(pick_best, runs=xh.upstreams("g", "eval/*")),
})
"""


# train/lr=0.3 waits until the test writes tmp_path/release.
GATED = PIPELINE.replace(
    '**xh.grid(train, "train/lr={lr}", lr=[0.1, 0.2, 0.3]),',
    '**xh.grid(train, "train/lr={lr}", lr=[0.1, 0.2]),\n'
    '    "train/lr=0.3": partial(train, lr=0.3, gate="release"),',
)


def status(tmp_path: Path, name: str, group: str = "g") -> str:
    return str(meta(tmp_path / "results" / group / name)["status"])


def runs(tmp_path: Path, name: str) -> int:
    path = tmp_path / "results/g" / name / "runs.txt"
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_selecting_the_last_stage_runs_the_whole_pipeline_in_order(tmp_path: Path) -> None:
    write_run_py(tmp_path, PIPELINE)
    proc = run_py(tmp_path, "g", "best", "-j2")
    assert proc.returncode == 0, proc.stderr
    assert "7 succeeded" in proc.stdout and "(1 selected + 6 upstream" in proc.stdout
    best = meta(tmp_path / "results/g/best")
    assert best["returned"] == {"best": "eval/lr=0.1", "n": 3}
    used = {(u["group"], u["name"]) for u in best["upstreams"]}
    assert used == {("g", f"eval/lr={lr}") for lr in (0.1, 0.2, 0.3)}
    evaluated = meta(tmp_path / "results/g/eval/lr=0.2")
    assert evaluated["returned"]["from"] == "train/lr=0.2"  # element-wise
    assert evaluated["upstreams"][0]["ended"] == meta(tmp_path / "results/g/train/lr=0.2")["ended"]
    again = run_py(tmp_path, "g", "-j2")
    assert again.returncode == 0 and "0 succeeded, 7 skipped" in again.stdout, again.stdout


def test_a_failed_upstream_blocks_only_what_needs_it(tmp_path: Path) -> None:
    write_run_py(tmp_path, PIPELINE)
    env = {**os.environ, "FAIL_LR": "0.3"}
    proc = run_py(tmp_path, "g", "-j2", env=env)
    assert proc.returncode == 1, proc.stderr
    assert "4 succeeded, 0 skipped, 1 failed, 0 interrupted, 2 blocked" in proc.stdout
    assert "blocked     eval/lr=0.3: blocked: upstream train/lr=0.3" in proc.stdout
    for name in ("eval/lr=0.1", "eval/lr=0.2", "train/lr=0.1"):
        assert status(tmp_path, name) == "success"
    blocked = meta(tmp_path / "results/g/eval/lr=0.3")
    assert blocked["status"] == "blocked" and blocked["blocked_by"] == ["train/lr=0.3"]
    assert status(tmp_path, "best") == "blocked"
    listed = run_py(tmp_path, "g", "-l")
    assert "2 blocked" in listed.stdout and "Blocked: not run" in listed.stdout, listed.stdout
    fixed = run_py(tmp_path, "g", "-j2")  # the upstream succeeds now: they run
    assert fixed.returncode == 0, fixed.stdout
    assert "3 succeeded, 4 skipped" in fixed.stdout, fixed.stdout
    assert runs(tmp_path, "train/lr=0.1") == 1 and runs(tmp_path, "train/lr=0.3") == 2
    assert meta(tmp_path / "results/g/eval/lr=0.3")["runs"] == 1  # blocked is not a run


def test_no_upstream_refuses_and_names_what_is_missing(tmp_path: Path) -> None:
    write_run_py(tmp_path, PIPELINE)
    proc = run_py(tmp_path, "g", "eval/lr=0.2", "--no-upstream")
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "--no-upstream: 1 upstream experiment is not done: train/lr=0.2" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "results/g/eval").exists()
    assert run_py(tmp_path, "g", "train/lr=0.2").returncode == 0
    proc = run_py(tmp_path, "g", "eval/lr=0.2", "--no-upstream")
    assert proc.returncode == 0 and "1 succeeded" in proc.stdout, proc.stdout


def test_a_rerun_upstream_makes_its_downstreams_stale(tmp_path: Path) -> None:
    write_run_py(tmp_path, PIPELINE)
    assert run_py(tmp_path, "g", "-j2").returncode == 0
    assert run_py(tmp_path, "g", "train/lr=0.2", "--force").returncode == 0
    listed = run_py(tmp_path, "g", "-l").stdout
    assert "eval/lr=0.2   stale" in listed and "eval/lr=0.1   done" in listed, listed
    skipped = run_py(tmp_path, "g")
    assert "1 stale" in skipped.stdout and "eval/lr=0.2" in skipped.stderr, skipped.stderr
    rerun = run_py(tmp_path, "g", "--rerun-stale", "-j2")
    assert "2 succeeded" in rerun.stdout, rerun.stdout  # eval/lr=0.2, then best with it
    assert "stale" not in run_py(tmp_path, "g", "-l").stdout
    # an upstream's folder deleted by hand: its downstream is stale, not broken
    import shutil

    shutil.rmtree(tmp_path / "results/g/train/lr=0.1")
    listed = run_py(tmp_path, "g", "eval/lr=0.1", "-l")
    assert listed.returncode == 0 and "stale" in listed.stdout, listed.stdout


def test_a_downstream_starts_once_its_own_upstreams_are_done(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        GATED,
    )
    proc = popen_run_py(tmp_path, "g", "-j2")
    try:
        done = tmp_path / "results/g/eval/lr=0.1"
        wait_until(lambda: (done / "metafile.json").exists(), 60, "eval/lr=0.1")
        assert status(tmp_path, "eval/lr=0.1") == "success"  # while train/lr=0.3 still runs
        assert (tmp_path / "results/g/train/lr=0.3/started").exists()
        assert not (tmp_path / "results/g/best").exists()
    finally:
        (tmp_path / "release").write_text("")
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, (out, err)
    assert status(tmp_path, "best") == "success"


def test_a_killed_runner_loses_no_finished_upstream(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        GATED,
    )
    proc = popen_run_py(tmp_path, "g", "-j2")
    try:
        wait_until(lambda: (tmp_path / "results/g/train/lr=0.3/started").exists(), 60, "the gate")
        wait_until(lambda: (tmp_path / "results/g/eval/lr=0.2/metafile.json").exists(), 60, "evals")
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
    finally:
        (tmp_path / "release").write_text("")
    again = run_py(tmp_path, "g", "-j2")
    assert again.returncode == 0, again.stdout
    assert runs(tmp_path, "train/lr=0.1") == 1 and runs(tmp_path, "train/lr=0.2") == 1
    assert status(tmp_path, "best") == "success"


def test_upstreams_of_another_group_and_through_a_command(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        """
import json

def make(*, n):
    with open("data.json", "w") as f:
        json.dump(list(range(n)), f)

prep = xh.ParametrizedExperiments("prep", {"data": partial(make, n=4)})
use = xh.ParametrizedExperiments("use", {
    "sum": partial(lambda *, data: sum(data.load("data.json")), data=xh.upstream("prep", "data")),
    "copy": xh.command("cp {data}/data.json copied.json", data=xh.upstream("prep", "data")),
})
""".replace('partial(lambda *, data: sum(data.load("data.json")), ', "partial(ex.sum_of, "),
    )
    proc = run_py(tmp_path, "use", "-j2")
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "(2 selected + 1 upstream" in proc.stdout
    assert meta(tmp_path / "results/prep/data")["group"] == "prep"
    assert meta(tmp_path / "results/use/sum")["returned"] == 6
    copied = json.loads((tmp_path / "results/use/copy/copied.json").read_text())
    assert copied == [0, 1, 2, 3]


def test_definition_mistakes_are_one_line_errors(tmp_path: Path) -> None:
    cases = {
        "cycle": (
            '{"a": partial(ex.no_config, value=xh.upstream("g", "b")),'
            ' "b": partial(ex.no_config, value=xh.upstream("g", "a"))}',
            "cycle: a -> b -> a",
        ),
        "unknown name": (
            '{"train": ex.no_config, "ev": partial(ex.no_config, value=xh.upstream("g", "trian"))}',
            "did you mean 'train'",
        ),
        "unknown group": (
            '{"ev": partial(ex.no_config, value=xh.upstream("gg", "x"))}',
            "no group named 'gg' is defined; did you mean 'g'",
        ),
        "several": (
            '{"t/1": ex.no_config, "t/2": ex.no_config,'
            ' "ev": partial(ex.no_config, value=xh.upstream("g", "t/*"))}',
            "matches 2 experiments ('t/1', 't/2'); name one, or use xh.upstreams",
        ),
    }
    for what, (experiments, message) in cases.items():
        write_run_py(tmp_path, f"g = xh.ParametrizedExperiments('g', {experiments})\n")
        proc = run_py(tmp_path, "g")
        assert proc.returncode == 2, (what, proc.stdout, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (what, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, (what, proc.stderr)
        listed = run_py(tmp_path, "g", "-l")
        assert listed.returncode == 0 or message in listed.stderr, (what, listed.stderr)


def test_dry_run_shows_the_plan_and_runs_nothing(tmp_path: Path) -> None:
    write_run_py(tmp_path, PIPELINE)
    proc = run_py(tmp_path, "g", "best", "-n", "-j2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "g: dry run (local, -j2): would run 7 and skip 0 of 1 selected + 6 upstream" in out
    assert out.index("stage 0") < out.index("train/lr=0.1") < out.index("stage 1")
    assert "eval/lr=0.3   never run; after train/lr=0.3" in out, out
    assert "best          never run; after eval/lr=0.1, eval/lr=0.2, eval/lr=0.3" in out, out
    assert not (tmp_path / "results").exists()
    assert run_py(tmp_path, "g", "eval/lr=0.1").returncode == 0
    out = run_py(tmp_path, "g", "--dry-run").stdout
    assert "would run 5 and skip 2 of 7 selected" in out, out
    assert "skip  eval/lr=0.1   done" in out, out
    forced = run_py(tmp_path, "g", "train/lr=0.1", "-n", "--force").stdout
    assert "forced: from an empty folder" in forced, forced
    both = run_py(tmp_path, "g", "-n", "-l")
    assert both.returncode == 2 and "--dry-run" in both.stderr


def test_graph_shows_stages_and_summarizes_big_ones(tmp_path: Path) -> None:
    write_run_py(tmp_path, PIPELINE)
    out = run_py(tmp_path, "g", "--graph").stdout
    assert "g: 7 experiments in 3 stages, 6 edges" in out, out
    assert "eval/lr=0.2 <- train/lr=0.2" in out and "stage 2 (1)" in out, out
    write_run_py(
        tmp_path,
        """
g = xh.ParametrizedExperiments("g", {
    **xh.grid(ex.no_config, "train/{value}", value=range(100)),
    **xh.grid(ex.no_config, "eval/{i}", i=range(100), value=xh.upstream("g", "train/{i}")),
})
""".replace('ex.no_config, "eval', 'ex.evaluates, "eval'),
    )
    out = run_py(tmp_path, "g", "--graph").stdout
    assert "g: 200 experiments in 2 stages, 100 edges" in out, out
    assert "train/* 100" in out and "eval/* 100; each uses 1 on average, from train/* (100)" in out


def test_a_toml_file_declares_upstreams_for_its_commands(tmp_path: Path) -> None:
    import sys

    (tmp_path / "experiments.toml").write_text(
        """
[train]
command = "echo lr={lr} > model.txt"
name = "lr={lr}"
grid = { lr = [0.1, 0.2] }

[evaluate]
command = "cp {model}/model.txt seen.txt && echo {lr} > lr.txt"
name = "lr={lr}"
grid = { lr = [0.1, 0.2] }
upstream = { model = "train:lr={lr}" }

[report]
command = "for d in {runs}; do cat $d/seen.txt; done > all.txt"
name = "all"
upstreams = { runs = "evaluate:*" }
"""
    )
    proc = __import__("subprocess").run(
        [sys.executable, "-m", "xhelpers", "run", "experiments.toml", "report", "-j2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    assert "(1 selected + 4 upstream" in proc.stdout, proc.stdout
    seen = (tmp_path / "results/evaluate/lr=0.2/seen.txt").read_text()
    assert seen == "lr=0.2\n"
    assert (tmp_path / "results/report/all/all.txt").read_text() == "lr=0.1\nlr=0.2\n"
    bad = tmp_path / "bad.toml"
    bad.write_text('[g]\ncommand = "echo {m}"\nname = "x"\nupstream = { m = "nocolon" }\n')
    proc = __import__("subprocess").run(
        [sys.executable, "-m", "xhelpers", "run", "bad.toml", "-l"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and 'must be "group:name"' in proc.stderr, proc.stderr


def test_two_runners_on_one_pipeline_run_each_experiment_once(tmp_path: Path) -> None:
    write_run_py(tmp_path, PIPELINE)
    first = popen_run_py(tmp_path, "g", "-j2")
    second = popen_run_py(tmp_path, "g", "best", "-j2")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    for lr in (0.1, 0.2, 0.3):
        assert runs(tmp_path, f"train/lr={lr}") == 1
        assert meta(tmp_path / f"results/g/eval/lr={lr}")["runs"] == 1
    again = run_py(tmp_path, "g", "-j2")  # whatever waited for the other runner runs now
    assert again.returncode == 0 and status(tmp_path, "best") == "success", again.stdout
    assert all(runs(tmp_path, f"train/lr={lr}") == 1 for lr in (0.1, 0.2, 0.3))


def test_ctrl_c_mid_pipeline_loses_nothing_and_the_next_run_continues(tmp_path: Path) -> None:
    write_run_py(tmp_path, GATED)
    proc = popen_run_py(tmp_path, "g", "-j2", start_new_session=True)
    try:
        wait_until(lambda: (tmp_path / "results/g/train/lr=0.3/started").exists(), 60, "the gate")
        wait_until(lambda: status_or_none(tmp_path, "eval/lr=0.2") == "success", 60, "evals")
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the runner and its workers
        out, err = proc.communicate(timeout=60)
    finally:
        (tmp_path / "release").write_text("")
    assert proc.returncode == 130, (out, err)
    assert status(tmp_path, "train/lr=0.3") == "interrupted"
    assert status(tmp_path, "eval/lr=0.3") == "blocked"  # an interrupted upstream blocks
    assert status(tmp_path, "eval/lr=0.1") == "success"
    again = run_py(tmp_path, "g", "-j2")
    assert again.returncode == 0, again.stdout
    assert "3 succeeded, 4 skipped" in again.stdout, again.stdout  # train 0.3, eval 0.3, best
    assert runs(tmp_path, "train/lr=0.1") == 1 and runs(tmp_path, "train/lr=0.2") == 1


def status_or_none(tmp_path: Path, name: str) -> str | None:
    path = tmp_path / "results/g" / name / "metafile.json"
    return str(json.loads(path.read_text())["status"]) if path.exists() else None
