"""Remote mode (--remote, --pull) against a real OpenSSH server on 127.0.0.1.

The "remote" is a folder on this machine reached through sshd (tests/sshd_support.py);
its environment is made with uv from its cache (offline: no network in tests), with
xhelpers installed from a copy of this checkout; its SLURM is the local cluster.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, wait_until
from slack_server import fake_slack
from sshd_server import ALIAS, SshServer

RUN_PY = """\
import json, os, sys, time
from functools import partial
import xhelpers as xh

def train(lr, seconds=0):
    print(f"training lr={lr}", flush=True)
    time.sleep(seconds)
    with open("result.json", "w") as f:
        json.dump({"lr": lr, "loss": 1 - lr}, f)
    with open("model.checkpoint", "w") as f:
        f.write("weights")

names = {"lr=0.1": partial(train, 0.1), "lr=0.01": partial(train, 0.01),
         "zz slow \\"quoted\\" it's": partial(train, 0.5, seconds=120)}
xh.ParametrizedExperiments("main", names)

if __name__ == "__main__":
    xh.experiment_cli()
"""


def _uv() -> str | None:
    for candidate in (
        shutil.which("uv"),
        ROOT / ".venv-uv" / "bin" / "uv",
        Path(sys.executable).resolve().parents[2] / ".venv-uv" / "bin" / "uv",
        Path(sys.executable).parents[2] / ".venv-uv" / "bin" / "uv",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.fixture(scope="session")
def xhelpers_source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This checkout's package, copied: building it in place would litter the tree."""
    src = tmp_path_factory.mktemp("xhelpers-src")
    shutil.copytree(
        ROOT / "xhelpers", src / "xhelpers", ignore=shutil.ignore_patterns("__pycache__")
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    return src


class Project:
    def __init__(self, folder: Path, remote: Path, ssh_config: Path) -> None:
        self.folder, self.remote, self.ssh_config = folder, remote, ssh_config

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "run.py", *args],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "run.py", *args],
            cwd=self.folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    def remote_meta(self, name: str) -> dict[str, object]:
        data: dict[str, object] = json.loads(
            (self.remote / "results" / "main" / name / "metafile.json").read_text()
        )
        return data

    def remote_status(self, name: str) -> str | None:
        try:
            return str(self.remote_meta(name)["status"])
        except (OSError, ValueError):
            return None


def _config(remote: Path, ssh_config: Path, uv: str, **extra: object) -> str:
    settings = {
        "host": ALIAS,
        "folder": str(remote),
        "ssh_config": str(ssh_config),
        "python": sys.executable,
        "installer": "uv",
        "install_options": ["--offline"],
        "setup": [f"export PATH={os.path.dirname(uv)}:$PATH"],
        **extra,
    }
    return f"class Config:\n    remote = {{'test': {settings!r}}}\n"


def make_project(
    base: Path, sshd: SshServer, source: Path, remote_name: str = "remote study"
) -> Project:
    uv = _uv()
    if uv is None:
        if os.environ.get("CI") == "true":
            pytest.fail("the remote tests make environments with uv: none found")
        pytest.skip("uv not found (make test installs it in .venv-uv)")
    folder = base / "laptop"
    folder.mkdir()
    remote = base / remote_name
    ssh_config = sshd.client_config(base.name)
    (folder / "run.py").write_text(RUN_PY)
    (folder / "requirements.txt").write_text(f"xhelpers @ {source.as_uri()}\n")
    (folder / ".gitignore").write_text("results/\n")
    (folder / "config.py").write_text(_config(remote, ssh_config, uv))
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    subprocess.run(["git", "-C", str(folder), "add", "run.py", ".gitignore"], check=True)
    return Project(folder, remote, ssh_config)


@pytest.fixture
def project(tmp_path: Path, sshd: SshServer, xhelpers_source: Path) -> Iterator[Project]:
    yield make_project(tmp_path, sshd, xhelpers_source)


def test_first_run_then_reuse_then_dependency_change(project: Project) -> None:
    first = project.run("main", "lr=*", "--remote", "test", "-j2")
    assert first.returncode == 0, first.stderr
    assert "setting up the environment of remote test" in first.stderr
    assert "training lr=0.1" in first.stdout  # the remote run's output, streamed here
    assert project.remote_status("lr=0.1") == project.remote_status("lr=0.01") == "success"
    assert (project.remote / ".venv").is_symlink()
    assert not (project.remote / "config.py").exists()  # this machine's config stays here
    assert (project.remote / ".xhelpers" / "env.log").is_file()
    synced = (project.remote / "run.py").stat().st_ino
    env = (project.remote / ".venv").resolve()

    second = project.run("main", "lr=*", "--remote", "test")
    assert second.returncode == 0, second.stderr
    assert "setting up" not in second.stderr
    assert (project.remote / ".venv").resolve() == env
    assert (project.remote / "run.py").stat().st_ino == synced  # unchanged: not sent again

    with open(project.folder / "requirements.txt", "a") as f:
        f.write("tabulate\n")
    third = project.run("main", "lr=*", "--remote", "test", "-l")
    assert third.returncode == 0, third.stderr
    assert "setting up the environment" in third.stderr
    assert (project.remote / ".venv").resolve() != env
    assert third.stdout.count(" done ") == 2, third.stdout


def test_setup_interrupted_halfway_is_completed(project: Project) -> None:
    done = project.run("main", "lr=0.1", "--remote", "test", "-l")
    assert done.returncode == 0, done.stderr
    # A set-up cut short: the key's folder half made, never marked ready.
    from xhelpers.config import BaseConfig, resolve_config
    from xhelpers.remote.environment import plan_environment

    with open(project.folder / "requirements.txt", "a") as f:
        f.write("tabulate\n")
    config = resolve_config(BaseConfig, config_file=str(project.folder / "config.py"))
    key = plan_environment(project.folder, config.remote["test"], "test").key
    half = project.remote / ".xhelpers" / "venvs" / key
    (half / "bin").mkdir(parents=True)
    (half / "bin" / "python").write_text("garbage")
    again = project.run("main", "lr=0.1", "--remote", "test")
    assert again.returncode == 0, again.stderr
    assert (project.remote / ".venv").resolve() == half
    assert (half / ".xhelpers-env").read_text() == key


def test_setup_cut_short_is_completed_by_the_next_call(
    tmp_path: Path, sshd: SshServer, xhelpers_source: Path
) -> None:
    project = make_project(tmp_path, sshd, xhelpers_source)
    uv = _uv() or "uv"
    # uv, held at its install step (the venv made already) until "release" exists.
    wrap, started, release = tmp_path / "wrap", tmp_path / "started", tmp_path / "release"
    wrap.mkdir()
    (wrap / "uv").write_text(
        f'#!/bin/sh\nif [ "$1" = pip ] && [ ! -e {release} ]; then\n  echo $$ > {started}\n'
        f'  while [ ! -e {release} ]; do sleep 0.05; done\nfi\nexec {uv} "$@"\n'
    )
    (wrap / "uv").chmod(0o755)
    setup = [f"export PATH={wrap}:{os.path.dirname(uv)}:$PATH"]
    (project.folder / "config.py").write_text(
        _config(project.remote, project.ssh_config, uv, setup=setup)
    )
    process = project.popen("main", "lr=0.1", "--remote", "test")
    wait_until(started.exists, 120, "the set-up to reach its install step")
    assert process.stderr is not None
    process.send_signal(signal.SIGINT)
    wait_until(lambda: "Ctrl-C sent" in process.stderr.readline(), 30, "the first Ctrl-C")
    process.send_signal(signal.SIGINT)  # the second: disconnect, the set-up half done
    process.communicate(timeout=60)
    assert process.returncode == 130
    wait_until(lambda: started.read_text().strip() != "", 10, "the wrapper's pid")
    os.kill(int(started.read_text()), signal.SIGKILL)  # the set-up dies halfway
    half = list((project.remote / ".xhelpers" / "venvs").iterdir())
    assert len(half) == 1 and not (half[0] / ".xhelpers-env").exists()
    assert not (project.remote / ".venv").exists()  # nothing half made is in use

    release.touch()
    again = project.run("main", "lr=0.1", "--remote", "test")
    assert again.returncode == 0, again.stderr
    assert "setting up the environment" in again.stderr
    assert project.remote_status("lr=0.1") == "success"
    assert (project.remote / ".venv").resolve() == half[0]
    assert (half[0] / ".xhelpers-env").is_file()


def test_failing_setup_names_the_step(project: Project) -> None:
    (project.folder / "requirements.txt").write_text("no-such-package-xhelpers-test\n")
    done = project.run("main", "lr=0.1", "--remote", "test")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "environment set-up failed at step install" in last
    assert "env.log" in last


def test_pull_is_incremental_and_leaves_checkpoints(project: Project) -> None:
    assert project.run("main", "lr=*", "--remote", "test").returncode == 0
    first = project.run("main", "--pull", "test")
    assert first.returncode == 0, first.stderr
    local = project.folder / "results" / "main"
    assert json.loads((local / "lr=0.1" / "result.json").read_text())["lr"] == 0.1
    assert (local / "lr=0.1" / "metafile.json").is_file()
    assert not (local / "lr=0.1" / "model.checkpoint").exists()
    assert "pulled 0 " not in first.stdout
    second = project.run("main", "--pull", "test")
    assert second.returncode == 0, second.stderr
    assert "pulled 0 changed files" in second.stdout
    listed = project.run("main", "lr=*", "-l")  # the views work here, on what was pulled
    assert listed.stdout.count(" done ") == 2, listed.stdout
    with_ckpt = project.run("main", "lr=0.1", "--pull", "test", "--with-checkpoints")
    assert with_ckpt.returncode == 0, with_ckpt.stderr
    assert "pulled 1 changed file " in with_ckpt.stdout
    assert (local / "lr=0.1" / "model.checkpoint").read_text() == "weights"


def test_pull_never_writes_outside_the_tree(project: Project) -> None:
    assert project.run("main", "lr=0.1", "--remote", "test").returncode == 0
    outside = project.folder.parent / "outside"
    outside.mkdir()
    remote = project.remote / "results" / "main" / "lr=0.1"
    (remote / "escape").symlink_to(outside)
    (remote / "..evil").write_text("x")
    done = project.run("main", "--pull", "test")
    assert done.returncode == 0, done.stderr
    assert not (project.folder / "results" / "main" / "lr=0.1" / "escape").exists()
    assert list(outside.iterdir()) == []
    # A local symlink leading out of the tree is refused, not written through.
    local = project.folder / "results" / "main"
    shutil.rmtree(local)
    local.symlink_to(outside)
    refused = project.run("main", "--pull", "test")
    assert refused.returncode == 1
    assert "leads out of the result tree" in refused.stderr
    assert list(outside.iterdir()) == []


def _wait_running(project: Project, name: str) -> None:
    wait_until(lambda: project.remote_status(name) == "running", 120, f"{name} running")


def test_ctrl_c_stops_the_remote_run_and_records_it(project: Project) -> None:
    slow = 'zz slow "quoted" it\'s'
    process = project.popen("main", "--remote", "test")
    _wait_running(project, slow)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert project.remote_status(slow) == "interrupted"
    assert project.remote_status("lr=0.1") == "success"  # what finished stays finished
    assert "Ctrl-C sent to remote 'test'" in err


def _command_lines() -> list[bytes]:
    lines = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                lines.append(Path(f"/proc/{entry}/cmdline").read_bytes())
            except OSError:
                pass
    return lines


def test_slack_token_travels_in_the_environment_only(project: Project) -> None:
    secret = "xoxb-remote-test-secret"
    slow = 'zz slow "quoted" it\'s'
    with fake_slack() as slack:
        with open(project.folder / "config.py", "a") as f:
            f.write(
                f"    slacktoken = {secret!r}\n    slackchannel = 'C123'\n"
                f"    slack_base_url = {slack.base_url!r}\n"
            )
        process = project.popen("main", "--remote", "test")
        _wait_running(project, slow)
        assert not [line for line in _command_lines() if secret.encode() in line]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        assert process.returncode == 130, err
        posted = slack.posted
        assert posted and {r.token for r in posted} == {secret}  # the remote run posted
    for dirpath, _, filenames in os.walk(project.remote):
        if "/.xhelpers/venvs" in dirpath:
            continue
        for name in filenames:
            path = Path(dirpath, name)
            if not path.is_symlink():
                assert secret.encode() not in path.read_bytes(), path


def test_dropped_connection_keeps_results_and_a_rerun_resumes(
    project: Project, sshd: SshServer
) -> None:
    slow = 'zz slow "quoted" it\'s'
    process = project.popen("main", "--remote", "test")
    _wait_running(project, slow)
    for pid in sshd.session_pids():  # the server side of every connection: dropped
        os.kill(pid, signal.SIGKILL)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "connection to xhtest was lost" in err.strip().splitlines()[-1]
    wait_until(lambda: project.remote_status(slow) == "interrupted", 60, "the run to stop")
    assert project.remote_status("lr=0.1") == "success"
    rerun = project.run("main", "--remote", "test", "-n")  # what a rerun would do
    assert rerun.returncode == 0, rerun.stderr
    assert "would run 1 and skip 2 of 3 selected" in rerun.stdout, rerun.stdout


def test_unknown_or_changed_host_key_is_refused(project: Project, sshd: SshServer) -> None:
    unknown = sshd.client_config("unknown", known_key="")
    (project.folder / "config.py").write_text(_config(project.remote, unknown, _uv() or "uv"))
    done = project.run("main", "--remote", "test", "-l")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: remote 'test': the host key of xhtest is unknown: log in once with `ssh "
        "xhtest` and check the fingerprint it shows (or add the key to known_hosts); "
        "xhelpers never accepts an unknown host key"
    ]
    assert (sshd.folder / "known_hosts-unknown").read_text() == ""  # nothing accepted
    assert not project.remote.exists()

    other = sshd.folder / "other_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    changed = sshd.client_config(
        "changed", known_key=" ".join(other.with_suffix(".pub").read_text().split()[:2])
    )
    (project.folder / "config.py").write_text(_config(project.remote, changed, _uv() or "uv"))
    done = project.run("main", "--pull", "test")
    assert done.returncode == 1
    assert "the host key of xhtest has CHANGED" in done.stderr


def test_slurm_no_wait_then_list_until_done(project: Project, slurm_cluster: object) -> None:
    (project.folder / "cluster_config.py").write_text(
        "class Config:\n    slurm_poll_interval_s = 0.5\n"
    )
    config = project.folder / "config.py"
    config.write_text(
        _config(project.remote, project.ssh_config, _uv() or "uv", config="cluster_config.py")
    )
    submitted = project.run("main", "lr=*", "--remote", "test", "--slurm", "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    assert "submitted to" in submitted.stdout
    assert "-l --remote test" in submitted.stderr

    def done() -> bool:
        listed = project.run("main", "lr=*", "-l", "--remote", "test")
        assert listed.returncode == 0, listed.stderr
        return listed.stdout.count(" done ") == 2

    wait_until(done, 180, "the SLURM jobs to finish")


def test_names_with_spaces_quotes_and_dollars(
    tmp_path: Path, sshd: SshServer, xhelpers_source: Path
) -> None:
    project = make_project(tmp_path, sshd, xhelpers_source, 'it\'s a "$HOME" `x` folder')
    (project.folder / "my data $x.txt").write_text("synced")
    name = 'zz slow "quoted" it\'s'
    # The slow one, cut to a moment: its name has a space and both quotes.
    (project.folder / "run.py").write_text(RUN_PY.replace("seconds=120", "seconds=0"))
    done = project.run("main", "zz*", "--remote", "test")
    assert done.returncode == 0, done.stderr
    assert (project.remote / "my data $x.txt").read_text() == "synced"
    assert project.remote_status(name) == "success"
    pulled = project.run("main", "zz*", "--pull", "test")
    assert pulled.returncode == 0, pulled.stderr
    assert (project.folder / "results" / "main" / name / "result.json").is_file()


def test_config_errors_are_one_line(tmp_path: Path) -> None:
    from xhelpers.config import BaseConfig
    from xhelpers.errors import ConfigError

    with pytest.raises(ConfigError, match=r"field 'remote.c.ssh_options'.*Key=Value"):
        BaseConfig.with_updates(
            {"remote": {"c": {"host": "h", "folder": "f", "ssh_options": ["-v"]}}}
        )
    with pytest.raises(ConfigError, match="is not 'host:folder'"):
        BaseConfig.with_updates({"remote": "just-a-host"})
    config = BaseConfig.with_updates({"remote": "login.example.org:~/study"})
    assert config.remote["login.example.org"].folder == "~/study"


def test_unknown_remote_name_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "run.py").write_text(RUN_PY)
    (tmp_path / "config.py").write_text("class Config:\n    remote = 'h:~/x'\n")
    done = subprocess.run(
        [sys.executable, "run.py", "main", "--remote", "nope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "Error: no remote named 'nope'; remotes: h"


def test_remote_arguments_and_paths_are_quoted() -> None:
    from xhelpers.remote import remote_arguments
    from xhelpers.remote.ssh import remote_path

    assert remote_arguments(["*x*", "--remote", "c", "-j4", "--config=a.py", "--", "--remote"]) == [
        "*x*",
        "-j4",
        "--",
        "--remote",
    ]
    assert remote_path("~/a b") == "\"$HOME\"/'a b'"
    assert remote_path("/it's") == "'/it'\"'\"'s'"
    assert remote_path("rel") == '"$HOME"/rel'


@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_remote_script_is_valid_sh_for_each_installer(tmp_path: Path, installer: str) -> None:
    from xhelpers.config import RemoteSettings
    from xhelpers.remote.environment import plan_environment, remote_script

    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    settings = RemoteSettings(
        host="h",
        folder="~/it's $x",
        installer=installer,  # type: ignore[arg-type]
        setup=["module load python/3.11"],
        install_options=["--index-url", "https://example.org/a b"],
    )
    env = plan_environment(tmp_path, settings, "c")
    assert env.install == ("-e", ".")
    script = remote_script("c", settings, env, "sub dir", ["run.py", "main", "*it's $x*"])
    assert "'https://example.org/a b' -e ." in script
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    changed = RemoteSettings(**{**settings.model_dump(), "python": "python3.12"})
    assert plan_environment(tmp_path, changed, "c").key != env.key


def test_host_key_checking_cannot_be_turned_off() -> None:
    from xhelpers.config import RemoteSettings
    from xhelpers.remote.ssh import Connection

    settings = RemoteSettings(host="h", folder="f", ssh_options=["StrictHostKeyChecking=no"])
    argv = Connection("c", settings).ssh_argv()
    # ssh keeps the first value of an option: ours comes before the user's
    assert argv.index("StrictHostKeyChecking=yes") < argv.index("StrictHostKeyChecking=no")
