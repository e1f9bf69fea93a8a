"""The command line: one subcommand per registered group, built when the CLI starts.

Errors become ``click.ClickException`` with one line and an exit code: 1 when an
experiment failed or was interrupted, 2 for usage errors, 130 for Ctrl-C.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

import click

from . import framework
from .errors import BackendError, XHelpersError
from .framework import ParametrizedExperiments
from .logs import level_for_verbosity

__all__ = ["UsageError", "build_cli", "experiment_cli"]

_HELP_LISTED = 40  # experiments named in a group's --help before summarizing by folder


class UsageError(click.ClickException):
    """A bad pattern, config, option or name: exit code 2, one line."""

    exit_code = 2


class FailureError(click.ClickException):
    exit_code = 1


def _fail(exc: XHelpersError) -> click.ClickException:
    if isinstance(exc, BackendError) and "unknown backend" not in str(exc):
        return FailureError(str(exc))
    return UsageError(str(exc))


def _experiments_epilog(group: ParametrizedExperiments) -> str:
    names = list(group.experiments)
    if len(names) <= _HELP_LISTED:
        return "Experiments:\n\n" + "\n".join(f"  {n}" for n in names)
    folders: dict[str, int] = {}
    for name in names:
        top = name.split("/", 1)[0] + ("/" if "/" in name else "")
        folders[top] = folders.get(top, 0) + 1
    lines = [
        f"  {top}  ({count})" if top.endswith("/") else f"  {top}"
        for top, count in list(folders.items())[:_HELP_LISTED]
    ]
    more = len(folders) - _HELP_LISTED
    if more > 0:
        lines.append(f"  ... and {more} more")
    return f"Experiments ({len(names)}; -l lists them with their status):\n\n" + "\n".join(lines)


class _GroupCommand(click.Command):
    def __init__(self, group: ParametrizedExperiments, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.xh_group = group

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Built only when help is shown: a group may hold 100,000 names.
        formatter.write_paragraph()
        for line in _experiments_epilog(self.xh_group).splitlines():
            formatter.write_text(line) if not line.startswith("  ") else formatter.write(
                line + "\n"
            )


def _group_command(group: ParametrizedExperiments) -> click.Command:
    count = len(group.experiments)
    doc = group.description or f"Run experiments of the group '{group.name}'."
    params: list[click.Parameter] = [
        click.Argument(["patterns"], nargs=-1),
        click.Option(
            ["-j", "--jobs"],
            type=click.IntRange(min=1),
            help="Experiments at once (default: config.jobs, 1 = in this process).",
        ),
        click.Option(
            ["-w", "--workers"],
            type=click.IntRange(min=1),
            help="Sets config.workers: processes each experiment may use.",
        ),
        click.Option(
            ["-v", "--verbose"],
            count=True,
            help="-v: info on the console, -vv: debug (default: warnings).",
        ),
        click.Option(
            ["--force"], is_flag=True, help="Rerun the selected experiments from an empty folder."
        ),
        click.Option(
            ["--config", "config_file"],
            metavar="FILE[:CLASS]",
            help="Machine config instead of ./config.py (class default: Config).",
        ),
        click.Option(
            ["-l", "--list", "list_only"],
            is_flag=True,
            help="List the selected experiments and their status; run nothing.",
        ),
        click.Option(
            ["--pdb", "post_mortem"],
            is_flag=True,
            help="With -j1: open pdb where an experiment fails.",
        ),
    ]

    def callback(
        patterns: tuple[str, ...],
        jobs: int | None,
        workers: int | None,
        verbose: int,
        force: bool,
        config_file: str | None,
        list_only: bool,
        post_mortem: bool,
    ) -> None:
        ctx = click.get_current_context()
        try:
            if list_only:
                from .status import format_status

                rows = group.status(*patterns, config_file=config_file)
                click.echo(format_status(rows))
                return
            summary = group(
                *patterns,
                jobs=jobs,
                workers=workers,
                force=force,
                config_file=config_file,
                loglevel=level_for_verbosity(verbose) if verbose else None,
                post_mortem=post_mortem,
                console=True,
            )
        except XHelpersError as exc:
            raise _fail(exc) from None
        ctx.exit(summary.exit_code)

    return _GroupCommand(
        group,
        name=group.name,
        params=params,
        callback=callback,
        help=doc,
        short_help=f"{count} experiment{'s' if count != 1 else ''}",
        context_settings={"max_content_width": 100},
    )


class _Groups(click.Group):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        group = framework.groups().get(cmd_name)
        return _group_command(group) if group else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(framework.groups())

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in framework.groups():
            valid = ", ".join(framework.groups()) or "none registered"
            raise UsageError(f"no group named {name!r}; groups: {valid}")
        return super().resolve_command(ctx, args)


def build_cli() -> click.Group:
    """The click group of every registered experiment group."""
    return _Groups(
        help="Run experiment groups. `GROUP --help` shows a group's options and experiments.",
        context_settings={"max_content_width": 100},
    )


def experiment_cli(args: Sequence[str] | None = None, *, standalone_mode: bool = True) -> Any:
    """Start the CLI; call this from ``run.py`` after defining your groups."""
    cli = build_cli()
    main: Callable[..., Any] = cli.main
    return main(args=args, prog_name=_prog_name(), standalone_mode=standalone_mode)


def _prog_name() -> str:
    script = sys.argv[0] if sys.argv else "run.py"
    return script.rsplit("/", 1)[-1] if script.endswith(".py") else "xhelpers"
