"""Command templates: which parameters they take, and the command line they give.

A template is a ``str.format`` string; its fields are the placeholders xhelpers fills
(``PLACEHOLDERS``) and the command's parameters. Filled for a shell, every value is
shell-quoted; for ``shell=False`` the template is split into arguments first and each
value fills its argument as it is.
"""

from __future__ import annotations

import functools
import os
import shlex
import string
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from xhelpers.define.placeholders import template_fields
from xhelpers.errors import ExperimentDefinitionError

__all__ = [
    "FORMAT_ERRORS",
    "PLACEHOLDERS",
    "braced",
    "check_params",
    "check_splits",
    "named_files",
    "render_command",
]

PLACEHOLDERS = ("cwd", "name", "group", "time", "here")

# What str.format raises for a field it cannot fill from the values given.
FORMAT_ERRORS = (KeyError, AttributeError, IndexError, TypeError, ValueError)


def braced(fields: Iterable[str]) -> str:
    """``{a}, {b}``: fields as a template writes them, for error messages."""
    return ", ".join(f"{{{f}}}" for f in fields)


def check_params(template: str, params: Collection[str]) -> None:
    """Fail unless ``template`` is valid and uses every parameter, none a placeholder."""
    fields = template_fields(template, "command template")
    reserved = [p for p in params if p in PLACEHOLDERS]
    if reserved:
        raise ExperimentDefinitionError(
            f"command {template!r}: {', '.join(repr(p) for p in reserved)} "
            f"{'is a placeholder' if len(reserved) == 1 else 'are placeholders'} "
            f"xhelpers fills ({', '.join(PLACEHOLDERS)}); name the parameter otherwise",
            offending=reserved,
        )
    unused = [p for p in params if p not in fields]
    if unused:
        raise ExperimentDefinitionError(
            f"command {template!r} does not use {braced(unused)}; "
            "every parameter must appear in the command template",
            offending=unused,
        )


def check_splits(template: str) -> None:
    """Fail unless ``template`` splits into arguments (for ``shell=False``)."""
    try:
        shlex.split(template)
    except ValueError as exc:
        raise ExperimentDefinitionError(f"command {template!r}: {exc}") from None


class _Quoting(string.Formatter):
    def __init__(self, quote: bool) -> None:
        super().__init__()
        self.quote = quote

    def format_field(self, value: Any, format_spec: str) -> str:
        if isinstance(value, list) and value and all(isinstance(v, os.PathLike) for v in value):
            # Several upstream results (xh.upstreams): their folders, one word each.
            paths = [os.fspath(v) for v in value]
            return " ".join(shlex.quote(p) if self.quote else p for p in paths)
        text = format(value, format_spec)
        return shlex.quote(text) if self.quote else text


_SHELL = _Quoting(True)
_PLAIN = _Quoting(False)


def render_command(template: str, values: Mapping[str, Any], shell: bool) -> str | list[str]:
    """``template`` filled with ``values``: a command line (``shell``) or an argv."""
    try:
        if shell:
            return _SHELL.vformat(template, (), values)
        return [_PLAIN.vformat(arg, (), values) for arg in shlex.split(template)]
    except FORMAT_ERRORS as exc:
        raise ExperimentDefinitionError(
            f"command {template!r}: cannot fill it: {type(exc).__name__}: {exc}"
        ) from None


@functools.lru_cache(maxsize=256)  # a grid is thousands of commands of one template
def named_files(template: str, here: str) -> tuple[tuple[str, str], ...]:
    """(word, path) of each file ``template`` names through ``{here}``, as its code.

    A word counts when ``{here}`` is its only field (``{here}/train.py``), and so does
    the value of an ``--option={here}/...`` word. Words without ``{here}`` are not
    looked at: a command runs in the experiment's folder, so a relative path there
    names the experiment's own files, and parameters or run-time placeholders name
    data more often than code. Whether each path is a file is for the caller to see.
    """
    try:
        words = shlex.split(template)
    except ValueError:  # unbalanced quotes: the shell would say so when it runs
        words = template.split()
    named: dict[str, str] = {}
    for word in words:
        option, eq, value = word.partition("=")
        for candidate in (word, value) if eq and option.startswith("-") else (word,):
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(candidate) if f is not None}
                if fields != {"here"}:
                    continue
                path = candidate.format(here=here)
            except FORMAT_ERRORS:
                continue
            named.setdefault(candidate, os.path.join(here, path))
    return tuple(named.items())
