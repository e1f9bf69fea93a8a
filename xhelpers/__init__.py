"""xhelpers: define, run, resume and browse experiments, locally and on SLURM."""

from . import cli, config, errors, framework, results, typing
from ._version import __version__
from .cli import experiment_cli
from .config import BaseConfig
from .errors import XHelpersError
from .framework import ParametrizedExperiments
from .runner import ExperimentOutcome, RunSummary

__all__ = [
    "BaseConfig",
    "ExperimentOutcome",
    "ParametrizedExperiments",
    "RunSummary",
    "XHelpersError",
    "__version__",
    "cli",
    "config",
    "errors",
    "experiment_cli",
    "framework",
    "results",
    "typing",
]
