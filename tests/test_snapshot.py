"""A SLURM task carries its config as plain values: pydantic is imported on the node
only by an experiment that asks for its config (xhelpers.core.snapshot)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import cloudpickle  # type: ignore[import-untyped]
from experiments import write_param

import xhelpers as xh
from xhelpers.backends.slurm.node import SlurmTask
from xhelpers.core.execution import RunContext, Task
from xhelpers.core.snapshot import ConfigSnapshot, real_config

TESTS = Path(__file__).resolve().parent


def shipped(tmp_path: Path, fn: object, pass_config: bool) -> Path:
    config = xh.BaseConfig(output_directory=tmp_path / "results", slacktoken="xoxb-secret")
    task = Task("e", str(tmp_path / "results/g/e"), fn, "", pass_config)  # type: ignore[arg-type]
    path = tmp_path / "task.pkl"
    path.write_bytes(cloudpickle.dumps(SlurmTask(task, RunContext("g", config, ""), 3)))
    return path


def on_a_node(path: Path, code: str) -> str:
    """Runs ``code`` in a new interpreter (as a SLURM task is) with ``task`` unpickled."""
    script = "import pickle, sys\ntask = pickle.loads(open(sys.argv[1], 'rb').read())\n"
    proc = subprocess.run(
        [sys.executable, "-c", script + textwrap.dedent(code), str(path)],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def run_py_function() -> object:
    """A function as run.py defines it (module __main__: shipped by value), importing
    nothing."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    exec("def plain(value):\n    return value\n", namespace)
    return partial(namespace["plain"], 3)  # type: ignore[arg-type]


def test_a_task_unpickles_and_runs_without_pydantic(tmp_path: Path) -> None:
    path = shipped(tmp_path, run_py_function(), pass_config=False)
    out = on_a_node(
        path,
        """
        config = task.ctx.config
        print(type(config).__name__, config.output_directory, config.checkpoint_files)
        print(task.task.fn(), "pydantic" in sys.modules)
        """,
    )
    first, second = out.splitlines()
    assert first == f"ConfigSnapshot {tmp_path / 'results'} ['*checkpoint*']"
    assert second == "3 False"


def test_what_is_not_plain_comes_from_the_real_config(tmp_path: Path) -> None:
    path = shipped(tmp_path, partial(write_param, param=1), pass_config=True)
    out = on_a_node(
        path,
        """
        from xhelpers.core.snapshot import real_config
        config = task.ctx.config
        print(config.slacktoken.get_secret_value(), "pydantic" in sys.modules)
        print(type(real_config(config)).__name__, real_config(config) is config.real())
        """,
    )
    assert out.splitlines() == ["xoxb-secret True", "BaseConfig True"]


def test_a_snapshot_pickles_again_without_its_real_config(tmp_path: Path) -> None:
    config = xh.BaseConfig(output_directory=tmp_path, slurm_timeout_min=7)
    task = SlurmTask(Task("e", str(tmp_path), print, "", False), RunContext("g", config, ""), 3)
    again = pickle.loads(pickle.dumps(task))
    snap = again.ctx.config
    assert isinstance(snap, ConfigSnapshot) and snap.slurm_timeout_min == 7
    assert real_config(snap) == config  # the real one, equal to what was shipped
    twice = pickle.loads(pickle.dumps(again))  # a requeue ships the snapshot itself
    assert isinstance(twice.ctx.config, ConfigSnapshot)
    assert twice.ctx.config.real() == config
