"""The command line's ``--remote NAME`` and ``--pull NAME``, for :mod:`xhelpers.cli`."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from xhelpers.config import remote_named, resolve_config
from xhelpers.remote.launch import RemoteRun, follow_hint, remote_arguments, run_remote
from xhelpers.remote.pull import pull

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = ["remote_or_pull"]


def remote_or_pull(
    group: ParametrizedExperiments,
    patterns: Sequence[str],
    opts: dict[str, Any],
    args: Sequence[str],
) -> int:
    """Run the command line ``args`` (as typed after the group) on ``--remote``, or
    ``--pull`` results from one; the exit code."""
    config = resolve_config(group.configcls, config_file=opts["config_file"])
    name = opts["remote"] or opts["pull"]
    settings = remote_named(config, name)
    if opts["pull"]:
        names = group.select(*patterns) if patterns else None
        outcome = pull(
            name, settings, config, group.name, names, checkpoints=opts["with_checkpoints"]
        )
        click.echo(str(outcome))
        return 0
    arguments = [group.name, *remote_arguments(args)]
    if settings.config:
        arguments += ["--config", settings.config]
    script = sys.argv[0] if sys.argv and sys.argv[0] else "run.py"
    run = RemoteRun(name, settings, script, tuple(arguments), config, opts["config_file"])
    code = run_remote(run)
    slurm = config.slurm if opts["slurm"] is None else opts["slurm"]
    if (code == 0 and opts["no_wait"]) or (code == 130 and slurm):  # jobs run on there
        click.echo(follow_hint(run, group.name, patterns), err=True)
    return code
