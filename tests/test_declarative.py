"""Experiment files (TOML): `python -m xhelpers run`, load_experiments, and file errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import meta, run_py

import xhelpers as xh
from xhelpers import framework
from xhelpers.__main__ import main
from xhelpers.define.toml import _key_lines, read_experiments
from xhelpers.errors import ExperimentFileError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ARGV_PY = """\
import json, os, sys
json.dump({"argv": sys.argv[1:], "env": os.environ.get("XH_MODE")}, open("argv.json", "w"))
"""

EXPERIMENTS = """\
# a sweep and two longer runs of one script
[sweep]
description = "learning rates and seeds"
command = "{py} {here}/tools/argv.py --lr {lr} --seed {seed} --epochs {epochs} --out {cwd}"
name = "lr={lr}/seed={seed}"
default_args = { epochs = 3, py = "PYTHON" }
grid = { lr = [0.1, 1e-5], seed = [0, 1] }
env = { XH_MODE = "fast" }

[[sweep.batch_args]]
name = "long/{seed}"
lr = 0.1
seed = 0
epochs = 30

[[sweep.batch_args]]
name = "quoted"
lr = "it's $1"
seed = 5

[other]
command = "{py} {here}/tools/argv.py {x}"
name = "x={x}"
default_args = { py = "PYTHON" }
batch_args = [{ x = 1 }, { x = "two words" }]
"""


def xhelpers_run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "xhelpers", "run", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def study(tmp_path: Path) -> Path:
    """experiments.toml in a project folder, its script in a subfolder; runs start elsewhere."""
    project = tmp_path / "project"
    (project / "tools").mkdir(parents=True)
    (project / "tools/argv.py").write_text(ARGV_PY)
    text = EXPERIMENTS.replace('"PYTHON"', json.dumps(sys.executable))
    (project / "experiments.toml").write_text(text)
    return tmp_path


def test_python_m_xhelpers_runs_a_toml_file_end_to_end(study: Path) -> None:
    done = xhelpers_run(study, "project/experiments.toml", "sweep", "-j2")
    assert done.returncode == 0, done.stderr
    assert "sweep: 6 succeeded" in done.stdout
    results = study / "results/sweep"
    got = json.loads((results / "lr=1e-05/seed=1/argv.json").read_text())
    assert got["argv"] == [
        "--lr",
        "1e-05",
        "--seed",
        "1",
        "--epochs",
        "3",
        "--out",
        str(results / "lr=1e-05/seed=1"),
    ]
    assert got["env"] == "fast"
    assert json.loads((results / "long/0/argv.json").read_text())["argv"][:6] == [
        "--lr",
        "0.1",
        "--seed",
        "0",
        "--epochs",
        "30",
    ]
    assert json.loads((results / "quoted/argv.json").read_text())["argv"][1] == "it's $1"
    data = meta(results / "quoted")
    assert data["function"] == "xhelpers.commands.command"
    assert data["arguments"]["kwargs"]["lr"] == repr("it's $1")

    again = xhelpers_run(study, "project/experiments.toml", "sweep", "lr=0.1/*")
    assert again.returncode == 0 and "0 succeeded, 2 skipped" in again.stdout
    listed = xhelpers_run(study, "project/experiments.toml", "sweep", "-l")
    assert listed.returncode == 0 and "6 done" in listed.stdout
    helped = xhelpers_run(study, "project/experiments.toml", "sweep", "--help")
    assert "learning rates and seeds" in helped.stdout and "long/0" in helped.stdout
    groups = xhelpers_run(study, "project/experiments.toml", "--help")
    assert "sweep" in groups.stdout and "other" in groups.stdout

    other = xhelpers_run(study, "project/experiments.toml", "other", "-v")
    assert other.returncode == 0, other.stderr
    assert json.loads((study / "results/other/x=two words/argv.json").read_text())["argv"] == [
        "two words"
    ]
    assert "[x=1] INFO $ " in other.stderr


def test_group_may_be_left_out_only_with_one_group(study: Path) -> None:
    several = xhelpers_run(study, "project/experiments.toml")
    assert several.returncode == 2
    assert "defines several groups; name one: sweep, other" in several.stderr
    unknown = xhelpers_run(study, "project/experiments.toml", "nope")
    assert unknown.returncode == 2 and "has no group 'nope'" in unknown.stderr
    (study / "one.toml").write_text(
        '[solo]\ncommand = "echo {x}"\nbatch_args = [{name = "a", x = 1}]\n'
    )
    solo = xhelpers_run(study, "one.toml", "a")
    assert solo.returncode == 0 and "solo: 1 succeeded" in solo.stdout


def test_run_py_one_liner(study: Path) -> None:
    (study / "run.py").write_text(
        "import xhelpers as xh\n"
        'xh.load_experiments("project/experiments.toml")\n'
        'if __name__ == "__main__":\n'
        "    xh.experiment_cli()\n"
    )
    done = run_py(study, "other", "-j2")
    assert done.returncode == 0, done.stderr
    assert (study / "results/other/x=1/argv.json").exists()


def test_load_and_read_experiments(study: Path) -> None:
    path = study / "project/experiments.toml"
    unregistered = read_experiments(path)
    assert list(unregistered) == ["sweep", "other"]
    assert list(unregistered["sweep"]) == [
        "lr=0.1/seed=0",
        "lr=0.1/seed=1",
        "lr=1e-05/seed=0",
        "lr=1e-05/seed=1",
        "long/0",
        "quoted",
    ]
    assert "sweep" not in framework.groups()
    cmd = unregistered["sweep"]["long/0"]
    assert cmd.params == {"epochs": 30, "py": sys.executable, "lr": 0.1, "seed": 0}
    assert cmd.env == {"XH_MODE": "fast"} and cmd.here == str(study / "project")
    defined = xh.load_experiments(path)
    assert framework.groups()["sweep"] is defined["sweep"]
    assert defined["sweep"].description == "learning rates and seeds"
    with pytest.raises(ExperimentFileError, match="already registered"):
        xh.load_experiments(path)


BAD_FILES = [
    # (file text, line, key, part of the message)
    (
        '[g]\ncommand = "echo {lr}"\nname = "lr={lr}"\ngrid = { lr = [1, 2] \n',
        4,
        "grid",
        "invalid TOML",
    ),
    ('[g]\ncomand = "echo"\n', 2, "g.comand", "did you mean 'command'?"),
    ('[g]\nname = "x"\n', 1, "g", "missing key 'command'"),
    ("x = 1\n", 1, "x", "must be tables"),
    (
        '[g]\ncommand = "echo {lr}"\nname = "lr={lr}"\ngrid = { lr = 0.1 }\n',
        4,
        "g.grid.lr",
        "must be an array",
    ),
    (
        '[g]\ncommand = "echo {lr}"\nname = "x"\n\ngrid.lr = [1, 2]\n',
        3,
        "g.name",
        "omits the varying parameter 'lr'",
    ),
    (
        '[g]\ncommand = "echo {lr}"\nname = "lr={lr}"\n'
        "[[g.batch_args]]\nlr = 1\n[[g.batch_args]]\nlr = 2\nlrr = 3\n",
        8,
        "g.batch_args[1].lrr",
        "does not use {lrr}",
    ),
    (
        '[g]\ncommand = "echo {lr}"\nname = "lr={lr}"\n'
        "batch_args = [\n  {lr = 1},\n  {lr = 1},\n]\n",
        6,
        "g.batch_args[1]",
        "'lr=1' is taken already (by g.batch_args[0])",
    ),
    (
        '[g]\ncommand = "echo {lr} {x}"\nname = "lr={lr}"\ngrid.lr = [1, 2]\n',
        2,
        "g.command",
        "uses {x}, which neither default_args nor g.grid sets",
    ),
    (
        '[g]\ncommand = "echo {lr}"\nname = "lr={lr}"\ntimeout = -1\ngrid.lr = [1]\n',
        4,
        "g.timeout",
        "positive",
    ),
    (
        '[g]\ncommand = "echo {name}"\n"default_args".name = "x"\n',
        3,
        "g.default_args.name",
        "placeholder",
    ),
    (
        '[g]\ncommand = "echo {a}"\nbatch_args = [{a = 1}]\n',
        3,
        "g.batch_args[0]",
        "needs a name",
    ),
    (
        "[g]\ncommand = '''\necho {a}\n'''\n[g.env]\nA = [1]\n",
        6,
        "g.env.A",
        "must be a string or number",
    ),
    (
        '[g]\ncommand = "echo {a}"\nname = "{a}"\ngrid = {a = ["x", "x/y"]}\n',
        3,
        "g.name",
        "a folder of",
    ),
    ('[g-1]\ncommand = "echo"\nname = "../x"\n', 3, "g-1.name", "invalid experiment name '../x'"),
    ('["bad group"]\ncommand = "echo"\nname = "x"\n', 1, '"bad group"', "invalid group name"),
]


@pytest.mark.parametrize(("text", "line", "key", "problem"), BAD_FILES)
def test_file_errors_name_line_and_key(
    tmp_path: Path, text: str, line: int, key: str, problem: str
) -> None:
    path = tmp_path / "experiments.toml"
    path.write_text(text)
    with pytest.raises(ExperimentFileError) as info:
        xh.load_experiments(path)
    assert (info.value.line, info.value.key) == (line, key), str(info.value)
    assert str(info.value).startswith(f"{path}:{line}: {key}: "), str(info.value)
    assert problem in str(info.value)
    assert isinstance(info.value, ValueError)
    assert not framework.groups().keys() & {"g", "g-1", "bad group"}


def test_file_errors_exit_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "experiments.toml").write_text(
        '[g]\ncommand = "echo {lr}"\nname = "lr={lr}"\ngrid.lr = 3\n'
    )
    done = xhelpers_run(tmp_path, "experiments.toml")
    assert done.returncode == 2
    assert done.stderr == (
        "Error: experiments.toml:4: g.grid.lr: grid values must be an array, e.g. [3], not 3\n"
    )
    missing = xhelpers_run(tmp_path, "nope.toml")
    assert missing.returncode == 2 and "nope.toml: cannot read experiment file" in missing.stderr


def test_main_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0 and "Usage: xhelpers run FILE.toml" in capsys.readouterr().out
    assert main(["--version"]) == 0 and xh.__version__ in capsys.readouterr().out
    assert main(["run"]) == 2 and "missing FILE" in capsys.readouterr().err
    assert main(["walk"]) == 2 and "unknown command 'walk'" in capsys.readouterr().err


def test_key_lines_of_tricky_toml() -> None:
    text = textwrap.dedent(
        r'''
        # [not.a.table] = 1
        title = "a # not a comment"  # a comment [x]
        [g]
        command = """
        echo "{a}" ]
        """
        "quoted key".x = 'lit \'
        env = { A = "1", B = { C = [1,
          2] } }
        [[g.batch_args]]
        a = [ [1, 2], { b = 3 } ]
        when = 1979-05-27 07:32:00Z
        [[g.batch_args]]
        a = 2
        '''
    ).lstrip("\n")
    tomllib.loads(text)  # valid TOML
    lines = _key_lines(text)
    assert lines[("title",)] == 2
    assert lines[("g",)] == 3
    assert lines[("g", "command")] == 4
    assert lines[("g", "quoted key", "x")] == 7
    assert lines[("g", "env", "B", "C", 1)] == 9
    assert lines[("g", "batch_args", 0)] == 10
    assert lines[("g", "batch_args", 0, "a", 1, "b")] == 11
    assert lines[("g", "batch_args", 0, "when")] == 12
    assert lines[("g", "batch_args", 1, "a")] == 14
