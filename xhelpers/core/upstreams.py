"""Experiments that use other experiments' results: the placeholders and the handles.

An experiment names what it needs where the data flows, as an argument of its partial::

    partial(evaluate, model=xh.upstream("train", "lr=0.1"))     # one result
    partial(pick_best, runs=xh.upstreams("eval", "lr=*"))       # every matching one

The placeholders are plain values (they fingerprint by their repr); when the experiment
runs, each is replaced by a :class:`Result` (or a list of them, in name order) that
points at the upstream's folder. The runner runs upstreams first (see
:mod:`xhelpers.core.pipeline`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from xhelpers.core import results

__all__ = ["Result", "Upstream", "placeholders_in", "resolved", "upstream", "upstreams"]


class Upstream:
    """A placeholder for the result(s) of experiments of ``group`` matching ``pattern``.

    ``many`` False: exactly one experiment (its name, or a pattern matching one);
    True: every match, as a list. A pattern may hold ``{param}`` fields, which a grid
    fills from each of its experiments' parameters (element-wise stages).
    """

    __slots__ = ("group", "many", "pattern")

    def __init__(self, group: str, pattern: str, *, many: bool) -> None:
        if not isinstance(group, str) or not group:
            raise TypeError(f"an upstream's group must be a group name, not {group!r}")
        if not isinstance(pattern, str) or not pattern:
            raise TypeError(f"an upstream's name must be a name or pattern, not {pattern!r}")
        self.group = group
        self.pattern = pattern
        self.many = many

    def __repr__(self) -> str:  # what fingerprints it: stable across processes and runs
        kind = "upstreams" if self.many else "upstream"
        return f"xh.{kind}({self.group!r}, {self.pattern!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Upstream) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def _key(self) -> tuple[str, str, bool]:
        return (self.group, self.pattern, self.many)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_make, self._key())

    def formatted(self, params: Mapping[str, Any]) -> Upstream:
        """This placeholder with ``{param}`` fields of its pattern filled from ``params``."""
        if "{" not in self.pattern:
            return self
        try:
            pattern = self.pattern.format_map(params)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{self!r}: cannot fill its pattern: {exc}") from None
        return Upstream(self.group, pattern, many=self.many)


def _make(group: str, pattern: str, many: bool) -> Upstream:
    return Upstream(group, pattern, many=many)


def upstream(group: str, name: str) -> Any:
    """The result of one experiment of ``group``: its name, or a pattern matching exactly one.

    Typed ``Any`` so that it can stand in for any parameter; the experiment receives a
    :class:`Result`.
    """
    return Upstream(group, name, many=False)


def upstreams(group: str, pattern: str) -> Any:
    """The results of every experiment of ``group`` matching ``pattern``, in name order
    (at least one must match); the experiment receives a list of :class:`Result`."""
    return Upstream(group, pattern, many=True)


class Result:
    """One upstream experiment's result, as the experiment that uses it sees it.

    ``folder`` is a :class:`pathlib.Path`; ``metafile`` and ``returned`` are read when
    first asked. ``str(result)`` is the folder, so a command template can take it.
    """

    __slots__ = ("_meta", "folder", "group", "name")

    def __init__(self, group: str, name: str, folder: str | os.PathLike[str]) -> None:
        self.group = group
        self.name = name
        self.folder = Path(folder)
        self._meta: dict[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Result({self.group!r}, {self.name!r}, folder={str(self.folder)!r})"

    def __str__(self) -> str:
        return str(self.folder)

    def __fspath__(self) -> str:
        return str(self.folder)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Result, (self.group, self.name, str(self.folder)))

    @property
    def metafile(self) -> dict[str, Any]:
        """Its metafile, as it was when first asked ({} if it has none)."""
        if self._meta is None:
            self._meta = results.read_metafile(str(self.folder)) or {}
        return self._meta

    @property
    def returned(self) -> Any:
        """What the experiment returned (None if nothing JSON-serializable)."""
        return self.metafile.get("returned")

    def path(self, name: str) -> Path:
        """The path of a file in its folder."""
        return self.folder / name

    def load(self, name: str) -> Any:
        """A file of its folder, in the format its name says (as :func:`xhelpers.load`)."""
        from xhelpers.core.files import load

        return load(self.folder / name)


def placeholders_in(fn: Callable[..., Any]) -> tuple[Upstream, ...]:
    """The upstream placeholders ``fn``'s partials bind (also inside a bound list, tuple
    or dict), in order, each once. Asked of every experiment when its group is defined:
    plain values are passed over by their type alone."""
    found: list[Upstream] = []
    while isinstance(fn, functools.partial):
        for value in (*fn.args, *fn.keywords.values()):
            kind = type(value)
            if kind is Upstream:
                found.append(value)
            elif kind is list or kind is tuple:
                found.extend(v for v in value if type(v) is Upstream)
            elif kind is dict:
                found.extend(v for v in value.values() if type(v) is Upstream)
        fn = fn.func
    return tuple(dict.fromkeys(found)) if found else ()


def resolved(fn: Callable[..., Any], answers: Mapping[Upstream, Any]) -> Callable[..., Any]:
    """``fn`` with every placeholder replaced by its answer (a Result or a list of them)."""
    if not isinstance(fn, functools.partial):
        return fn

    def swap(value: Any) -> Any:
        if isinstance(value, Upstream):
            return answers[value]
        if isinstance(value, list):
            return [swap(v) for v in value]
        if isinstance(value, tuple):
            return tuple(swap(v) for v in value)
        if isinstance(value, dict):
            return {k: swap(v) for k, v in value.items()}
        return value

    with_params = getattr(fn, "with_params", None)
    if with_params is not None and type(fn) is not functools.partial:  # a command stays one
        return with_params(**{k: swap(v) for k, v in fn.keywords.items()})  # type: ignore[no-any-return]
    inner = resolved(fn.func, answers)
    return functools.partial(
        inner, *(swap(a) for a in fn.args), **{k: swap(v) for k, v in fn.keywords.items()}
    )
