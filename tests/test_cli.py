"""The CLI, through click's CliRunner and through a real ``python run.py``."""

from __future__ import annotations

import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
from conftest import invoke, meta, run_py, write_run_py
from experiments import TConfig, logs_levels, no_config, raises, write_param

import xhelpers as xh


@pytest.fixture()
def groups() -> None:
    xh.ParametrizedExperiments(
        "main",
        {
            "experiment_1": partial(write_param, param=41),
            "experiment_42": partial(write_param, param=42),
            "some/subdir/experiment_a": partial(write_param, param=1),
        },
        configcls=TConfig,
    )
    xh.ParametrizedExperiments("other", {"bad": raises, "ok": no_config, "logs": logs_levels})


def test_top_help_lists_groups_with_counts(groups: None) -> None:
    code, out, _ = invoke("--help")
    assert code == 0
    assert "main   3 experiments" in out and "other  3 experiments" in out


def test_group_help_lists_options_and_experiments(groups: None) -> None:
    code, out, _ = invoke("main", "--help")
    assert code == 0
    for option in ("--jobs", "--workers", "--verbose", "--force", "--config", "--list"):
        assert option in out
    assert "some/subdir/experiment_a" in out and "experiment_42" in out


def test_big_group_help_is_summarized() -> None:
    xh.ParametrizedExperiments("big", {f"sweep/{i}": no_config for i in range(1000)})
    code, out, _ = invoke("big", "--help")
    assert code == 0 and "sweep/  (1000)" in out and "sweep/999" not in out


def test_run_skip_and_exit_codes(groups: None, tmp_path: Path) -> None:
    code, out, _ = invoke("main", "*_1", "*_42")
    assert code == 0
    assert "main: 2 succeeded, 0 skipped, 0 failed, 0 interrupted (2 selected" in out
    assert not (tmp_path / "results/main/some").exists()
    code, out, _ = invoke("main")
    assert code == 0 and "1 succeeded, 2 skipped" in out
    code, out, _ = invoke("other", "bad", "ok")
    assert code == 1
    assert "failed      bad: ValueError: bad value  (results/other/bad)" in out


def test_verbosity_levels_and_prefixes(groups: None, tmp_path: Path) -> None:
    _, _, err = invoke("other", "logs")
    assert "[logs] WARNING a warning line" in err and "an info line" not in err
    _, _, err = invoke("other", "logs", "--force", "-v")
    assert "[logs] INFO an info line" in err and "a debug line" not in err
    _, _, err = invoke("other", "logs", "--force", "-vv", "-j2")
    assert "[logs] DEBUG a debug line" in err  # from a worker process
    log = (tmp_path / "results/other/logs/experiment.log").read_text()
    assert "DEBUG experiments: a debug line" in log  # the full log, whatever -v says


def test_jobs_and_workers_flags(groups: None, tmp_path: Path) -> None:
    code, _, _ = invoke("main", "--jobs=2", "-w2")
    assert code == 0
    data = meta(tmp_path / "results/main/experiment_1")
    assert data["returned"]["workers"] == 2 and data["config"]["jobs"] == 2


def test_list_shows_status_and_runs_nothing(groups: None, tmp_path: Path) -> None:
    invoke("other", "ok", "bad")
    code, out, _ = invoke("other", "-l")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["name", "status"]
    rows = {line.split()[0]: line for line in lines[2:] if line.strip() and "," not in line}
    assert rows["ok"].split()[1] == "done"
    assert rows["bad"].split()[1] == "failed" and "ValueError: bad value" in rows["bad"]
    assert rows["logs"].split()[1] == "pending"
    assert "1 done, 1 failed, 1 pending" in out
    assert not (tmp_path / "results/other/logs").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["main", "nothing_like_it"], "no experiment in group 'main' matches 'nothing_like_it'"),
        (["main", "experiment_2"], "did you mean 'experiment_42', 'experiment_1'"),
        (["nogroup"], "no group named 'nogroup'; groups: main, other"),
        (["main", "--config", "missing.py"], "config file 'missing.py' not found"),
        (["main", "--config", "c.py:Nope"], "has no class 'Nope'"),
        (["main", "-j", "0"], "0 is not in the range x>=1"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    groups: None, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "c.py").write_text("class Config: pass\n")
    code, _out, err = invoke(*args)
    assert code == 2
    assert message in err
    assert not (tmp_path / "results").exists()


def test_config_file_flag_and_automatic_config_py(groups: None, tmp_path: Path) -> None:
    (tmp_path / "config.py").write_text("class Config:\n    user_message = 'auto'\n")
    (tmp_path / "mine.py").write_text("class Mine:\n    user_message = 'chosen'\n")
    invoke("main", "experiment_1")
    assert meta(tmp_path / "results/main/experiment_1")["config"]["user_message"] == "auto"
    invoke("main", "experiment_1", "--force", "--config", "mine.py:Mine")
    assert meta(tmp_path / "results/main/experiment_1")["config"]["user_message"] == "chosen"
    (tmp_path / "config.py").write_text("raise ImportError('no such module: torch')\n")
    code, _, err = invoke("main")
    assert code == 2 and "raised ImportError: no such module: torch (line 1)" in err
    assert err.count("\n") == 1


RUN = """
class CustomConfig(xh.config.BaseConfig):
    user_message: str = "Hello world!"
    user_number: int = 42

main_experiments = xh.framework.ParametrizedExperiments("main", {
    "experiment_1": partial(ex.write_param, param=41),
    "experiment_42": partial(ex.write_param, param=42),
    "some/subdir/experiment_a": partial(ex.write_param, param=1),
}, configcls=CustomConfig)
faults = xh.ParametrizedExperiments("faults", {"bad": ex.raises, "ok": ex.no_config})
"""


def test_real_run_py_subprocess(tmp_path: Path) -> None:
    write_run_py(tmp_path, RUN)
    top = run_py(tmp_path, "--help")
    assert top.returncode == 0 and "main" in top.stdout and "3 experiments" in top.stdout
    first = run_py(tmp_path, "main", "-j2", "-v")
    assert first.returncode == 0, first.stderr
    assert "3 succeeded" in first.stdout
    assert "[experiment_42] INFO param=42 message=Hello world!" in first.stderr
    assert (tmp_path / "results/main/some/subdir/experiment_a/result.txt").read_text() == "1"
    data = meta(tmp_path / "results/main/experiment_1")
    assert data["argv"] == ["run.py", "main", "-j2", "-v"]
    assert data["function"] == "experiments.write_param"
    again = run_py(tmp_path, "main")
    assert again.returncode == 0 and "0 succeeded, 3 skipped" in again.stdout
    failing = run_py(tmp_path, "faults")
    assert failing.returncode == 1 and "1 failed" in failing.stdout
    assert "Traceback" in failing.stderr  # shown on the console at the default level
    bad = run_py(tmp_path, "main", "nope")
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["main", "-l", "--results"], "-l and --results cannot be combined"),
        (["main", "-l", "--force"], "--force runs experiments; -l runs none"),
        (["main", "--format", "csv"], "--format applies to -l, --results and --diff only"),
        (["main", "--pdb", "-j2"], "--pdb needs -j1"),
    ],
)
def test_contradicting_options_are_usage_errors(
    groups: None, tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = invoke(*args)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()  # nothing ran


def test_bad_output_directory_is_one_line(groups: None, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    (tmp_path / "config.py").write_text("class Config:\n    output_directory = 'afile'\n")
    code, _, err = invoke("other", "ok")
    assert code == 2 and "output_directory 'afile': cannot make" in err
    assert err.count("\n") == 1


def test_bad_bound_config_names_the_experiment(tmp_path: Path) -> None:
    xh.ParametrizedExperiments(
        "bc", {"exp": partial(write_param, param=1, config={"jbos": 2})}, configcls=TConfig
    )
    code, _, err = invoke("bc")
    assert code == 2 and "experiment 'exp': " in err and "'jbos'" in err


def test_slurm_without_submitit_is_one_line(tmp_path: Path) -> None:
    write_run_py(
        tmp_path,
        """
sys.modules["submitit"] = None  # as if not installed
g = xh.ParametrizedExperiments("g", {"a": ex.no_config})
""",
    )
    result = run_py(tmp_path, "g", "--slurm")
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        "Error: the slurm backend needs submitit, which is not installed "
        "(xhelpers depends on it): pip install submitit"
    )
    assert not (tmp_path / "results/g/a/metafile.json").exists()


def test_definition_errors_for_resources_and_commands() -> None:
    from xhelpers.errors import ConfigError, ExperimentDefinitionError

    with pytest.raises(ExperimentDefinitionError, match="matches no experiment"):
        xh.ParametrizedExperiments("r1", {"a": no_config}, resources={"b*": {"mem_gb": 4}})
    with pytest.raises(ConfigError, match="'slurm_mem_gb'"):
        xh.ParametrizedExperiments("r2", {"a": no_config}, resources={"a": {"mem_gb": "lots"}})
    with pytest.raises(ExperimentDefinitionError, match="uses \\{nmae\\}, which no parameter"):
        xh.ParametrizedExperiments("r3", {"a": xh.command("echo {nmae}")})


def test_sbatch_errors_keep_the_telling_line() -> None:
    from xhelpers.backends.slurm.queue import _one_line

    text = (
        "sbatch: unrecognized option '--acount=lab'\nTry \"sbatch --help\" for more information\n"
    )
    assert _one_line(text) == "sbatch: unrecognized option '--acount=lab'"


def test_definition_error_while_run_py_is_imported_is_one_line_exit_2(tmp_path: Path) -> None:
    """A bad name raised at import of run.py, before experiment_cli runs: as the CLI says it."""
    (tmp_path / "run.py").write_text(
        "import xhelpers as xh\n"
        "xh.ParametrizedExperiments('g', {'a/../b': print})\n"
        "if __name__ == '__main__':\n"
        "    xh.experiment_cli()\n"
    )
    proc = subprocess.run(
        [sys.executable, "run.py", "g"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("Error: group 'g': invalid experiment names: 'a/../b'")
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    # any other exception keeps its traceback and exit code
    (tmp_path / "run.py").write_text("import xhelpers\nraise RuntimeError('mine')\n")
    other = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, capture_output=True, text=True)
    assert other.returncode == 1 and "Traceback" in other.stderr
