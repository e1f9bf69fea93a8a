"""xhelpers: define, run, resume and browse experiments, locally and on SLURM."""

from typing import TYPE_CHECKING

from . import cli, config, errors, framework, results, typing
from ._version import __version__
from .cli import experiment_cli
from .config import BaseConfig
from .errors import XHelpersError
from .execution import ExperimentInfo, current_experiment
from .framework import ParametrizedExperiments
from .summary import ExperimentOutcome, RunSummary

if TYPE_CHECKING:  # type checkers see them as if imported here
    from .commands import command
    from .declarative import load_experiments
    from .grids import fixed, grid, zipped

# Grids, commands and experiment files load on first use: a run.py that needs none
# of them starts faster (PEP 562).
_LAZY = {
    "command": "commands",
    "fixed": "grids",
    "grid": "grids",
    "load_experiments": "declarative",
    "zipped": "grids",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'xhelpers' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


__all__ = [
    "BaseConfig",
    "ExperimentInfo",
    "ExperimentOutcome",
    "ParametrizedExperiments",
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
    "load_experiments",
    "results",
    "typing",
    "zipped",
]
