"""Command experiments: placeholders and quoting, output, failures, timeouts, signals."""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from conftest import meta, pid_alive, wait_until, write_run_py

import xhelpers as xh
from xhelpers.core.fingerprints import fingerprint
from xhelpers.errors import CommandError, ExperimentDefinitionError

PY = sys.executable

ARGV_PY = """\
import json, os, sys
json.dump({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)},
          open("argv.json", "w"))
"""

LINES_PY = """\
import sys
for i in range(30):
    print("line", i)
print("oops", file=sys.stderr)
sys.exit(int(sys.argv[1]))
"""

STREAM_PY = """\
import os, sys, time
print("ready")
print("to stderr", file=sys.stderr)
deadline = time.monotonic() + 60
while not os.path.exists(sys.argv[1]) and time.monotonic() < deadline:
    time.sleep(0.01)
print("done")
"""

# Writes its pid, starts a grandchild that writes its own, then waits (for a signal).
BLOCK_PY = """\
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
with open("pids.tmp", "w") as f:
    f.write(f"{os.getpid()} {child.pid}")
os.replace("pids.tmp", "pids")
time.sleep(120)
"""

TERM_PY = """\
import os, signal, sys, time
def on_term(signum, frame):
    open("got_sigterm", "w").write(str(signum))
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
open("pid.tmp", "w").write(str(os.getpid()))
os.replace("pid.tmp", "pid")
time.sleep(120)
"""


@pytest.fixture
def progs(tmp_path: Path) -> Path:
    for name, text in [
        ("argv.py", ARGV_PY),
        ("lines.py", LINES_PY),
        ("stream.py", STREAM_PY),
        ("block.py", BLOCK_PY),
        ("term.py", TERM_PY),
    ]:
        (tmp_path / name).write_text(text)
    return tmp_path


def read_pids(folder: Path) -> list[int]:
    return [int(x) for x in (folder / "pids").read_text().split()]


TRICKY = 'it\'s "quoted" $HOME `id` ; | & > x * ~ \\ end'


def test_placeholders_and_quoting_reach_the_program_intact(progs: Path) -> None:
    cmd = xh.command(
        "{py} {here}/argv.py {a} {b} {{literal}} {cwd} {name} {group} {time} {lr:.1e}",
        py=PY,
        a=TRICKY,
        b="two  spaces",
        lr=0.00012,
    )
    group = xh.ParametrizedExperiments("cmds", {"sub/one two": cmd})
    summary = group(quiet=True)
    assert summary.exit_code == 0, summary
    folder = progs / "results/cmds/sub/one two"
    got = json.loads((folder / "argv.json").read_text())
    argv = got["argv"]
    assert argv[:6] == [TRICKY, "two  spaces", "{literal}", str(folder), "sub/one two", "cmds"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d", argv[6])
    assert argv[7:] == ["1.2e-04"]
    assert got["cwd"] == str(folder)
    assert got["env"]["PYTHONUNBUFFERED"] == "1"


def test_shell_false_fills_each_argument_unquoted(progs: Path) -> None:
    cmd = xh.command("{py} {here}/argv.py --a={a} {b}", py=PY, a=TRICKY, b="x y", shell=False)
    assert xh.ParametrizedExperiments("noshell", {"e": cmd})(quiet=True).exit_code == 0
    got = json.loads((progs / "results/noshell/e/argv.json").read_text())
    assert got["argv"] == [f"--a={TRICKY}", "x y"]


def test_env_adds_to_the_environment(progs: Path) -> None:
    cmd = xh.command(
        "{py} {here}/argv.py", py=PY, env={"XH_TEXT": "a b", "XH_NUM": 3, "PYTHONUNBUFFERED": "0"}
    )
    assert xh.ParametrizedExperiments("env", {"e": cmd})(quiet=True).exit_code == 0
    env = json.loads((progs / "results/env/e/argv.json").read_text())["env"]
    assert env["XH_TEXT"] == "a b" and env["XH_NUM"] == "3"
    assert env["PYTHONUNBUFFERED"] == "0"  # the command's env wins
    assert env["PATH"] == os.environ["PATH"]


def test_output_streams_into_experiment_log_and_console_at_v(progs: Path) -> None:
    write_run_py(
        progs,
        """
        xh.ParametrizedExperiments("s", {
            "stream": xh.command("{py} {here}/stream.py {here}/go", py=sys.executable),
        })
        """,
    )
    proc = subprocess.Popen(
        [PY, "run.py", "s", "-v"],
        cwd=progs,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = progs / "results/s/stream/experiment.log"

    def logged(text: str) -> bool:
        return log.exists() and text in log.read_text()

    try:
        wait_until(lambda: logged("ready") and logged("to stderr"), what="first lines")
        assert proc.poll() is None and not logged("done")  # streamed while it runs
        (progs / "go").write_text("")
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    text = log.read_text()
    assert re.search(r"INFO xhelpers\.command: \$ .*stream\.py", text)
    assert "INFO xhelpers.command.stdout: ready" in text
    assert "INFO xhelpers.command.stderr: to stderr" in text
    assert "INFO xhelpers.command.stdout: done" in text
    assert "exited with code 0" in text
    for line in ("[stream] INFO ready", "[stream] INFO to stderr", "[stream] INFO done"):
        assert line in err


def test_nonzero_exit_fails_with_exit_code_and_last_lines(progs: Path) -> None:
    group = xh.ParametrizedExperiments(
        "fail",
        {
            "bad": xh.command("{py} {here}/lines.py 3", py=PY),
            "good": xh.command("{py} {here}/lines.py 0", py=PY),
        },
    )
    summary = group(quiet=True)
    assert summary["good"].status == "success"
    bad = summary["bad"]
    assert bad.status == "failed"
    assert bad.error is not None and bad.error.startswith("xhelpers.errors.CommandError: ")
    assert "command exited with code 3:" in bad.error and "lines.py 3" in bad.error
    error = meta(progs / "results/fail/bad")["error"]
    assert error["type"] == "xhelpers.errors.CommandError"
    message = error["message"]
    assert "last 20 lines of output:" in message
    assert "  line 29\n" in message and "  oops" in message and "  line 11\n" in message
    assert "line 10\n" not in message
    assert "oops" in (progs / "results/fail/bad/experiment.log").read_text()


def test_command_error_pickles_with_its_attributes() -> None:
    exc = CommandError("boom", exit_code=3, last_lines=["a", "b"], command="false")
    back = pickle.loads(pickle.dumps(exc))
    assert isinstance(back, RuntimeError) and isinstance(back, xh.XHelpersError)
    assert (str(back), back.exit_code, back.last_lines, back.command, back.timed_out) == (
        "boom",
        3,
        ["a", "b"],
        "false",
        False,
    )


def test_calling_a_command_directly_raises_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError) as info:
        xh.command("echo {x}; exit 4", x="so long")()
    assert info.value.exit_code == 4 and info.value.last_lines == ["so long"]
    with pytest.raises(CommandError, match="killed by SIGKILL"):
        xh.command("kill -9 $$")()
    xh.command("echo fine > out.txt")()
    assert (tmp_path / "out.txt").read_text() == "fine\n"


def test_timeout_kills_the_whole_process_group(progs: Path) -> None:
    cmd = xh.command("{py} {here}/block.py", py=PY, timeout=1)
    start = time.monotonic()
    summary = xh.ParametrizedExperiments("slow", {"t": cmd})(quiet=True)
    assert time.monotonic() - start < 30
    outcome = summary["t"]
    assert outcome.status == "failed"
    assert (
        outcome.error is not None and "command timed out after 1s and was killed" in outcome.error
    )
    pids = read_pids(progs / "results/slow/t")
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="command killed")


def test_background_processes_left_running_are_ended(progs: Path) -> None:
    cmd = xh.command("sleep 120 & echo $! > bg.pid; echo started")
    summary = xh.ParametrizedExperiments("bg", {"b": cmd})(quiet=True)
    assert summary.exit_code == 0
    pid = int((progs / "results/bg/b/bg.pid").read_text())
    wait_until(lambda: not pid_alive(pid), timeout=10, what="leftover ended")


def test_runs_in_workers_under_fork_and_spawn(progs: Path, start_method: str) -> None:
    group = xh.ParametrizedExperiments(
        "pool",
        xh.grid("{py} {here}/argv.py {seed} {name}", "seed={seed}", py=PY, seed=range(3)),
    )
    summary = group(jobs=2, quiet=True, config={"start_method": start_method})
    assert summary.exit_code == 0, summary
    for seed in range(3):
        got = json.loads((progs / f"results/pool/seed={seed}/argv.json").read_text())
        assert got["argv"] == [str(seed), f"seed={seed}"]
        data = meta(progs / f"results/pool/seed={seed}")
        assert data["pid"] != os.getpid()


RUN_BLOCKING = """
xh.ParametrizedExperiments("g", {
    f"c{i}": xh.command("{py} {here}/block.py", py=sys.executable) for i in range(2)
})
"""


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_ctrl_c_kills_the_commands_process_group(progs: Path, jobs: str) -> None:
    write_run_py(progs, RUN_BLOCKING)
    proc = subprocess.Popen(
        [PY, "run.py", "g", f"-j{jobs}"],
        cwd=progs,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = [progs / f"results/g/c{i}" for i in range(int(jobs))]
    wait_until(lambda: all((f / "pids").exists() for f in running), what="commands started")
    pids = [p for f in running for p in read_pids(f)]
    assert all(pid_alive(p) for p in pids)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    for folder in running:
        assert meta(folder)["status"] == "interrupted"
    wait_until(lambda: not any(pid_alive(p) for p in pids), timeout=10, what="no orphans")


def test_sigterm_is_forwarded_to_the_command(progs: Path) -> None:
    write_run_py(
        progs,
        'cmd = xh.command("{py} {here}/term.py", py=sys.executable)\n'
        'xh.ParametrizedExperiments("t", {"t": cmd})\n',
    )
    proc = subprocess.Popen(
        [PY, "run.py", "t"], cwd=progs, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    folder = progs / "results/t/t"
    wait_until(lambda: (folder / "pid").exists(), what="command started")
    pid = int((folder / "pid").read_text())
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM  # the runner still ends by SIGTERM, as before
    assert (folder / "got_sigterm").read_text() == str(int(signal.SIGTERM))
    wait_until(lambda: not pid_alive(pid), timeout=10, what="command ended")


def test_definition_errors() -> None:
    with pytest.raises(ExperimentDefinitionError, match=r"does not use \{lrr\}"):
        xh.command("train --lr {lr}", lr=0.1, lrr=0.2)
    with pytest.raises(ExperimentDefinitionError, match="'name' is a placeholder"):
        xh.command("train {name}", name="x")
    with pytest.raises(ExperimentDefinitionError, match="timeout must be a positive"):
        xh.command("train", timeout=0)
    with pytest.raises(ExperimentDefinitionError, match="invalid environment variable"):
        xh.command("train", env={"A=B": "1"})
    with pytest.raises(ExperimentDefinitionError, match="positional field"):
        xh.command("train {}")
    with pytest.raises(ExperimentDefinitionError, match="No closing quotation"):
        xh.command("train 'open", shell=False)
    with pytest.raises(ExperimentDefinitionError, match=r"uses \{lr\}, which no parameter sets"):
        xh.command("train --lr {lr}")()


def test_unbound_placeholder_fails_when_the_group_is_defined(tmp_path: Path) -> None:
    # not at run time, on a node after the queue
    with pytest.raises(xh.errors.ExperimentDefinitionError, match="which no parameter sets"):
        xh.ParametrizedExperiments("u", {"e": xh.command("echo {lr}")})
    assert not (tmp_path / "results").exists()


def test_metafile_and_fingerprint_describe_template_and_params(tmp_path: Path) -> None:
    cmd = xh.command("echo {lr} > out.txt", lr=0.1, env={"A": "1"}, timeout=60)
    assert repr(cmd) == "command('echo {lr} > out.txt', lr=0.1, env={'A': '1'}, timeout=60.0)"
    xh.ParametrizedExperiments("m", {"e": cmd})(quiet=True)
    data = meta(tmp_path / "results/m/e")
    assert data["status"] == "success"
    assert data["function"] == "xhelpers.commands.command"
    assert data["arguments"] == {"args": ["'echo {lr} > out.txt'"], "kwargs": {"lr": "0.1"}}
    assert data["fingerprint"] == fingerprint(cmd)
    assert (tmp_path / "results/m/e/out.txt").read_text() == "0.1\n"
    same = xh.command("echo {lr} > out.txt", lr=0.1)  # env and timeout are not what ran
    assert fingerprint(same) == fingerprint(cmd)
    assert fingerprint(xh.command("echo {lr} > out.txt", lr=0.2)) != fingerprint(cmd)
    assert fingerprint(xh.command("echo {lr} >> out.txt", lr=0.1)) != fingerprint(cmd)
    back = pickle.loads(pickle.dumps(cmd))
    assert repr(back) == repr(cmd) and back.here == cmd.here == str(tmp_path)


def test_output_lines_split_on_carriage_returns(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """\
        import sys
        sys.stdout.write("10%\\r20%\\r30%\\r\\ndone\\r\\n")
        sys.stdout.buffer.write(b"bad \\xff byte\\n" + b"x" * 70000)
        """
    )
    (tmp_path / "cr.py").write_text(script)
    xh.ParametrizedExperiments("cr2", {"e": xh.command("{py} {here}/cr.py", py=PY)})(quiet=True)
    lines = [
        line.split(": ", 1)[1]
        for line in (tmp_path / "results/cr2/e/experiment.log").read_text().splitlines()
        if "xhelpers.command.stdout" in line
    ]
    assert lines[:5] == ["10%", "20%", "30%", "done", "bad \ufffd byte"]
    assert [len(x) for x in lines[5:]] == [65536, 70000 - 65536]


@pytest.mark.parametrize("timeout", [float("nan"), float("inf"), 0, -1.0, True])
def test_timeout_must_be_a_positive_finite_number(timeout: float) -> None:
    with pytest.raises(xh.errors.ExperimentDefinitionError, match="timeout must be a positive"):
        xh.command("echo hi", timeout=timeout)
