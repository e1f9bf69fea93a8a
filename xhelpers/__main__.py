"""``python -m xhelpers run FILE.toml [GROUP] [PATTERNS]... [OPTIONS]`` (also ``xhelpers run``),
and ``python -m xhelpers serve [RESULTS]``, the dashboard of a result tree.

Defines the groups of a TOML experiment file (see :mod:`xhelpers.declarative`), then
runs the CLI every ``run.py`` has: the same patterns and options (``-j``, ``-v``, ``-l``,
``--force``, ``--config``, ...). The group may be left out when the file defines one.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

USAGE = """\
Usage: xhelpers run FILE.toml [GROUP] [PATTERNS]... [OPTIONS]
       xhelpers serve [RESULTS] [--host HOST] [--port PORT]

  Run the experiments a TOML file defines, with the options of a run.py:

    xhelpers run experiments.toml sweep "lr=0.1/*" -j4 -v
    xhelpers run experiments.toml sweep -l
    xhelpers run experiments.toml --help          (its groups)
    xhelpers run experiments.toml sweep --help    (a group's options and experiments)

  Browse a result tree (default: ./results) in a web browser, without its run.py:

    xhelpers serve results/

  GROUP may be left out when the file defines a single group.
  `python -m xhelpers` is the same as `xhelpers`.
"""


def main(argv: Sequence[str] | None = None) -> int:
    """The ``xhelpers`` command; returns (or exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if args[0] == "--version":
        from xhelpers._version import __version__

        print(f"xhelpers {__version__}")
        return 0
    if args[0] == "serve":
        from xhelpers.cli import serve_command

        serve_command(tree=True).main(
            args=args[1:], prog_name="xhelpers serve", standalone_mode=True
        )
        return 0
    if args[0] != "run":
        return _usage_error(f"unknown command {args[0]!r}; the commands are 'run' and 'serve'")
    if len(args) < 2 or args[1] in ("-h", "--help"):
        if len(args) < 2:
            return _usage_error("missing FILE: xhelpers run FILE.toml [GROUP] [PATTERNS]...")
        print(USAGE, end="")
        return 0
    path, rest = args[1], args[2:]

    from xhelpers.cli import build_cli
    from xhelpers.define.toml import load_experiments
    from xhelpers.errors import XHelpersError

    try:
        defined = load_experiments(path)
    except XHelpersError as exc:
        return _usage_error(str(exc))
    if rest and rest[0] in defined:
        pass
    elif len(defined) == 1:
        rest = [next(iter(defined)), *rest]
    elif rest and not rest[0].startswith("-"):
        return _usage_error(f"{path} has no group {rest[0]!r}; its groups: {', '.join(defined)}")
    elif not rest:
        return _usage_error(f"{path} defines several groups; name one: {', '.join(defined)}")
    # Exits with the run's code (0, 1, 2 or 130), as a run.py does.
    build_cli().main(args=rest, prog_name=f"xhelpers run {path}", standalone_mode=True)
    return 0


def _usage_error(message: str) -> int:
    print(f"Error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
