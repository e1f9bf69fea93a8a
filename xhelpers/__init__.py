"""xhelpers: define, run, resume and browse experiments, locally and on SLURM."""

from typing import TYPE_CHECKING

from xhelpers import errors
from xhelpers._version import __version__
from xhelpers.core import results
from xhelpers.core.execution import ExperimentInfo, current_experiment
from xhelpers.core.summary import ExperimentOutcome, RunSummary
from xhelpers.core.upstreams import Result, upstream, upstreams
from xhelpers.errors import XHelpersError

if TYPE_CHECKING:  # type checkers see them as if imported here
    from xhelpers import cli, config, framework, typing
    from xhelpers.cli import experiment_cli
    from xhelpers.config import BaseConfig
    from xhelpers.core.files import load, register_format, save
    from xhelpers.define.commands import command
    from xhelpers.define.grids import fixed, grid, zipped
    from xhelpers.define.toml import load_experiments
    from xhelpers.framework import ParametrizedExperiments

# Grids, commands and experiment files load on first use: a run.py that needs none
# of them starts faster (PEP 562); so does the CLI (click): a worker process or a SLURM
# job that unpickles a run.py's experiment imports xhelpers, and never needs it. So do
# the config and the definitions (pydantic): a SLURM task carries its config as plain
# values (xhelpers.core.snapshot), and an experiment that never asks for it never
# imports pydantic.
_LAZY = {
    "BaseConfig": "xhelpers.config",
    "ParametrizedExperiments": "xhelpers.framework",
    "cli": "",
    "config": "",
    "framework": "",
    "typing": "",
    "experiment_cli": "xhelpers.cli",
    "command": "xhelpers.define.commands",
    "load": "xhelpers.core.files",
    "register_format": "xhelpers.core.files",
    "save": "xhelpers.core.files",
    "fixed": "xhelpers.define.grids",
    "grid": "xhelpers.define.grids",
    "load_experiments": "xhelpers.define.toml",
    "zipped": "xhelpers.define.grids",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xhelpers' has no attribute {name!r}")
    import importlib

    if not module:  # a submodule itself
        value = importlib.import_module(f"xhelpers.{name}")
        globals()[name] = value
        return value
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "BaseConfig",
    "ExperimentInfo",
    "ExperimentOutcome",
    "ParametrizedExperiments",
    "Result",
    "RunSummary",
    "XHelpersError",
    "__version__",
    "cli",
    "command",
    "config",
    "current_experiment",
    "errors",
    "experiment_cli",
    "fixed",
    "framework",
    "grid",
    "load",
    "load_experiments",
    "register_format",
    "results",
    "save",
    "typing",
    "upstream",
    "upstreams",
    "zipped",
]
