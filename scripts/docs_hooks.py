"""MkDocs hooks for the xhelpers site (mkdocs.yml: ``hooks``), and a griffe extension.

- The CLI reference cannot drift from the code: ``<!-- cli: COMMAND -->`` in a page is
  replaced by the real output of COMMAND, run when the site is built (``run.py ...``
  runs the quickstart's run.py, the first ``# run.py`` block of docs/quickstart.md, in
  a fresh folder; ``xhelpers ...`` runs ``python -m xhelpers ...``), and
  ``<!-- cli: options -->`` by the list of a group's options, read from the click
  command itself.
- The site needs nothing from the internet: a page that loads a script, a stylesheet or
  a font from another host is a warning, so ``mkdocs build --strict`` fails on it.
- ``SphinxRoles`` (mkdocstrings' ``extensions``) turns the Sphinx roles in docstrings
  (``:class:`~xhelpers.errors.ConfigError``` ...) into code that links to the object
  when the API reference documents it.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import griffe

log = logging.getLogger("mkdocs.hooks.xhelpers")

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"^<!--\s*cli:\s*(?P<command>.*?)\s*-->[ \t]*$", re.M)
QUICKSTART_RUN_PY = re.compile(r"```python\n(# run\.py\n.*?)```", re.S)
COLUMNS = "80"


def _quickstart_run_py(docs_dir: Path) -> str:
    match = QUICKSTART_RUN_PY.search((docs_dir / "quickstart.md").read_text())
    if match is None:
        raise RuntimeError("docs/quickstart.md has no '# run.py' python block")
    return match.group(1)


def command_output(command: str, docs_dir: Path) -> str:
    """What ``command`` prints (stdout and stderr), run as a reader would run it."""
    words = command.split()
    if words[0] == "run.py":
        argv = [sys.executable, "run.py", *words[1:]]
    elif words[0] == "xhelpers":
        argv = [sys.executable, "-m", "xhelpers", *words[1:]]
    else:
        raise ValueError(f"cli placeholder: cannot run {command!r}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XHELPERS_", "_XHELPERS_"))}
    env.update(COLUMNS=COLUMNS, PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    with tempfile.TemporaryDirectory() as folder:
        Path(folder, "run.py").write_text(_quickstart_run_py(docs_dir))
        done = subprocess.run(
            argv,
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
    if done.returncode != 0:
        raise RuntimeError(f"{command}: exit {done.returncode}: {done.stderr}")
    return (done.stdout + done.stderr).rstrip("\n")


def group_options() -> list[tuple[str, str]]:
    """(flags and value, help) of every option of a group's command, from click."""
    import click

    from xhelpers import framework
    from xhelpers.cli import build_cli

    name = "docs-cli-reference"
    framework.ParametrizedExperiments(name, {"experiment": print})
    try:
        cli = build_cli()
        ctx = click.Context(cli, info_name="run.py")
        command = cli.get_command(ctx, name)
        assert command is not None
        sub = click.Context(command, info_name=name, parent=ctx)
        records = [p.get_help_record(sub) for p in command.params if isinstance(p, click.Option)]
    finally:
        framework.unregister(name)
    return [record for record in records if record is not None]


def _options_markdown() -> str:
    lines = ["- `PATTERNS...`: experiment names or fnmatch patterns; none selects the group."]
    for flags, text in group_options():
        lines.append(f"- `{flags}`: {text}")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if "<!--" not in markdown:
        return markdown
    docs_dir = Path(config["docs_dir"])

    def replace(match: re.Match[str]) -> str:
        command = match["command"]
        if command == "options":
            return _options_markdown()
        shown = f"python {command}" if command.startswith("run.py") else command
        return f"```console\n$ {shown}\n{command_output(command, docs_dir)}\n```"

    return PLACEHOLDER.sub(replace, markdown)


# A tag that makes the browser fetch from another host when the page is viewed.
_EXTERNAL = re.compile(
    r"<(?:script|img|iframe)\b[^>]*\bsrc=[\"'](?:https?:)?//"
    r"|<link\b(?=[^>]*\brel=[\"']?(?:stylesheet|preconnect|preload|icon|modulepreload))"
    r"[^>]*\bhref=[\"'](?:https?:)?//"
    r"|@import\s+(?:url\()?[\"']?(?:https?:)?//",
    re.I,
)


def on_post_page(output: str, page: Any, config: Any) -> str:
    match = _EXTERNAL.search(output)
    if match:
        log.warning(
            "%s loads something from the internet (%r): the site must work offline",
            page.file.src_path,
            output[match.start() : match.start() + 120],
        )
    return output


_ROLE = re.compile(r":(?:class|func|meth|mod|attr|data|exc|obj):`(?P<tilde>~?)(?P<path>[\w.]+)`")


class SphinxRoles(griffe.Extension):
    """``:func:`grid``` in a docstring becomes `grid`, linked when it is documented."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        docstring = obj.docstring
        if docstring is None or ":`" not in docstring.value:
            return
        module = obj.module.path if not obj.is_module else obj.path

        def replace(match: re.Match[str]) -> str:
            path = match["path"]
            title = path.rsplit(".", 1)[-1] if match["tilde"] else path
            target = path if "." in path else f"{module}.{path}"
            return f'<autoref identifier="{target}" optional><code>{title}</code></autoref>'

        docstring.value = _ROLE.sub(replace, docstring.value)
