"""Slack notifications, against a local Web API server driven by the real WebClient."""

from __future__ import annotations

import getpass
import logging
import os
import pickle
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, run_py, write_run_py
from slack_server import HANG, RATELIMITED, SERVER_ERROR, FakeSlack, Request, fake_slack

import xhelpers as xh
from xhelpers import backends, notify
from xhelpers.backends import UNKNOWN_STATUS, Backend, Finished, JobStatus, Submitted
from xhelpers.core.execution import RunContext, execute

TOKEN = "xoxb-1111-2222-TESTSECRETc0ffee"
CHANNEL = "C0TESTCHAN"
HOST = os.uname().nodename
USER = getpass.getuser()
OFF = "Slack notifications are off for the rest of this run"

log = logging.getLogger("study")


# -- experiments (module level: picklable for -j2 under any start method) ---------------
def ok() -> None:
    pass


def warns() -> None:
    log.warning("careful: x=1 < 2 & more")
    log.info("not posted: below the Slack level")


def boom() -> None:
    raise ValueError("bad value\nsecond line")


def flood(n: int = 1000) -> None:
    for i in range(n):
        log.warning("flood record %d", i)


# -- helpers ---------------------------------------------------------------------------------
@pytest.fixture()
def slack(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSlack]:
    for name in (notify.ENV_TOKEN, notify.ENV_CHANNEL, notify.ENV_BASE_URL):
        monkeypatch.delenv(name, raising=False)
    with fake_slack() as server:
        yield server


def slack_config(server: FakeSlack, **extra: Any) -> dict[str, Any]:
    return {
        "slacktoken": TOKEN,
        "slackchannel": CHANNEL,
        "slack_base_url": server.base_url,
        **extra,
    }


def slack_env(server: FakeSlack | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XHELPERS_SLACK_")}
    if server is not None:
        env.update(
            {
                notify.ENV_TOKEN: TOKEN,
                notify.ENV_CHANNEL: CHANNEL,
                notify.ENV_BASE_URL: server.base_url,
            }
        )
    env.update(extra)
    return env


def escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parent(requests: Sequence[Request]) -> Request:
    first = requests[0]
    assert first.ok and first.thread_ts is None and first.text
    return first


def log_messages(requests: Sequence[Request]) -> list[Request]:
    return [r for r in requests if r.ok and r.text and r.text.startswith("```")]


def log_lines(requests: Sequence[Request]) -> list[str]:
    lines: list[str] = []
    for r in log_messages(requests):
        assert r.text is not None
        lines += r.text.split("```")[1].strip("\n").splitlines()
    return lines


def run_group(name: str, experiments: dict[str, Any], *patterns: str, **options: Any) -> Any:
    group = xh.ParametrizedExperiments(name, experiments)
    options.setdefault("config_file", False)
    options.setdefault("console", True)
    options.setdefault("quiet", True)
    return group(*patterns, **options)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


# -- settings, secrets, imports --------------------------------------------------------------
def test_settings_config_wins_environment_fills_in() -> None:
    env = {
        notify.ENV_TOKEN: "xoxb-from-env",
        notify.ENV_CHANNEL: "C-env",
        notify.ENV_BASE_URL: "http://env/api/",
    }
    config = xh.BaseConfig.with_updates({"slackchannel": "C-config"})
    s = notify.slack_settings(config, environ=env)
    assert s is not None
    assert (s.token, s.channel, s.base_url, s.level) == (
        "xoxb-from-env",
        "C-config",
        "http://env/api/",
        logging.WARNING,
    )
    config = xh.BaseConfig.with_updates(
        {"slacktoken": TOKEN, "slack_base_url": "http://cfg/api/", "slack_loglevel": "error"}
    )
    s = notify.slack_settings(config, environ=env)
    assert s is not None
    assert (s.token, s.channel, s.base_url, s.level) == (
        TOKEN,
        "C-env",
        "http://cfg/api/",
        logging.ERROR,
    )
    # nothing is sent without both
    assert notify.slack_settings(xh.BaseConfig(), environ={notify.ENV_TOKEN: TOKEN}) is None
    assert notify.slack_settings(xh.BaseConfig(), environ={notify.ENV_CHANNEL: CHANNEL}) is None
    assert notify.slack_settings(None, environ=env) is not None


def test_token_absent_from_reprs_and_redacted_config() -> None:
    config = xh.BaseConfig.with_updates({"slacktoken": TOKEN, "slackchannel": CHANNEL})
    settings = notify.slack_settings(config, environ={})
    assert settings is not None
    run = notify.SlackRun(settings, client=object())
    for text in (repr(config), str(config), repr(settings), repr(run), str(config.redacted())):
        assert TOKEN not in text
    assert config.redacted()["slacktoken"] == "***"


def test_importing_xhelpers_imports_no_slack() -> None:
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import xhelpers"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    assert "slack_sdk" not in proc.stderr
    assert "xhelpers.notify" not in proc.stderr


def test_a_run_without_slack_settings_imports_neither(tmp_path: Path) -> None:
    write_run_py(tmp_path, "xh.ParametrizedExperiments('g', {'a': ex.no_config})\n")
    code = (
        "import runpy, sys\n"
        "sys.argv = ['run.py', 'g']\n"
        "try:\n"
        "    runpy.run_path('run.py', run_name='__main__')\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "print('slack_sdk' in sys.modules, 'xhelpers.notify' in sys.modules)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=slack_env(None),
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "False False"


# -- a mixed run, through the CLI, -j2 ---------------------------------------------------------
MIXED = """\
import logging

log = logging.getLogger("study")


def ok():
    pass


def warns():
    log.warning("careful: x=1 < 2 & more")
    log.info("not posted: below the Slack level")


def boom():
    raise ValueError("bad value\\nsecond line")


xh.ParametrizedExperiments(
    "mixed", {"done_before": ok, "ok": ok, "warns": warns, "boom": boom}
)
"""


def test_mixed_run_j2_posts_one_thread(tmp_path: Path, slack: FakeSlack) -> None:
    write_run_py(tmp_path, MIXED)
    env = slack_env(slack)
    first = run_py(tmp_path, "mixed", "done_before", "--no-slack", env=env)
    assert first.returncode == 0, first.stderr
    assert slack.requests == []  # --no-slack

    proc = run_py(tmp_path, "mixed", "-j2", env=env)
    assert proc.returncode == 1, proc.stderr  # boom failed: Slack changes nothing
    assert OFF not in proc.stderr
    requests = slack.requests
    assert all(r.ok and r.token == TOKEN and r.channel == CHANNEL for r in requests)

    top = parent(requests)
    assert top.text == (
        f":arrow_forward: *mixed* started by {USER} on {HOST} (local, -j2): "
        "4 selected, 3 to run, 1 skipped"
    )
    replies = requests[1:]
    assert all(r.thread_ts == top.ts for r in replies)

    logs = log_messages(replies)
    assert 1 <= len(logs) <= 2  # batched: both records normally share one message
    assert not any(r.reply_broadcast for r in logs)
    assert sorted(log_lines(replies)) == [
        "[boom] ERROR failed: ValueError: bad value",
        "[warns] WARNING careful: x=1 &lt; 2 &amp; more",
    ]

    summary = replies[-1]
    assert summary.reply_broadcast  # something failed: also shown in the channel
    printed = proc.stdout.rstrip("\n")  # the summary the console shows
    assert printed.startswith("mixed: 2 succeeded, 1 skipped, 1 failed, 0 interrupted")
    assert summary.text == f":x: *mixed* finished: 1 failed\n```\n{escape(printed)}\n```"
    assert len(requests) == 2 + len(logs)


def test_python_api_slack_false_posts_nothing(slack: FakeSlack) -> None:
    summary = run_group("quiet", {"a": ok, "w": warns}, config=slack_config(slack), slack=False)
    assert summary.exit_code == 0
    assert slack.requests == []


def test_no_channel_posts_nothing(slack: FakeSlack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(notify.ENV_TOKEN, TOKEN)
    monkeypatch.setenv(notify.ENV_BASE_URL, slack.base_url)
    summary = run_group("nochan", {"a": ok, "w": warns})
    assert summary.exit_code == 0
    assert slack.requests == []


def test_environment_fills_what_config_leaves_unset(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notify.ENV_TOKEN, TOKEN)
    monkeypatch.setenv(notify.ENV_CHANNEL, "C-from-env")
    monkeypatch.setenv(notify.ENV_BASE_URL, slack.base_url)
    summary = run_group("envfill", {"a": ok}, config={"slackchannel": "C-from-config"})
    assert summary.exit_code == 0
    assert len(slack.requests) == 2  # parent and summary
    assert all(r.ok and r.token == TOKEN for r in slack.requests)
    assert {r.channel for r in slack.requests} == {"C-from-config"}
    assert slack.requests[1].text is not None
    assert slack.requests[1].text.startswith(":white_check_mark: *envfill* finished\n```\n")
    assert not slack.requests[1].reply_broadcast


# -- batching --------------------------------------------------------------------------------
def test_records_within_a_window_share_a_message(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(notify, "BATCH_WINDOW_S", 0.2)

    def bursts() -> None:
        for burst in range(3):
            for i in range(4):
                log.warning("burst %d record %d", burst, i)
            # the next burst only once this one is posted: three windows, three messages
            slack.wait_for(
                lambda rs, b=burst: any(f"burst {b} record 3" in (r.text or "") for r in rs),
                timeout=20,
                what=f"burst {burst}",
            )

    summary = run_group("bursty", {"bursts": bursts}, config=slack_config(slack))
    assert summary.exit_code == 0
    logs = log_messages(slack.requests)
    assert len(logs) == 3
    for burst, message in enumerate(logs):
        assert (
            message.text
            == "```\n"
            + "\n".join(f"[bursts] WARNING burst {burst} record {i}" for i in range(4))
            + "\n```"
        )
    assert len(slack.requests) == 5  # parent, 3 batches, summary


def test_a_flood_of_records_costs_one_capped_message(slack: FakeSlack) -> None:
    summary = run_group("flood", {"flood": flood}, config=slack_config(slack))
    assert summary.exit_code == 0
    assert len(slack.requests) == 3  # parent, one batch, summary
    (message,) = log_messages(slack.requests)
    assert message.text is not None
    assert len(message.text) <= notify.MAX_MESSAGE_CHARS + 200
    lines = log_lines(slack.requests)
    assert lines[0] == "[flood] WARNING flood record 0"
    assert lines[-1] == f"[flood] WARNING flood record {len(lines) - 1}"
    dropped = 1000 - len(lines)
    assert message.text.endswith(
        f"\n_{dropped} more records not posted; each experiment's experiment.log has them all_"
    )


# -- Slack misbehaving -----------------------------------------------------------------------
def test_rate_limited_then_posted(slack: FakeSlack, capsys: pytest.CaptureFixture[str]) -> None:
    slack.script(RATELIMITED)
    summary = run_group("limited", {"w": warns}, config=slack_config(slack))
    assert summary.exit_code == 0
    answers = [r.answer for r in slack.requests]
    assert answers == [RATELIMITED, "ok", "ok", "ok"]  # parent retried after Retry-After
    assert slack.requests[0].text == slack.requests[1].text
    assert all(r.thread_ts == slack.requests[1].ts for r in slack.requests[2:])
    assert OFF not in capsys.readouterr().err


def test_server_errors_are_retried(slack: FakeSlack, capsys: pytest.CaptureFixture[str]) -> None:
    slack.script(SERVER_ERROR, SERVER_ERROR)
    summary = run_group("flaky", {"a": ok}, config=slack_config(slack))
    assert summary.exit_code == 0
    assert [r.answer for r in slack.requests] == [SERVER_ERROR, SERVER_ERROR, "ok", "ok"]
    assert OFF not in capsys.readouterr().err


def test_server_errors_beyond_the_retries_leave_slack_alone(
    slack: FakeSlack, capsys: pytest.CaptureFixture[str]
) -> None:
    slack.default = SERVER_ERROR
    summary = run_group("down", {"w": warns, "boom": boom}, config=slack_config(slack))
    assert summary.exit_code == 1  # boom's, as without Slack
    assert len(slack.requests) == 3  # the parent, retried twice; then nothing
    err = capsys.readouterr().err
    assert err.count(OFF) == 1
    assert "Slack answered HTTP 500 (after retries)" in err


def test_unreachable_slack(
    slack: FakeSlack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = slack_config(slack, slack_base_url=f"http://127.0.0.1:{port}/api/")
    summary = run_group("nowhere", {"a": ok, "w": warns}, config=config)
    assert summary.exit_code == 0
    err = capsys.readouterr().err
    assert err.count(OFF) == 1
    assert f"cannot reach http://127.0.0.1:{port}/api/" in err
    assert TOKEN not in err


BAD_ANSWERS = [
    ("error:invalid_auth", "invalid_auth: check the token (slacktoken or XHELPERS_SLACK_TOKEN)", 1),
    (
        "error:channel_not_found",
        f"channel_not_found: check the channel id '{CHANNEL}' "
        "(slackchannel or XHELPERS_SLACK_CHANNEL)",
        2,
    ),
]


@pytest.mark.parametrize(("answer", "said", "jobs"), BAD_ANSWERS)
def test_refused_by_slack_one_warning_same_exit_code(
    tmp_path: Path, slack: FakeSlack, answer: str, said: str, jobs: int
) -> None:
    slack.default = answer
    write_run_py(tmp_path, MIXED)
    proc = run_py(tmp_path, "mixed", f"-j{jobs}", env=slack_env(slack))
    assert proc.returncode == 1, proc.stderr  # boom failed; as without Slack
    assert len(slack.requests) == 1  # the parent; Slack is left alone after
    assert proc.stderr.count(OFF) == 1
    assert f"WARNING {OFF}: {said}\n" in proc.stderr
    assert TOKEN not in proc.stderr + proc.stdout
    for path in files_under(tmp_path / "results"):
        assert OFF not in path.read_text(errors="replace")  # not in experiment logs
    assert proc.stdout.startswith("mixed: 3 succeeded, 0 skipped, 1 failed")


def test_failing_while_an_inline_experiment_runs_warns_outside_it(
    slack: FakeSlack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slack.default = "error:invalid_auth"

    def waits() -> None:
        slack.wait_requests(1)  # the parent, refused; now wait until Slack gave up
        deadline = time.monotonic() + 30
        while any(t.name == "xhelpers-slack" for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the Slack thread never ended"
            time.sleep(0.01)
        log.warning("still here")

    summary = run_group("inline", {"waits": waits}, config=slack_config(slack))
    assert summary.exit_code == 0
    assert capsys.readouterr().err.count(OFF) == 1
    text = (tmp_path / "results" / "inline" / "waits" / "experiment.log").read_text()
    assert "still here" in text and OFF not in text


def test_a_server_that_never_answers_cannot_hold_the_run(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    slack.default = HANG
    monkeypatch.setattr(notify, "CALL_TIMEOUT_S", 60)  # only the flush deadline ends it
    monkeypatch.setattr(notify, "FLUSH_TIMEOUT_S", 1.0)
    start = time.monotonic()
    summary = run_group("hung", {"a": ok, "w": warns}, config=slack_config(slack))
    elapsed = time.monotonic() - start
    assert summary.exit_code == 0
    assert summary["a"].status == "success"
    assert elapsed < 30  # returned: bounded by the flush deadline, not the server
    err = capsys.readouterr().err
    assert err.count(OFF) == 1
    assert "no answer within 1 s at the end of the run; the last messages are not posted" in err
    assert len(slack.requests) == 1


def test_a_hung_slack_does_not_keep_the_process_alive(tmp_path: Path, slack: FakeSlack) -> None:
    slack.default = HANG
    write_run_py(
        tmp_path,
        MIXED + "import xhelpers.notify as n\nn.CALL_TIMEOUT_S = 600\nn.FLUSH_TIMEOUT_S = 1.0\n",
    )
    proc = run_py(tmp_path, "mixed", "ok", "warns", env=slack_env(slack), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count(OFF) == 1
    assert proc.stdout.startswith("mixed: 2 succeeded")


# -- secrets ---------------------------------------------------------------------------------
HELD = """
import xhelpers.notify as n

n.BATCH_WINDOW_S = 0.1


def holds():
    log.warning("holding")
    ex.wait_for_file(started="started.txt", release={release!r})


xh.ParametrizedExperiments("held", {{"warns": warns, "boom": boom, "holds": holds}})
"""


@pytest.mark.parametrize("jobs", [1, 2])
def test_token_never_written_anywhere(tmp_path: Path, slack: FakeSlack, jobs: int) -> None:
    """-vv, and Slack posting (with slack_sdk's retries) while an experiment runs."""
    slack.script(RATELIMITED, SERVER_ERROR)  # slack_sdk's retry paths, which it logs
    (tmp_path / "config.py").write_text(
        "class Config:\n"
        f"    slacktoken = {TOKEN!r}\n"
        f"    slackchannel = {CHANNEL!r}\n"
        f"    slack_base_url = {slack.base_url!r}\n"
        "    slack_loglevel = 'INFO'\n"
    )
    release = tmp_path / "release"
    write_run_py(tmp_path, MIXED + HELD.format(release=str(release)))
    proc = subprocess.Popen(
        [sys.executable, "run.py", "held", f"-j{jobs}", "-vv"],
        cwd=tmp_path,
        env=slack_env(None),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # "holding" is posted while its experiment still runs (the root logger at DEBUG)
        slack.wait_for(
            lambda rs: any(r.ok and "holding" in (r.text or "") for r in rs), what="holding"
        )
    finally:
        release.write_text("go")
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert TOKEN not in out and TOKEN not in err
    assert "chat.postMessage" not in err  # slack_sdk's own logs stay out of the console
    assert OFF not in err
    assert slack.requests and all(r.token == TOKEN for r in slack.requests)  # it was used
    files = files_under(tmp_path / "results")
    assert (tmp_path / "results" / "held" / "holds" / "experiment.log") in files
    for path in files:
        data = path.read_bytes()
        assert TOKEN.encode() not in data, path
        if path.name == "experiment.log":
            assert b"slack_sdk" not in data and b"chat.postMessage" not in data, path


# -- SLURM: tasks post into the run's thread themselves ------------------------------------
def test_post_outcome_into_a_shipped_thread(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(notify.ENV_TOKEN, TOKEN)  # the node's own environment
    monkeypatch.setenv(notify.ENV_BASE_URL, slack.base_url)
    thread = {"channel": "C-run", "thread_ts": "1700000000.000100"}
    folder = str(tmp_path / "results" / "g" / "sweep" / "a")
    assert notify.post_outcome(
        thread, "sweep/a", "failed", folder, duration=12.34, error="ValueError: x < 1\nmore"
    )
    assert notify.post_outcome(thread, "sweep/b", "success", folder[:-1] + "b", duration=1.0)
    first, second = slack.requests
    assert (first.channel, first.thread_ts, first.token) == ("C-run", "1700000000.000100", TOKEN)
    assert first.text == (
        f":x: [sweep/a] failed on {HOST} after 12.3s: ValueError: x &lt; 1  (results/g/sweep/a)"
    )
    assert second.text == (
        f":white_check_mark: [sweep/b] succeeded on {HOST} after 1.0s  (results/g/sweep/b)"
    )
    assert not first.reply_broadcast


def test_post_outcome_never_raises(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    thread = {"channel": "C-run", "thread_ts": "1.2"}
    assert not notify.post_outcome(thread, "a", "success", "/x")  # no token on the node
    assert not notify.post_outcome(None, "a", "success", "/x")  # no thread: no Slack
    assert slack.requests == []
    slack.default = "error:invalid_auth"
    monkeypatch.setenv(notify.ENV_BASE_URL, slack.base_url)
    config = xh.BaseConfig.with_updates({"slacktoken": TOKEN})
    with caplog.at_level(logging.WARNING, logger="xhelpers.notify"):
        assert not notify.post_outcome(thread, "a", "success", "/x", config=config)
    assert len(slack.requests) == 1
    assert [r.getMessage() for r in caplog.records if OFF in r.getMessage()] == [
        f"{OFF}: invalid_auth: check the token (slacktoken or XHELPERS_SLACK_TOKEN)"
    ]
    assert TOKEN not in caplog.text


def test_task_thread_posts_the_tasks_records(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(notify.ENV_TOKEN, TOKEN)
    monkeypatch.setenv(notify.ENV_BASE_URL, slack.base_url)
    thread = {"channel": "C-run", "thread_ts": "5.6"}
    with notify.task_thread(thread) as run:
        assert run is not None
        log.info("not posted")
        log.warning("from the node")
        run.outcome("n", "success", "/r/g/n", 2.0)
    (records, outcome) = slack.requests
    assert records.text == "```\nWARNING from the node\n```"
    assert outcome.text is not None and outcome.text.startswith(":white_check_mark: [n]")
    assert {r.thread_ts for r in slack.requests} == {"5.6"}


class NodeLike(Backend):
    """Runs tasks here, as a SLURM task would on its node: posting into the shipped thread."""

    name = "nodelike"
    shipped: list[Any] = []

    def submit(self, tasks: Sequence[Any]) -> dict[str, Submitted]:
        self._tasks = list(tasks)
        return {}

    @classmethod
    def states(cls, refs: Iterable[str]) -> dict[str, JobStatus]:
        return dict.fromkeys(refs, UNKNOWN_STATUS)

    @classmethod
    def cancel(cls, refs: Iterable[str]) -> dict[str, bool]:
        return dict.fromkeys(refs, False)

    def reports(self) -> Iterator[Finished]:
        for task in self._tasks:
            ctx: RunContext = pickle.loads(pickle.dumps(self.ctx))  # as shipped to the node
            assert isinstance(ctx.watcher, notify.NodeThread)
            NodeLike.shipped.append(ctx.watcher.thread)
            result = execute(task, ctx)
            notify.post_outcome(
                ctx.watcher.thread,
                task.name,
                result.status,
                task.folder,
                duration=result.duration,
                error=result.error,
                config=ctx.config,
            )
            yield Finished(task, result)


def test_the_runner_ships_the_thread_to_other_backends(
    slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(backends._REGISTRY, "nodelike", f"{__name__}:NodeLike")
    NodeLike.shipped.clear()
    summary = run_group(
        "shipped", {"a": ok, "boom": boom}, backend="nodelike", config=slack_config(slack)
    )
    assert summary.exit_code == 1
    top = parent(slack.requests)
    assert NodeLike.shipped == [{"channel": CHANNEL, "thread_ts": top.ts}] * 2
    assert top.text is not None and "(nodelike): 2 selected, 2 to run" in top.text
    texts = [r.text or "" for r in slack.requests[1:]]
    assert any(t.startswith(":white_check_mark: [a] succeeded on ") for t in texts)
    assert any(
        t.startswith(":x: [boom] failed on ") and "ValueError: bad value" in t for t in texts
    )
    assert all(r.thread_ts == top.ts for r in slack.requests[1:])
    assert slack.requests[-1].reply_broadcast


def test_the_fake_server_speaks_form_bodies_too(slack: FakeSlack) -> None:
    from slack_sdk import WebClient

    client = WebClient(token=TOKEN, base_url=slack.base_url)
    response = client.api_call(
        "chat.postMessage",
        data={"channel": CHANNEL, "text": "form", "thread_ts": "1.2", "reply_broadcast": "1"},
    )
    assert response["ok"]
    (request,) = slack.requests
    assert (request.token, request.channel, request.text) == (TOKEN, CHANNEL, "form")
    assert (request.thread_ts, request.reply_broadcast) == ("1.2", True)
