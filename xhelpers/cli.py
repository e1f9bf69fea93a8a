"""The command line: one subcommand per registered group, built when the CLI starts.

Errors become ``click.ClickException`` with one line and an exit code: 1 when an
experiment failed or was interrupted, 2 for usage errors, 130 for Ctrl-C.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

import click
from click.shell_completion import CompletionItem

from xhelpers import framework
from xhelpers.core.logs import level_for_verbosity
from xhelpers.errors import BackendError, MissingDependencyError, RemoteError, XHelpersError
from xhelpers.framework import ParametrizedExperiments

__all__ = ["UsageError", "build_cli", "experiment_cli", "serve_command"]

FORMATS = ("table", "csv", "json", "parquet")  # of -l and --results (parquet: --results -o)
_HELP_LISTED = 40  # experiments named in a group's --help before summarizing by folder


class UsageError(click.ClickException):
    """A bad pattern, config, option or name: exit code 2, one line."""

    exit_code = 2


class FailureError(click.ClickException):
    exit_code = 1


def _fail(exc: XHelpersError) -> click.ClickException:
    if isinstance(exc, BackendError) and not exc.usage:
        return FailureError(str(exc))
    if isinstance(exc, (MissingDependencyError, RemoteError)):  # the input is fine
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

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["xh_args"] = list(args)  # --remote runs this same command line there
        return super().parse_args(ctx, args)

    def format_epilog(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Built only when help is shown: a group may hold 100,000 names.
        formatter.write_paragraph()
        for line in _experiments_epilog(self.xh_group).splitlines():
            formatter.write_text(line) if not line.startswith("  ") else formatter.write(
                line + "\n"
            )


def _complete_names(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """Experiment names for the shell, one folder level at a time (names can be many)."""
    command = ctx.command
    group = getattr(command, "xh_group", None)
    if group is None:
        return []
    seen: dict[str, None] = {}
    depth = incomplete.count("/")
    for name in group.experiments:
        if name.startswith(incomplete):
            parts = name.split("/")
            seen[name if len(parts) <= depth + 1 else "/".join(parts[: depth + 1]) + "/"] = None
    return [CompletionItem(n, type="plain") for n in seen]


def _complete_remotes(
    ctx: click.Context, param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The remotes the machine config names, for --remote and --pull."""
    from xhelpers.config import BaseConfig, load_machine_values

    try:
        values, _ = load_machine_values(ctx.params.get("config_file"))
        names = BaseConfig.with_updates({"remote": values.get("remote")}).remote
    except XHelpersError:
        return []
    return [CompletionItem(n, type="plain") for n in names if n.startswith(incomplete)]


def _options() -> list[click.Parameter]:
    return [
        click.Argument(["patterns"], nargs=-1, shell_complete=_complete_names),
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
            ["--gpus"],
            metavar="IDS",
            help="GPUs for the experiments that ask for some, e.g. 0,1 (default: "
            "config.gpus, else CUDA_VISIBLE_DEVICES, else nvidia-smi's).",
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
            ["--rerun-stale"],
            is_flag=True,
            help="Also rerun results whose experiment definition changed.",
        ),
        click.Option(
            ["--retry-failed"],
            is_flag=True,
            help="Run only the selected experiments that failed or were interrupted.",
        ),
        click.Option(
            ["--no-upstream"],
            is_flag=True,
            help="Refuse (naming them) instead of running upstreams that are not done.",
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
            ["--results", "show_results"],
            is_flag=True,
            help="Print parameters and result fields of the selected experiments.",
        ),
        click.Option(
            ["--by"],
            metavar="PARAMS",
            help="With --results: mean, std, min, max of each metric per value of PARAMS "
            "(comma-separated), over the other parameters.",
        ),
        click.Option(
            ["--best"],
            metavar="METRIC",
            help="Show the finished experiment (with --by: the group) with the highest METRIC.",
        ),
        click.Option(["--min", "minimize"], is_flag=True, help="With --best: the lowest wins."),
        click.Option(
            ["--with-failed", "include_failed"],
            is_flag=True,
            help="With --by, --best, --plot: also use what failed or interrupted runs wrote.",
        ),
        click.Option(
            ["--plot"],
            metavar="METRIC",
            help="Draw METRIC's mean (std as a band) against --x to METRIC-by-X.png "
            "(-o FILE: .png, .svg or .pdf).",
        ),
        click.Option(["--x", "x"], metavar="PARAM", help="With --plot: the x axis' parameter."),
        click.Option(["--hue"], metavar="PARAM", help="With --plot: one line per value of PARAM."),
        click.Option(["--logx"], is_flag=True, help="With --plot: a logarithmic x axis."),
        click.Option(
            ["-o", "--output"],
            metavar="FILE",
            help="Write --results (format from --format, else FILE's suffix) or --plot to FILE.",
        ),
        click.Option(
            ["--diff"],
            nargs=2,
            metavar="A B",
            help="Show how experiments A and B differ: parameters, config, code, metrics.",
        ),
        click.Option(
            ["--failed", "show_failed"],
            is_flag=True,
            help="Show failed experiments with the end of their logs.",
        ),
        click.Option(
            ["-n", "--dry-run", "dry_run"],
            is_flag=True,
            help="Show what the run would run, skip (and why) and in which order; run nothing.",
        ),
        click.Option(
            ["--graph", "show_graph"],
            is_flag=True,
            help="Show which results the selected experiments use, stage by stage.",
        ),
        click.Option(
            ["--format", "fmt"],
            type=click.Choice(FORMATS),
            help="Output of -l, --results and --diff (default: table; parquet needs -o).",
        ),
        click.Option(
            ["--progress/--no-progress"],
            default=None,
            help="Progress line (default: when stderr is a terminal).",
        ),
        click.Option(
            ["--slurm/--local", "slurm"],
            default=None,
            help="Run on SLURM, or here (default: config.slurm).",
        ),
        click.Option(
            ["--no-wait"],
            is_flag=True,
            help="Submit (SLURM jobs, or one detached local run), print how to follow, exit.",
        ),
        click.Option(
            ["--cancel"],
            is_flag=True,
            help="Cancel the selected experiments' jobs; mark them interrupted.",
        ),
        click.Option(
            ["--pdb", "post_mortem"],
            is_flag=True,
            help="With -j1: open pdb where an experiment fails.",
        ),
        click.Option(["--no-slack"], is_flag=True, help="Post nothing to Slack for this run."),
        click.Option(
            ["--remote"],
            metavar="NAME",
            shell_complete=_complete_remotes,
            help="Run this command line on remote NAME (config.remote): project synced, "
            "environment readied, output streamed.",
        ),
        click.Option(
            ["--pull"],
            metavar="NAME",
            shell_complete=_complete_remotes,
            help="Copy the selected experiments' results from remote NAME into the local tree.",
        ),
        click.Option(
            ["--with-checkpoints"],
            is_flag=True,
            help="With --pull: also copy checkpoint files (config.checkpoint_files).",
        ),
    ]


_VIEWS = {
    "list_only": "-l",
    "show_results": "--results",
    "show_failed": "--failed",
    "plot": "--plot",
    "diff": "--diff",
    "show_graph": "--graph",
    "cancel": "--cancel",
    "pull": "--pull",
}
_RUN_ONLY = {
    "force": "--force",
    "rerun_stale": "--rerun-stale",
    "retry_failed": "--retry-failed",
    "no_upstream": "--no-upstream",
    "no_wait": "--no-wait",
    "post_mortem": "--pdb",
}


_FLAGS = {
    "show_results": "--results",
    "by": "--by",
    "best": "--best",
    "plot": "--plot",
    "pull": "--pull",
}
# Options that only refine one view: (key, flag, the views it refines).
_REFINING = (
    ("by", "--by", ("show_results",)),
    ("best", "--best", ("show_results",)),
    ("minimize", "--min", ("best",)),
    ("include_failed", "--with-failed", ("by", "best", "plot")),
    ("x", "--x", ("plot",)),
    ("hue", "--hue", ("plot",)),
    ("logx", "--logx", ("plot",)),
    ("output", "-o", ("show_results", "plot")),
    ("with_checkpoints", "--with-checkpoints", ("pull",)),
)


def _check_options(opts: dict[str, Any]) -> None:
    """Options that contradict each other, or do nothing here, are usage errors: a
    silently ignored flag is a surprise (``--format csv`` alone would run the group)."""
    if (opts["by"] or opts["best"]) and not opts["plot"]:
        opts["show_results"] = True  # --by and --best are questions about the results
    for key, flag, refined in _REFINING:
        if opts[key] and not any(opts[r] for r in refined):
            raise UsageError(f"{flag} applies to {' and '.join(_FLAGS[r] for r in refined)} only")
    if opts["plot"] and not opts["x"]:
        raise UsageError("--plot needs --x PARAM: the parameter on the x axis")
    if opts["fmt"] == "parquet" and not (opts["show_results"] and opts["output"]):
        raise UsageError("--format parquet writes a file: add -o FILE.parquet to --results")
    views = [flag for key, flag in _VIEWS.items() if opts[key]]
    if len(views) > 1:
        raise UsageError(f"{' and '.join(views)} cannot be combined: choose one")
    if views and opts["dry_run"]:
        raise UsageError(f"--dry-run shows a run's plan; {views[0]} runs none: choose one")
    if views:
        extra = [flag for key, flag in _RUN_ONLY.items() if opts[key]]
        if extra:
            raise UsageError(f"{extra[0]} runs experiments; {views[0]} runs none")
    if opts["fmt"] not in (None, "table") and not (
        opts["list_only"] or opts["show_results"] or opts["diff"]
    ):
        raise UsageError("--format applies to -l, --results and --diff only")
    if opts["no_wait"] and opts["slurm"] is False and not _can_detach("local"):
        raise UsageError(
            "--no-wait submits to SLURM: the local backend cannot detach; it contradicts --local"
        )
    if opts["remote"] and (opts["pull"] or opts["post_mortem"]):
        other = "--pull" if opts["pull"] else "--pdb"
        raise UsageError(f"--remote runs the command there; {other} cannot go with it")
    if opts["post_mortem"] and (opts["jobs"] or 1) > 1:
        raise UsageError("--pdb needs -j1: a debugger cannot reach a worker process")
    if opts["gpus"] is not None:
        from xhelpers.config import parse_gpus

        try:
            opts["gpus"] = parse_gpus(opts["gpus"])
        except ValueError as exc:
            raise UsageError(f"--gpus {opts['gpus']!r}: {exc}") from None


def _can_detach(backend: str) -> bool:
    from xhelpers.backends import find_backend  # the seam's declared capability

    cls = find_backend(backend)
    return cls is not None and cls.can_detach


def _show_only(
    group: ParametrizedExperiments, patterns: tuple[str, ...], opts: dict[str, Any]
) -> int | None:
    """-l, --results, --failed: print and return an exit code; None when none is asked."""
    from xhelpers.views.status import failed_report, format_counts, format_status

    fmt, config_file = opts["fmt"] or "table", opts["config_file"]
    if opts["list_only"]:
        rows = group.status(*patterns, config_file=config_file)
        counts = format_counts(r.status for r in rows)
        if fmt == "table":
            click.echo(format_status(rows) + "\n\n" + counts)
        else:  # data only on stdout, for scripts
            click.echo(format_status(rows, "csv" if fmt == "csv" else "json"))
            click.echo(counts, err=True)
        return 0
    if opts["show_results"] or opts["plot"] or opts["diff"]:
        from xhelpers.views.answers import answer

        out, note = answer(group, patterns, opts)
        if out:
            click.echo(out)
        if note:  # counts and where a file went: on stderr, so stdout stays data
            click.echo(note, err=True)
        return 0
    if opts["show_failed"]:
        text, _ = failed_report(group, patterns, config_file=config_file)
        click.echo(text)
        return 0
    if opts["show_graph"]:
        from xhelpers.framework import groups
        from xhelpers.views.plan import graph_text

        click.echo(graph_text(group, group.select(*patterns), groups()))
        return 0
    if opts["dry_run"]:
        click.echo(_dry_run(group, patterns, opts))
        return 0
    if opts["cancel"]:
        outcome = group.cancel(*patterns, config_file=config_file)
        for label, refs in outcome.cancelled.items():
            marked = len(outcome.marked)
            click.echo(
                f"cancelled {label} job{'s' if len(refs) > 1 else ''} {' '.join(refs)}; "
                f"{marked} experiment{'s' if marked != 1 else ''} marked interrupted"
            )
        for label, refs in outcome.ended.items():
            click.echo(
                f"already ended: {label} job{'s' if len(refs) > 1 else ''} {' '.join(refs)} "
                "(nothing to cancel)"
            )
        for backend in outcome.unregistered:
            click.echo(f"cannot cancel jobs of backend {backend!r}: not installed or registered")
        if not (outcome.cancelled or outcome.ended or outcome.unregistered):
            click.echo("no selected experiment has a job pending or running")
        return 0
    return None


def _dry_run(
    group: ParametrizedExperiments, patterns: tuple[str, ...], opts: dict[str, Any]
) -> str:
    from xhelpers.config import resolve_config
    from xhelpers.core.planning import RunOptions
    from xhelpers.framework import groups
    from xhelpers.views.plan import dry_run_text

    config = resolve_config(
        group.configcls,
        config_file=opts["config_file"],
        overrides={
            "jobs": opts["jobs"],
            "workers": opts["workers"],
            "gpus": opts["gpus"],
            "slurm": opts["slurm"],
        },
    )
    options = RunOptions(
        force=opts["force"],
        rerun_stale=opts["rerun_stale"],
        retry_failed=opts["retry_failed"],
        no_upstream=opts["no_upstream"],
        wait=not opts["no_wait"],
    )
    backend = "slurm" if config.slurm else "local"
    return dry_run_text(group, group.select(*patterns), config, options, groups(), backend)


def _group_command(group: ParametrizedExperiments) -> click.Command:
    count = len(group.experiments)
    doc = group.description or f"Run experiments of the group '{group.name}'."

    def callback(patterns: tuple[str, ...], **opts: Any) -> None:
        ctx = click.get_current_context()
        _check_options(opts)
        if opts["diff"] and patterns:
            raise UsageError("--diff A B names the two experiments: no patterns beside it")
        try:
            code = None
            if opts["remote"] or opts["pull"]:
                from xhelpers.remote.verbs import remote_or_pull

                code = remote_or_pull(group, patterns, opts, ctx.meta.get("xh_args", []))
            if code is None:
                code = _show_only(group, patterns, opts)
            if code is None:
                verbose = opts["verbose"]
                summary = group(
                    *patterns,
                    jobs=opts["jobs"],
                    workers=opts["workers"],
                    gpus=opts["gpus"],
                    force=opts["force"],
                    rerun_stale=opts["rerun_stale"],
                    retry_failed=opts["retry_failed"],
                    no_upstream=opts["no_upstream"],
                    config_file=opts["config_file"],
                    loglevel=level_for_verbosity(verbose) if verbose else None,
                    post_mortem=opts["post_mortem"],
                    progress=opts["progress"],
                    slurm=opts["slurm"],
                    wait=not opts["no_wait"],
                    console=True,
                    slack=not opts["no_slack"],
                )
                code = summary.exit_code
        except XHelpersError as exc:
            raise _fail(exc) from None
        ctx.exit(code)

    return _GroupCommand(
        group,
        name=group.name,
        params=_options(),
        callback=callback,
        help=doc,
        short_help=f"{count} experiment{'s' if count != 1 else ''}",
        context_settings={"max_content_width": 100},
    )


def serve_command(tree: bool = False) -> click.Command:
    """``serve``: the dashboard of every registered group, or (``tree``) of the result
    tree a PATH argument names (``xhelpers serve RESULTS``)."""
    from xhelpers.serve.command import serve_command as command  # click only: no web stack

    return command(None if tree else lambda: list(framework.groups().values()))


class _Groups(click.Group):
    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        group = framework.groups().get(cmd_name)
        if group is None and cmd_name == "serve":
            return serve_command()
        return _group_command(group) if group else None

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = list(framework.groups())
        return names if "serve" in names else [*names, "serve"]

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        name = args[0] if args else ""
        if name and not name.startswith("-") and name not in framework.groups() and name != "serve":
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
    from xhelpers.views import completion  # noqa: F401 - our bash, zsh and fish completion scripts

    cli = build_cli()
    main: Callable[..., Any] = cli.main
    # A fixed variable: click derives one from the program name, and "run.py" would
    # give "_RUN.PY_COMPLETE", which no shell can set.
    return main(
        args=args,
        prog_name=_prog_name(),
        standalone_mode=standalone_mode,
        complete_var="_XHELPERS_COMPLETE",
    )


def _prog_name() -> str:
    """The script's file name as typed (run.py, ./train-all), for usage lines."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return script if script and script not in ("-c", "__main__.py") else "xhelpers"
