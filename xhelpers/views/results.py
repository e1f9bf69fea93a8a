"""The results table: one row per experiment, read from its metafile and result files.

Backs ``--results`` and ``group.results()``. A row holds the experiment's ``name``,
``status`` (as ``-l`` shows it) and ``duration``; then its parameters; then its metrics.

- **Parameters** are those the result was made with: the bound arguments its metafile
  recorded (literals read back as values; anything else stays its repr), and the
  current definition's only for an experiment that has no metafile yet. Positional
  arguments are ``arg0``, ``arg1``...; a dict argument is flattened into ``key.inner``
  columns; ``config`` is left out (``--diff`` shows it).
- **Metrics** are merged, later ones winning: the dict the experiment returned (any
  other value is ``returned``), ``result.json`` in its folder, and the files it saved
  with ``xh.save(..., result=True)`` (each a dict). A metric named like a parameter is
  ``result.<name>``. Lists and dicts stay lists and dicts.
- A row whose status is not done or stale keeps the metrics its run wrote (a failed
  run may write ``result.json`` before it raises), and its status says so; the text
  table brackets them, and aggregates leave them out unless asked.
"""

from __future__ import annotations

import ast
import csv
import functools
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from xhelpers.config import BaseConfig
from xhelpers.core import results
from xhelpers.core.fingerprints import Fingerprints
from xhelpers.views.status import (
    DONE,
    STALE,
    experiment_row,
    group_base,
    resolved_config,
    text_table,
)

if TYPE_CHECKING:
    from xhelpers.framework import ParametrizedExperiments

__all__ = [
    "ROW_KEYS",
    "ResultTable",
    "collect_results",
    "collect_table",
    "flatten",
    "format_cell",
    "format_results",
    "json_safe",
    "metrics_of_experiment",
    "parameters_of_experiment",
    "rows_as_csv",
    "rows_as_json",
]

ROW_KEYS = ("name", "status", "duration")
USABLE = (DONE, STALE)  # statuses whose metrics are those of a finished run
ResultFormat = Literal["table", "csv", "json"]


@dataclass(slots=True)
class ResultTable:
    """The rows of ``--results`` and which of their columns are parameters and metrics."""

    rows: list[dict[str, Any]]
    parameters: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)

    @property
    def columns(self) -> list[str]:
        return [*ROW_KEYS, *self.parameters, *self.metrics]


def collect_table(
    group: ParametrizedExperiments,
    patterns: Sequence[str] = (),
    *,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
) -> ResultTable:
    """The results of the selected experiments of ``group`` (see the module docstring)."""
    names = group.select(*patterns)
    resolved = resolved_config(group, config, config_file)
    base = group_base(group, resolved)
    fps = Fingerprints(resolved.fingerprint)  # as a run with this config compares them
    seen: dict[str, dict[str, Any] | None] = {}
    params: dict[str, None] = {}
    metrics: dict[str, None] = {}
    made = []
    for name in names:
        folder = base + name
        fn = group.experiments[name]
        meta = results.read_metafile(folder)
        status = experiment_row(name, folder, meta, fps, fn, seen).status
        duration = meta.get("duration") if meta is not None else None
        row_params = parameters_of_experiment(fn, meta)
        row_metrics = metrics_of_experiment(folder, meta)
        params.update(dict.fromkeys(row_params))
        metrics.update(dict.fromkeys(row_metrics))
        made.append((name, status, duration, row_params, row_metrics))
    # A metric named like a parameter (or a row key) of any row is result.<name>.
    clash = {m for m in metrics if m in params or m in ROW_KEYS}
    renamed = [f"result.{m}" if m in clash else m for m in metrics]
    table = ResultTable([], list(params), renamed)
    columns = table.columns
    empty = dict.fromkeys(columns)
    for name, status, duration, row_params, row_metrics in made:
        row = dict(empty)
        row.update(name=name, status=status, duration=duration)
        row.update(row_params)
        for key, value in row_metrics.items():
            row[f"result.{key}" if key in clash else key] = value
        table.rows.append(row)
    return table


def collect_results(
    group: ParametrizedExperiments,
    patterns: Sequence[str] = (),
    *,
    config: BaseConfig | Mapping[str, Any] | None = None,
    config_file: str | Literal[False] | None = None,
) -> list[dict[str, Any]]:
    """One dict per selected experiment (the rows of :func:`collect_table`)."""
    return collect_table(group, patterns, config=config, config_file=config_file).rows


# -- parameters ----------------------------------------------------------------------------
def parameters_of_experiment(fn: Any, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """The parameters an experiment's result was made with: the bound arguments its
    metafile recorded, else (not run yet) those of its current definition ``fn``."""
    if meta is not None and "arguments" in meta:
        return _recorded_parameters(meta)
    return _parameters(fn)


def _parameters(fn: Any) -> dict[str, Any]:
    """The current definition's bound arguments (an experiment not run yet)."""
    if not isinstance(fn, functools.partial):
        return {}
    bound = {f"arg{i}": v for i, v in enumerate(fn.args)}
    bound.update((k, v) for k, v in fn.keywords.items() if k != "config")
    return flatten({k: v if _plain(v) else repr(v) for k, v in bound.items()})


def _recorded_parameters(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The bound arguments a metafile recorded (as reprs), read back as values."""
    arguments = meta.get("arguments")
    if not isinstance(arguments, dict):
        return {}
    bound: dict[str, Any] = {}
    for i, text in enumerate(arguments.get("args") or ()):
        bound[f"arg{i}"] = _literal(str(text))
    kwargs = arguments.get("kwargs")
    if isinstance(kwargs, dict):
        bound.update((str(k), _literal(str(v))) for k, v in kwargs.items() if k != "config")
    return flatten(bound)


_NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


@functools.lru_cache(maxsize=8192)  # a sweep repeats its values: each is parsed once
def _literal(text: str) -> Any:
    """A repr read back: a Python literal (number, string, list, dict...) as its value,
    anything else (a Path, an object) as the repr itself."""
    if text in _NON_FINITE:
        return _NON_FINITE[text]
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def _plain(value: Any) -> bool:
    """A value the table keeps as it is: JSON's kinds (nested), tuples as lists."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def flatten(bound: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts (string keys) as dotted keys, ``{"a": {"b": 1}}`` as ``{"a.b": 1}``;
    tuples as lists. An empty dict stays a value: it has no key to become."""
    out: dict[str, Any] = {}
    for key, value in bound.items():
        if isinstance(value, dict) and value and all(isinstance(k, str) for k in value):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = list(value) if isinstance(value, tuple) else value
    return out


# -- metrics -------------------------------------------------------------------------------
def metrics_of_experiment(folder: str, meta: Mapping[str, Any] | None) -> dict[str, Any]:
    """What the experiment in ``folder`` (metafile ``meta``) produced, merged as the
    module docstring says, under its own names (the table renames one that clashes)."""
    out: dict[str, Any] = {}
    returned = meta.get("returned") if meta else None
    if isinstance(returned, dict):
        out.update((str(k), v) for k, v in returned.items())
    elif returned is not None:
        out["returned"] = returned
    try:
        with open(os.path.join(folder, "result.json"), "rb") as f:
            data = json.loads(f.read())
    except (OSError, ValueError):
        data = None
    if isinstance(data, dict):
        out.update((str(k), v) for k, v in data.items())
    files = meta.get("result_files") if meta else None
    if isinstance(files, list):
        for file in files:
            data = _result_file(folder, str(file))
            if isinstance(data, dict):
                out.update((str(k), v) for k, v in data.items())
    return out


def _result_file(folder: str, file: str) -> Any:
    from xhelpers.core.files import load
    from xhelpers.errors import FileFormatError

    try:
        return load(os.path.join(folder, file))
    except (OSError, ValueError, FileFormatError):
        return None  # gone, or cut short: the row shows what else there is


# -- output --------------------------------------------------------------------------------
def json_safe(value: Any) -> Any:
    """``value`` as strict JSON can hold it: NaN and infinities as None (null)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def format_cell(value: Any, *, exact: bool = False) -> str:
    """A value as a table cell: lists and dicts as compact JSON, None empty, and floats to
    6 significant digits unless ``exact`` (CSV keeps every digit)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not exact:
        text = repr(value)  # 2.0 stays 2.0; 0.8190000000000001 becomes 0.819
        return text if len(text) <= 10 else f"{value:.6g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(json_safe(value), separators=(",", ":"))
    return str(value)


def rows_as_json(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as strict JSON: NaN and infinities as null."""
    return json.dumps(json_safe(list(rows)), indent=1, default=str, allow_nan=False)


def rows_as_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as CSV under a header: every digit of a float, lists and dicts as JSON."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([[format_cell(r[c], exact=True) for c in columns] for r in rows])
    return out.getvalue().rstrip("\n")


def format_results(table: ResultTable, fmt: ResultFormat = "table") -> str:
    """The table as text (metrics of runs that did not finish in brackets), CSV (with a
    header; lists and dicts as JSON) or JSON (NaN and infinities as null)."""
    if fmt == "json":
        return rows_as_json(table.rows)
    columns = table.columns
    if fmt == "csv":
        return rows_as_csv(columns, table.rows)
    if not table.rows:
        return "(no experiments selected)"
    metric_set = set(table.metrics)
    marked = False
    cells = []
    for row in table.rows:
        usable = row["status"] in USABLE
        line = []
        for c in columns:
            value = row[c]
            text = format_cell(value)
            if c == "duration" and isinstance(value, (int, float)):
                text = f"{value:.2f}s"
            elif c in metric_set and not usable and text:
                text, marked = f"[{text}]", True
            line.append(text)
        cells.append(line)
    text = text_table(columns, cells)
    if marked:
        text += "\n\n[...]: written by a run that did not succeed; left out of --by and --best"
    return text
