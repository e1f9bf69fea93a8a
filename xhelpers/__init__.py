"""xhelpers: define, run, resume and browse experiments, locally and on SLURM."""

from . import cli, config, errors, framework, results, typing
from ._version import __version__
from .cli import experiment_cli
from .commands import command
from .config import BaseConfig
from .declarative import load_experiments
from .errors import XHelpersError
from .execution import ExperimentInfo, current_experiment
from .framework import ParametrizedExperiments
from .grids import fixed, grid, zipped
from .summary import ExperimentOutcome, RunSummary

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
