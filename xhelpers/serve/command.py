"""The ``serve`` command's options and start-up (the web stack is imported only here,
once the command runs, so building the CLI stays as fast as without a dashboard)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from xhelpers.errors import XHelpersError

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = ["serve_command"]

_LOCAL = ("127.0.0.1", "localhost", "::1")


class _UsageError(click.ClickException):
    """A bad folder, config or port: exit code 2, one line (as the CLI's UsageError)."""

    exit_code = 2


def serve_command(
    groups: Callable[[], Sequence[ParametrizedExperiments]] | None,
) -> click.Command:
    """``serve`` for the groups ``groups()`` returns, or, when None, for the result tree
    its PATH argument names (default ``results``)."""

    def run(**opts: Any) -> None:
        _serve(groups, opts.get("path"), opts["host"], opts["port"], opts["config_file"])

    params: list[click.Parameter] = []
    if groups is None:
        params.append(click.Argument(["path"], default="results", required=False))
    params += [
        click.Option(
            ["--host"],
            default="127.0.0.1",
            show_default=True,
            help="Address to listen on; 0.0.0.0 (every address) only if you mean it.",
        ),
        click.Option(
            ["--port"],
            type=click.IntRange(min=0, max=65535),
            help="Port (default: 8765, or the next free one; 0: any free port).",
        ),
        click.Option(
            ["--config", "config_file"],
            metavar="FILE[:CLASS]",
            help="Machine config instead of ./config.py (where results are, secrets to hide).",
        ),
    ]
    what = "the result tree PATH (default: results)" if groups is None else "every group"
    return click.Command(
        "serve",
        params=params,
        callback=run,
        help=f"Browse {what} in a web browser: a read-only dashboard on this machine, "
        "for its user (the URL printed holds a token). Ctrl-C stops it.",
        short_help="Browse the results in a web browser.",
        context_settings={"max_content_width": 100},
    )


def _serve(
    groups: Callable[[], Sequence[ParametrizedExperiments]] | None,
    path: str | None,
    host: str,
    port: int | None,
    config_file: str | None,
) -> None:
    from xhelpers.serve.server import DashboardServer, machine_secrets, sources_of

    if host not in _LOCAL:
        click.echo(
            f"warning: serving on {host}: anyone who can reach this machine and has the "
            "token can read the results",
            err=True,
        )
    try:
        secrets = machine_secrets(config_file)
        if groups is None:
            root = path or "results"
            if not os.path.isdir(root):
                raise _UsageError(f"{root!r} is not a folder (the result tree to serve)")
            server = DashboardServer(root=root, host=host, port=port, secrets=secrets)
        else:
            sources, found = sources_of(groups(), config_file)
            server = DashboardServer(sources, host=host, port=port, secrets=[*secrets, *found])
    except XHelpersError as exc:
        raise _UsageError(str(exc)) from None
    count = len(server.index.groups)
    experiments = sum(len(g.rows) for g in server.index.groups.values())

    def announce(url: str) -> None:
        click.echo(
            f"xhelpers dashboard of {count} group{'s' if count != 1 else ''}, "
            f"{experiments} experiments (Ctrl-C stops it):"
        )
        click.echo(f"    {url}")

    try:
        server.run(announce)
    except KeyboardInterrupt:  # uvicorn stopped cleanly, then passes Ctrl-C on
        pass
    click.echo("dashboard stopped", err=True)
