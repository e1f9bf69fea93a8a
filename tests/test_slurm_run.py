"""SLURM through the runner and the CLI, on the real local cluster (scripts/local-slurm).

Every test runs a real ``python run.py ... --slurm`` (or the Python API) against the
cluster; waits are bounded polls, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import TESTS, meta, run_py, wait_until, write_run_py
from slurm_support import SlurmCluster

RUN = """
names = {
    "ok/a": partial(ex.no_config, value=1),
    "ok/b": partial(ex.write_param, param=7),
    "bad": ex.raises,
    "gate": partial(ex.wait_for_file, started="started", release="../../../release",
                    timeout=120),
}
g = xh.ParametrizedExperiments("g", names, configcls=ex.TConfig,
                               resources={"ok/*": {"cpus_per_task": 2}})
"""


@pytest.fixture()
def project(tmp_path: Path, slurm_cluster: SlurmCluster) -> Path:
    write_run_py(tmp_path, RUN)
    (tmp_path / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {slurm_cluster.partition!r}\n"
        "    slurm_poll_interval_s = 0.5\n"
        "    slurm_timeout_min = 5\n"
    )
    return tmp_path


def cli(folder: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    # the node imports the tests' experiment module like the runner does
    return run_py(folder, *args, timeout=timeout, env=dict(os.environ, PYTHONPATH=str(TESTS)))


def popen(folder: Path, *args: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(TESTS))
    return subprocess.Popen(
        [sys.executable, "run.py", *args],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def job_state(job_id: str) -> str:
    out = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-o", "State", "-j", job_id], capture_output=True, text=True
    ).stdout.split()
    return out[0] if out else ""


def status_of(folder: Path) -> str | None:
    try:
        return str(meta(folder)["status"])
    except (OSError, ValueError):
        return None


def test_mixed_group_waits_and_records(project: Path) -> None:
    proc = popen(project, "g", "--slurm")
    gate = project / "results/g/gate"
    wait_until(lambda: (gate / "started").exists(), timeout=90, what="gate running on SLURM")
    job = meta(gate)["slurm_job_id"]
    assert meta(gate)["status"] == "running"
    subprocess.run(["scancel", job], check=True)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 1, (out, err)
    assert "g: 2 succeeded, 0 skipped, 1 failed, 1 interrupted" in out
    assert "failed      bad: ValueError: bad value" in out
    assert f"interrupted gate: SLURM job {job} ended CANCELLED" in out
    data = meta(project / "results/g/ok/b")
    assert data["status"] == "success" and data["returned"]["param"] == 7
    assert data["node"] and data["slurm_job_id"] and data["attempts"] == 1
    assert Path(data["slurm_stdout"]).parent == project / "results/g/.slurm"
    assert "INFO experiments: param=7" in (project / "results/g/ok/b/experiment.log").read_text()
    bad = meta(project / "results/g/bad")
    assert bad["status"] == "failed" and "ValueError: bad value" in bad["error"]["traceback"]
    assert meta(gate)["status"] == "interrupted" and meta(gate)["error"]["state"] == "CANCELLED"
    # per-experiment resources: ok/* went as an array of their own
    ok_job = data["slurm_job_id"].split("_")[0]
    assert bad["slurm_job_id"].split("_")[0] != ok_job
    assert meta(project / "results/g/ok/a")["slurm_job_id"].split("_")[0] == ok_job
    # and a second run reruns only what did not succeed... which fails again, here
    (project / "release").write_text("")
    again = cli(project, "g", "--slurm")
    assert "2 skipped" in again.stdout and "1 succeeded" in again.stdout


def test_no_wait_then_list_then_skip_then_cancel(project: Path) -> None:
    submitted = cli(project, "g", "gate", "ok/*", "--slurm", "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted to SLURM: job" in submitted.stdout
    assert "--cancel" in submitted.stdout and " -l" in submitted.stdout
    assert "3 queued" in submitted.stdout
    gate = project / "results/g/gate"
    assert meta(gate)["status"] in ("submitted", "running")
    wait_until(lambda: (gate / "started").exists(), timeout=90, what="gate running")
    wait_until(
        lambda: status_of(project / "results/g/ok/a") == "success", timeout=90, what="ok/a done"
    )
    listing = cli(project, "g", "-l", "--format", "json")  # a new process
    rows = {r["name"]: r for r in json.loads(listing.stdout)}
    assert rows["gate"]["status"] == "running"
    assert rows["gate"]["where"] == meta(gate)["slurm_job_id"]
    assert rows["ok/a"]["status"] == "done" and rows["bad"]["status"] == "pending"
    # a second runner, local this time, leaves the running job alone
    second = cli(project, "g", "gate", "--local")
    assert second.returncode == 0, second.stderr
    assert "1 running elsewhere" in second.stdout
    cancelled = cli(project, "g", "gate", "--cancel")
    assert cancelled.returncode == 0, cancelled.stderr
    job = meta(gate)["slurm_job_id"]
    assert f"cancelled SLURM job {job}" in cancelled.stdout
    assert "1 experiment marked interrupted" in cancelled.stdout
    assert meta(gate)["status"] == "interrupted"
    wait_until(lambda: job_state(job).startswith("CANCELLED"), timeout=60, what="cancelled")


def test_pending_job_is_skipped_as_queued(project: Path, slurm_cluster: SlurmCluster) -> None:
    (project / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {slurm_cluster.partition!r}\n"
        "    slurm_poll_interval_s = 0.5\n"
        "    slurm_additional_parameters = {'begin': 'now+600'}\n"  # stays PENDING
    )
    first = cli(project, "g", "ok/a", "--slurm", "--no-wait")
    assert first.returncode == 0, first.stderr
    job = meta(project / "results/g/ok/a")["slurm_job_id"]
    wait_until(lambda: job_state(job) == "PENDING", timeout=60, what="pending in sacct")
    second = cli(project, "g", "ok/a", "--local")
    assert second.returncode == 0 and "1 queued" in second.stdout, second.stdout
    assert meta(project / "results/g/ok/a")["status"] == "submitted"
    listing = cli(project, "g", "ok/a", "-l")
    assert "submitted" in listing.stdout and job in listing.stdout
    subprocess.run(["scancel", job], check=True)
    wait_until(lambda: job_state(job).startswith("CANCELLED"), timeout=60, what="cancelled")
    # the job is gone: a new run runs the experiment again (here, locally)
    third = cli(project, "g", "ok/a", "--local")
    assert third.returncode == 0 and "1 succeeded" in third.stdout, third.stdout


def test_sbatch_failure_is_one_line_and_marks_nothing(project: Path) -> None:
    (project / "config.py").write_text("class Config:\n    slurm_partition = 'nosuchpart'\n")
    result = cli(project, "g", "ok/*", "--slurm")
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: sbatch:"), result.stderr
    assert "invalid partition" in lines[0].lower()
    for name in ("ok/a", "ok/b"):
        assert status_of(project / "results/g" / name) is None


def test_ctrl_c_while_waiting_leaves_jobs_running(project: Path) -> None:
    proc = popen(project, "g", "gate", "--slurm")
    gate = project / "results/g/gate"
    wait_until(lambda: (gate / "started").exists(), timeout=90, what="gate running")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "1 queued" in out and "--cancel" in out and "squeue -j" in out
    assert status_of(gate) == "running"  # the job runs on
    (project / "release").write_text("")
    wait_until(lambda: status_of(gate) == "success", timeout=90, what="gate done on SLURM")


RAISES_HERE = """
def helper(n):
    raise ValueError(f"no luck with {n}")  # failing line

def fails(n):
    return helper(n)  # calling line

g = xh.ParametrizedExperiments("t", {"fails": partial(fails, n=0)})
"""


def test_traceback_from_the_node_names_run_py_and_its_lines(project: Path) -> None:
    # run.py's functions travel by value; cloudpickle 3.1.3 names such code "<dynamic-code>"
    run = write_run_py(project, RAISES_HERE)
    lines = run.read_text().splitlines()
    failing = next(i for i, line in enumerate(lines, 1) if line.endswith("# failing line"))
    calling = next(i for i, line in enumerate(lines, 1) if line.endswith("# calling line"))
    proc = cli(project, "t", "--slurm")
    assert proc.returncode == 1 and "1 failed" in proc.stdout, (proc.stdout, proc.stderr)
    data = meta(project / "results/t/fails")
    assert data["backend"] == "slurm" and data["slurm_job_id"]
    remote = data["error"]["traceback"]
    assert "<dynamic-code>" not in remote, remote
    assert f'File "{run}", line {calling}, in fails\n    return helper(n)' in remote, remote
    assert (
        f'File "{run}", line {failing}, in helper\n'
        '    raise ValueError(f"no luck with {n}")  # failing line'
    ) in remote, remote
    # as good as a local run's, frame for frame
    local = cli(project, "t", "--local", "--force")
    assert local.returncode == 1, (local.stdout, local.stderr)
    assert meta(project / "results/t/fails")["error"]["traceback"] == remote


def test_python_api_on_slurm(
    project: Path, slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    from experiments import TConfig, no_config

    import xhelpers as xh

    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    group = xh.ParametrizedExperiments("api", {"x": no_config}, configcls=TConfig)
    summary = group(slurm=True, quiet=True)
    assert summary.exit_code == 0 and summary["x"].status == "success"
    data: dict[str, Any] = meta(project / "results/api/x")
    assert data["backend"] == "slurm" and data["slurm_job_id"]


SLACK_RUN = """
g = xh.ParametrizedExperiments("s", {
    "warns": ex.logs_levels,
    "ok": partial(ex.no_config, value=3),
    "bad": ex.raises,
})
"""
TOKEN = "xoxb-9999-8888-SLURMSECRETbeef"


def _slack_project(tmp_path: Path, cluster: SlurmCluster, base_url: str) -> None:
    write_run_py(tmp_path, SLACK_RUN)
    (tmp_path / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {cluster.partition!r}\n"
        "    slurm_poll_interval_s = 0.5\n"
        f"    slacktoken = {TOKEN!r}\n"  # in the config: it must not reach the pickles
        "    slackchannel = 'C0SLURM'\n"
        f"    slack_base_url = {base_url!r}\n"
    )


def _no_token_anywhere(tmp_path: Path, *outputs: str) -> None:
    for path in (tmp_path / "results").rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for text in outputs:
        assert TOKEN not in text


def test_slack_thread_of_a_slurm_run(tmp_path: Path, slurm_cluster: SlurmCluster) -> None:
    from slack_server import fake_slack

    with fake_slack() as slack:
        _slack_project(tmp_path, slurm_cluster, slack.base_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("XHELPERS_SLACK_")}
        proc = run_py(tmp_path, "s", "--slurm", env=dict(env, PYTHONPATH=str(TESTS)))
        assert proc.returncode == 1, proc.stderr
        requests = slack.posted
        top = requests[0]
        assert top.thread_ts is None and "*s* started" in (top.text or "")
        assert "slurm" in (top.text or "")
        replies = requests[1:]
        assert replies and all(r.thread_ts == top.ts for r in replies)
        texts = "\n".join(r.text or "" for r in replies)
        # posted by the SLURM tasks themselves, from the node, into the same thread
        assert "[warns] WARNING a warning line" in texts
        assert "[bad] ERROR failed: ValueError: bad value" in texts
        summary = replies[-1]
        assert summary.reply_broadcast and "s: 2 succeeded, 0 skipped, 1 failed" in (
            summary.text or ""
        )
        assert all(r.token == TOKEN for r in requests)
        _no_token_anywhere(tmp_path, proc.stdout, proc.stderr)


def test_slack_no_wait_tasks_post_their_outcomes(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    from slack_server import fake_slack

    with fake_slack() as slack:
        _slack_project(tmp_path, slurm_cluster, slack.base_url)
        env = {k: v for k, v in os.environ.items() if not k.startswith("XHELPERS_SLACK_")}
        proc = run_py(tmp_path, "s", "--slurm", "--no-wait", env=dict(env, PYTHONPATH=str(TESTS)))
        assert proc.returncode == 0, proc.stderr
        top = slack.wait_requests(1)[0]

        def outcomes(requests: list[Any]) -> set[str]:
            return {
                name
                for r in requests
                for name in ("ok", "bad", "warns")
                if r.thread_ts == top.ts
                and f"[{name}]" in (r.text or "")
                and "WARNING" not in (r.text or "")
                and "ERROR" not in (r.text or "")
            }

        slack.wait_for(
            lambda rs: outcomes(rs) == {"ok", "bad", "warns"},
            timeout=120,
            what="each task's own outcome in the thread",
        )
        _no_token_anywhere(tmp_path, proc.stdout, proc.stderr)


STEP = """
import os, sys, time
n = int(open("ckpt.txt").read()) if os.path.exists("ckpt.txt") else 0
with open("ckpt.txt", "w") as f:
    f.write(str(n + 1))
print("run", n + 1, "lr", sys.argv[1], flush=True)
if n == 0:  # the first run waits to be signalled (a stand-in for a time limit)
    open("waiting", "w").close()
    while True:
        time.sleep(0.05)
print("resumed from checkpoint", n, flush=True)
"""


def test_command_experiment_requeued_and_resumed_on_slurm(
    tmp_path: Path, slurm_cluster: SlurmCluster
) -> None:
    (tmp_path / "step.py").write_text(STEP)
    write_run_py(
        tmp_path,
        """
g = xh.ParametrizedExperiments("cmd", xh.grid(
    xh.command("python {here}/step.py {lr}"), "lr={lr}", lr=[0.5]))
""",
    )
    (tmp_path / "config.py").write_text(
        "class Config:\n"
        f"    slurm_partition = {slurm_cluster.partition!r}\n"
        "    slurm_poll_interval_s = 0.5\n"
    )
    proc = popen(tmp_path, "cmd", "--slurm")
    folder = tmp_path / "results/cmd/lr=0.5"
    wait_until(lambda: (folder / "waiting").exists(), timeout=90, what="the command's first run")
    job = meta(folder)["slurm_job_id"]
    subprocess.run(["scancel", "--signal=USR2", job], check=True)  # as before a time limit
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 0, (out, err)
    data = meta(folder)
    assert data["status"] == "success" and data["attempts"] == 2
    assert (folder / "ckpt.txt").read_text() == "2"
    log = (folder / "experiment.log").read_text()
    assert "run 1 lr 0.5" in log and "resumed from checkpoint 1" in log
