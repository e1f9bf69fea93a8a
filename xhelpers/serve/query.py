"""The table's questions to the index: filter, sort and page a group's rows.

Filtering walks the rows in Python (about 50 ms per 100,000); a sorted order is kept
per group, column and direction until a row changes, so paging through it is a slice.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from xhelpers.serve.index import GroupIndex, Row
from xhelpers.views.results import ROW_KEYS, format_cell
from xhelpers.views.status import STATUS_ORDER

__all__ = [
    "BASE_COLUMNS",
    "MAX_PAGE",
    "Query",
    "cell",
    "counts",
    "page",
    "result_rows",
    "value",
]

# The table's own columns, before the parameters and the metrics.
BASE_COLUMNS = ("name", "status", "duration", "finished", "where")
MAX_PAGE = 500
_ORDER = {s: i for i, s in enumerate(STATUS_ORDER)}


@dataclass
class Query:
    statuses: frozenset[str] = frozenset()
    name: str = ""  # a glob when it holds * ? or [, else a part of the name
    params: Mapping[str, str] = field(default_factory=dict)  # parameter -> its cell text
    sort: str = ""
    desc: bool = False
    page: int = 0
    size: int = 50

    @classmethod
    def parse(cls, args: Mapping[str, str], statuses: Sequence[str]) -> Query:
        """From a request's query string (``p.<param>=value`` filters a parameter)."""
        try:
            page = max(0, int(args.get("page", "0")))
            size = min(MAX_PAGE, max(1, int(args.get("size", "50"))))
        except ValueError:
            page, size = 0, 50
        return cls(
            statuses=frozenset(s for s in statuses if s),
            name=args.get("name", "").strip(),
            params={k[2:]: v for k, v in args.items() if k.startswith("p.") and v != ""},
            sort=args.get("sort", ""),
            desc=args.get("desc", "") in ("1", "true"),
            page=page,
            size=size,
        )


def value(row: Row, column: str) -> Any:
    """A row's value in ``column``: its own fields, then parameters, then metrics."""
    if column == "name":
        return row.name
    if column == "status":
        return row.status
    if column == "duration":
        return row.duration
    if column == "finished":
        return row.ended
    if column == "where":
        return row.where
    if column in row.params:
        return row.params[column]
    return row.metrics.get(column)


def cell(row: Row, column: str) -> str:
    """What the table shows in ``column``, as ``-l`` and ``--results`` write it."""
    v = value(row, column)
    if column == "duration" and isinstance(v, (int, float)):
        return f"{v:.2f}s"
    if column == "finished" and isinstance(v, str):
        return v[:19].replace("T", " ")
    return format_cell(v)


def _sort_key(column: str) -> Callable[[Row], tuple[int, Any]]:
    """A row's place in ``column``: numbers, then text, then missing (NaN is missing)."""
    if column == "status":
        return lambda row: (_ORDER.get(row.status, len(_ORDER)), row.status)
    if column in BASE_COLUMNS:

        def get(row: Row) -> Any:
            return value(row, column)

    else:  # 100,000 calls: straight to the dicts

        def get(row: Row) -> Any:
            params = row.params
            return params[column] if column in params else row.metrics.get(column)

    def key(row: Row) -> tuple[int, Any]:
        v = get(row)
        kind = type(v)
        if kind is float:
            return (1, v) if v == v else _LAST  # (NaN is not equal to itself)
        if kind is int:
            return (1, v)
        if kind is str:
            return (2, v)
        if v is None:
            return _LAST
        if kind is bool:
            return (1, int(v))
        return (2, format_cell(v))

    return key


_LAST = (3, 0)


def _sort(rows: list[Row], column: str, desc: bool) -> list[Row]:
    """``rows`` in order of ``column``, missing values last either way."""
    key = _sort_key(column)
    keys = [key(r) for r in rows]
    order = sorted(range(len(rows)), key=keys.__getitem__, reverse=desc)
    rows = [rows[i] for i in order]
    if desc:  # the missing ones came first: they go last, in their order
        missing = sum(1 for k in keys if k is _LAST)
        rows = rows[missing:] + rows[:missing]
    return rows


def _sorted(group: GroupIndex, column: str, desc: bool) -> list[Row]:
    """All the rows in order of ``column``, kept until a row changes."""
    cache = group.sorts
    hit = cache.get((column, desc))
    if hit is not None and hit[0] == group.version:
        return hit[1]
    rows = list(group.rows.values())
    if column:
        rows = _sort(rows, column, desc)
    if len(cache) > 8:
        cache.clear()
    cache[(column, desc)] = (group.version, rows)
    return rows


def _name_test(pattern: str) -> Any:
    if not pattern:
        return None
    if any(c in pattern for c in "*?["):
        return re.compile(fnmatch.translate(pattern)).match
    return lambda name: pattern in name


def page(group: GroupIndex, query: Query) -> dict[str, Any]:
    """One page of the filtered, sorted table, as the page's script draws it.

    Filters that keep few rows are applied first and those few sorted; otherwise all
    rows are sorted once (then kept) and filtered in that order."""
    with_columns = [*BASE_COLUMNS, *group.params, *group.metrics]
    column = query.sort if query.sort in with_columns else ""
    test = _name_test(query.name)
    statuses = query.statuses
    wanted = [(k, v) for k, v in query.params.items() if k in group.params]
    filtered = bool(statuses or test or wanted)
    sort_first = group.sorts.get((column, query.desc), (-1, []))[0] == group.version
    if not filtered or sort_first or not column:
        rows = _sorted(group, column, query.desc)
        if filtered:
            rows = _keep(rows, statuses, test, wanted)
    else:
        rows = _keep(list(group.rows.values()), statuses, test, wanted)
        if len(rows) * 4 < len(group.rows):  # few: sorting them beats sorting all
            rows = _sort(rows, column, query.desc)
        else:
            rows = _keep(_sorted(group, column, query.desc), statuses, test, wanted)
    start = query.page * query.size
    shown = rows[start : start + query.size]
    return {
        "group": group.name,
        "total": len(group.rows),
        "matching": len(rows),
        "page": query.page,
        "size": query.size,
        "columns": {
            "base": list(BASE_COLUMNS),
            "parameters": list(group.params),
            "metrics": list(group.metrics),
        },
        "rows": [
            {"name": r.name, "status": r.status, "cells": [cell(r, c) for c in with_columns]}
            for r in shown
        ],
        "version": group.version,
    }


def _keep(
    rows: list[Row],
    statuses: frozenset[str],
    test: Any,
    wanted: list[tuple[str, str]],
) -> list[Row]:
    """The rows that pass every filter, in their order."""
    memo: dict[tuple[type, Any], str] = {}  # a sweep repeats its values: format each once

    def text(v: Any) -> str:
        try:
            found = memo.get((type(v), v))
        except TypeError:  # a list or dict
            return format_cell(v)
        if found is None:
            found = memo[(type(v), v)] = format_cell(v)
        return found

    kept = []
    for row in rows:
        if statuses and row.status not in statuses:
            continue
        if test is not None and not test(row.name):
            continue
        if wanted and any(text(row.params.get(k)) != v for k, v in wanted):
            continue
        kept.append(row)
    return kept


def counts(group: GroupIndex) -> dict[str, int]:
    """How many rows of each status, in ``-l``'s order of statuses."""
    found: dict[str, int] = {}
    for row in group.rows.values():
        found[row.status] = found.get(row.status, 0) + 1
    ordered = {s: found.pop(s) for s in STATUS_ORDER if s in found}
    return {**ordered, **found}


def result_rows(group: GroupIndex) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """The rows as ``--results`` has them (a metric named like a parameter is
    ``result.<name>``), with the parameters and the metrics: for the plots' frame."""
    params = list(group.params)
    clash = {m for m in group.metrics if m in group.params or m in ROW_KEYS}
    metrics = [f"result.{m}" if m in clash else m for m in group.metrics]
    empty = dict.fromkeys([*ROW_KEYS, *params, *metrics])
    out = []
    for r in group.rows.values():
        row = dict(empty)
        row.update(name=r.name, status=r.status, duration=r.duration)
        row.update(r.params)
        for k, v in r.metrics.items():
            row[f"result.{k}" if k in clash else k] = v
        out.append(row)
    return out, params, metrics
