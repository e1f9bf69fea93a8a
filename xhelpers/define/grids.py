"""Sweeps in one line: ``grid`` (Cartesian product) and ``zipped`` (paired values).

Both return an ordered ``{name: functools.partial}`` ready for
:class:`~xhelpers.ParametrizedExperiments`; merge several with ``{**a, **b}``.
Lists, tuples and ranges vary; any other value is a constant passed to every
experiment, and :func:`fixed` passes a list (or any value) as a constant.

Names come from a ``str.format`` template over the parameters. A value renders as:
``str`` as given, ``int`` and ``bool`` as Python writes them, ``None`` as ``None``,
``float`` as the shortest repr of the value rounded to 12 significant digits (``0.1``,
``1e-05``, ``1.0``, and ``0.3`` for ``0.1 + 0.2``), an enum member by its name, a
function or class by its ``__name__``, anything else by ``str()``. A format spec
(``{lr:.0e}``) or conversion (``{x!r}``) applies Python's own formatting instead.
A ``/`` in a rendered value is a folder level, as anywhere in a name.
"""

from __future__ import annotations

import enum
import functools
import inspect
import itertools
import math
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xhelpers.core.upstreams import Upstream
from xhelpers.define.placeholders import template_fields
from xhelpers.errors import ExperimentDefinitionError
from xhelpers.framework import _name_problem

__all__ = ["Fixed", "fixed", "grid", "render_name", "render_value", "zipped"]

_VARYING = (list, tuple, range)


@dataclass(frozen=True, slots=True)
class Fixed:
    """A constant for :func:`grid`/:func:`zipped`, even when it is a list; see :func:`fixed`."""

    value: Any


def fixed(value: Any) -> Fixed:
    """Pass ``value`` unchanged to every experiment, even a list.

    ``grid(train, "lr={lr}", lr=[0.1, 0.01], layers=fixed([64, 64]))``
    """
    return Fixed(value)


def render_value(value: Any) -> str:
    """How a parameter value appears in a name (see the module docstring)."""
    if value is None or isinstance(value, (bool, str)):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return repr(value)
        return repr(float(f"{value:.12g}"))
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, int):
        return int.__repr__(value)
    if (inspect.isfunction(value) or inspect.isclass(value)) and hasattr(value, "__name__"):
        return str(value.__name__)
    return str(value)


class _NameFormatter(string.Formatter):
    def format_field(self, value: Any, format_spec: str) -> str:
        return format(value, format_spec) if format_spec else render_value(value)


_NAMES = _NameFormatter()


def render_name(template: str, values: Mapping[str, Any]) -> str:
    """``template`` filled with ``values`` as in experiment names."""
    return _NAMES.vformat(template, (), values)


def grid(fn: Callable[..., Any] | str, template: str, /, **params: Any) -> dict[str, Any]:
    """Every combination of the varying parameters, as ``{name: partial(fn, **values)}``.

    The first parameter varies slowest. ``fn`` may also be a command template string
    or an :func:`xhelpers.command`: each experiment is then that command with the
    values filled in (see :mod:`xhelpers.commands`).

    >>> grid(train, "lr={lr}/seed={seed}", lr=[0.1, 0.01], seed=range(2), epochs=10)
    {'lr=0.1/seed=0': partial(train, lr=0.1, seed=0, epochs=10), ...}
    """
    constants, varying = _split(params)
    rows = (
        dict(zip(varying, combo, strict=True)) for combo in itertools.product(*varying.values())
    )
    return _build("grid", fn, template, constants, varying, rows)


def zipped(fn: Callable[..., Any] | str, template: str, /, **params: Any) -> dict[str, Any]:
    """Like :func:`grid`, but the i-th experiment takes the i-th value of each varying parameter.

    Every varying parameter must have the same number of values.
    """
    constants, varying = _split(params)
    lengths = {k: len(v) for k, v in varying.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise ExperimentDefinitionError(
            f"zipped {template!r}: varying parameters need equal lengths: {shown}",
            offending=list(lengths),
        )
    rows = (dict(zip(varying, combo, strict=True)) for combo in zip(*varying.values(), strict=True))
    return _build("zipped", fn, template, constants, varying, rows)


def _split(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Sequence[Any]]]:
    constants: dict[str, Any] = {}
    varying: dict[str, Sequence[Any]] = {}
    for key, value in params.items():
        if isinstance(value, Fixed):
            constants[key] = value.value
        elif isinstance(value, _VARYING):
            if len(value) == 0:
                raise ExperimentDefinitionError(
                    f"parameter {key!r} has no values (use fixed([]) to pass an empty list)",
                    offending=[key],
                )
            varying[key] = value
        elif isinstance(value, (set, frozenset, Iterator)):
            raise ExperimentDefinitionError(
                f"parameter {key!r}: a {type(value).__name__} has no stable order; pass a "
                "list to vary it, or fixed(...) to pass it unchanged",
                offending=[key],
            )
        else:
            constants[key] = value
    return constants, varying


def _build(
    kind: str,
    fn: Callable[..., Any] | str,
    template: str,
    constants: dict[str, Any],
    varying: dict[str, Sequence[Any]],
    rows: Iterator[dict[str, Any]],
) -> dict[str, Any]:
    fields = template_fields(template, f"{kind} name template")
    known = {**constants, **varying}
    unknown = [f for f in fields if f not in known]
    if unknown:
        raise ExperimentDefinitionError(
            f"{kind} name template {template!r} uses "
            + ", ".join(f"{{{f}}}" for f in unknown)
            + f", not a parameter; parameters: {', '.join(known) or 'none'}",
            offending=unknown,
        )
    make = _maker(fn, constants, list(known))
    experiments: dict[str, Any] = {}
    sources: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        values = {**constants, **row}
        try:
            name = render_name(template, values)
        except (KeyError, AttributeError, IndexError, TypeError, ValueError) as exc:
            raise ExperimentDefinitionError(
                f"{kind} name template {template!r} with {_show(row)}: {type(exc).__name__}: {exc}"
            ) from None
        problem = _name_problem(name)
        if problem is not None:
            raise ExperimentDefinitionError(
                f"{kind} name template {template!r} gives the invalid name {name!r} "
                f"({problem}) for {_show(row)}",
                offending=[name],
            )
        if name in sources:
            sources[name].append(row)
            continue
        sources[name] = [row]
        experiments[name] = make(row)
    collisions = {n: rows_ for n, rows_ in sources.items() if len(rows_) > 1}
    if collisions:
        raise _collision(kind, template, fields, varying, collisions)
    names = experiments.keys()
    for name in names:
        pos = name.find("/")
        while pos != -1:
            if name[:pos] in names:
                raise ExperimentDefinitionError(
                    f"{kind} name template {template!r} makes {name[:pos]!r} a folder of "
                    f"{name!r}; no experiment may contain another",
                    offending=[name[:pos], name],
                )
            pos = name.find("/", pos + 1)
    return experiments


def _maker(
    fn: Callable[..., Any] | str, constants: dict[str, Any], keys: list[str]
) -> Callable[[dict[str, Any]], Any]:
    from xhelpers.define.commands import Command

    if isinstance(fn, str):
        fn = Command(fn)
    placed = {k: v for k, v in constants.items() if isinstance(v, Upstream) and "{" in v.pattern}
    if placed:  # upstreams named after each experiment's own parameters: element-wise
        plain = {k: v for k, v in constants.items() if k not in placed}
        simple = _maker(fn, plain, keys)

        def make(row: dict[str, Any]) -> Any:
            fields = {**plain, **row}
            return simple({**row, **{k: v.formatted(fields) for k, v in placed.items()}})

        return make
    if isinstance(fn, Command):
        base = fn.with_params(**constants) if constants else fn
        return lambda row: base.with_params(**row).checked()
    if not callable(fn):
        raise ExperimentDefinitionError(
            f"grid: fn must be a callable or a command template string, not {fn!r}"
        )
    _check_signature(fn, keys)
    return lambda row: functools.partial(fn, **constants, **row)


def _check_signature(fn: Callable[..., Any], keys: list[str]) -> None:
    """Fail now, not in every experiment, when ``fn`` takes no such keyword."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    ok = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    accepted = {p.name for p in params if p.kind in ok}
    unknown = [k for k in keys if k not in accepted]
    if unknown:
        name = getattr(fn, "__qualname__", None) or repr(fn)
        raise ExperimentDefinitionError(
            f"{name}() takes no keyword argument "
            + ", ".join(repr(k) for k in unknown)
            + f"; it takes: {', '.join(sorted(accepted)) or 'none'}",
            offending=unknown,
        )


def _show(row: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in row.items()) or "no varying parameter"


def _collision(
    kind: str,
    template: str,
    fields: list[str],
    varying: dict[str, Sequence[Any]],
    collisions: dict[str, list[dict[str, Any]]],
) -> ExperimentDefinitionError:
    missing = [k for k in varying if k not in fields]
    shown = []
    for name, rows in list(collisions.items())[:5]:
        differ = [k for k in rows[0] if any(r[k] != rows[0][k] for r in rows)] or list(rows[0])
        shown_rows = [{k: r[k] for k in differ} for r in rows[:4]]
        which = "; ".join(_show(r) for r in shown_rows) + ("; ..." if len(rows) > 4 else "")
        shown.append(f"{name!r} ({which})")
    more = f" and {len(collisions) - 5} more" if len(collisions) > 5 else ""
    if missing:
        why = (
            "the template omits the varying parameter"
            + ("s " if len(missing) > 1 else " ")
            + ", ".join(repr(m) for m in missing)
            + "; add "
            + ", ".join(f"{{{m}}}" for m in missing)
            + " to it"
        )
    else:
        why = "different values render alike; use a format spec or distinct values"
    return ExperimentDefinitionError(
        f"{kind} name template {template!r} gives several experiments one name: "
        f"{', '.join(shown)}{more}: {why}",
        offending=list(collisions),
    )
