"""What ``--results``, ``--by``, ``--best``, ``--plot`` and ``--diff`` print or write.

:func:`answer` turns the CLI's options into text for stdout (the data) and a note for
stderr (counts, what was left out, where a file went), so a pipe gets data alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from xhelpers.views.results import (
    ResultTable,
    collect_table,
    format_cell,
    format_results,
    json_safe,
    rows_as_csv,
    rows_as_json,
)
from xhelpers.views.status import text_table

if TYPE_CHECKING:
    import pandas

    from xhelpers.framework import ParametrizedExperiments

__all__ = ["answer", "format_frame", "left_out", "output_format"]

_SUFFIX_FORMATS = {".csv": "csv", ".json": "json", ".parquet": "parquet"}


def output_format(fmt: str | None, output: str | None) -> str:
    """--format as given, else the one ``-o FILE``'s suffix names, else the text table."""
    if fmt:
        return fmt
    if output:
        return _SUFFIX_FORMATS.get(os.path.splitext(output)[1].lower(), "table")
    return "table"


def answer(
    group: ParametrizedExperiments, patterns: Sequence[str], opts: Mapping[str, Any]
) -> tuple[str, str]:
    """(stdout, stderr) for the results views the options ask for. A text table takes
    its note below it, as ``-l`` its counts; CSV, JSON and files leave stdout data alone."""
    out, note = _answer(group, patterns, opts)
    if out and note and output_format(opts.get("fmt"), opts.get("output")) == "table":
        return f"{out}\n\n{note}", ""
    return out, note


def _answer(
    group: ParametrizedExperiments, patterns: Sequence[str], opts: Mapping[str, Any]
) -> tuple[str, str]:
    config_file = opts.get("config_file")
    if opts.get("diff"):
        from xhelpers.views.diff import diff_text

        a, b = opts["diff"]
        return diff_text(group, a, b, config_file=config_file, fmt=opts.get("fmt") or "table"), ""
    table = collect_table(group, patterns, config_file=config_file)
    fmt = output_format(opts.get("fmt"), opts.get("output"))
    if opts.get("plot"):
        return "", _plot(group, table, opts)
    by = _columns(opts.get("by"))
    include_failed = bool(opts.get("include_failed"))
    if opts.get("best"):
        return _best(table, opts["best"], by, bool(opts.get("minimize")), include_failed, fmt)
    if by:
        from xhelpers.views.frames import aggregate, to_frame

        frame = aggregate(to_frame(table, "--by"), by, include_failed=include_failed)
        return _emit(frame, None, fmt, opts.get("output")), left_out(table, include_failed)
    return _emit(None, table, fmt, opts.get("output")), ""


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()] if text else []


def _emit(
    frame: pandas.DataFrame | None, table: ResultTable | None, fmt: str, output: str | None
) -> str:
    """The text for stdout, or "" once it is written to ``output``."""
    if fmt == "parquet":
        from xhelpers.core.files import save
        from xhelpers.views.frames import to_frame

        assert output is not None  # the CLI asks for -o with parquet
        data = frame if frame is not None else to_frame(table, "--format parquet")  # type: ignore[arg-type]
        save(data, os.path.abspath(output))
        return ""
    text = format_frame(frame, fmt) if frame is not None else format_results(table, fmt)  # type: ignore[arg-type]
    if not output:
        return text
    from xhelpers.core.files import atomic_write

    with atomic_write(os.path.abspath(output)) as stream:
        stream.write((text + "\n").encode())
    return ""


def format_frame(frame: pandas.DataFrame, fmt: str = "table") -> str:
    """A DataFrame of aggregates as the results table shows rows (table, csv, json)."""
    rows = frame.to_dict("records")
    columns = [str(c) for c in frame.columns]
    if fmt == "json":
        return rows_as_json(rows)
    if fmt == "csv":
        return rows_as_csv(columns, rows)
    if not rows:
        return "(no experiments selected)"
    return text_table(columns, [[format_cell(r[c]) for c in columns] for r in rows])


def left_out(table: ResultTable, include_failed: bool) -> str:
    """What an aggregate did not average: failed and not (yet) finished experiments."""
    from xhelpers.views.frames import FAILED_STATUSES
    from xhelpers.views.results import USABLE

    failed = sum(1 for r in table.rows if r["status"] in FAILED_STATUSES)
    missing = sum(1 for r in table.rows if r["status"] not in USABLE + FAILED_STATUSES)
    used = len(table.rows) - failed - missing
    parts = []
    if failed:
        how = (
            "(what they wrote is used)" if include_failed else "left out (--with-failed uses them)"
        )
        parts.append(f"{failed} failed, interrupted or blocked {how}")
    if missing:
        parts.append(f"{missing} not finished left out")
    head = f"used {used}{f' + {failed}' if include_failed and failed else ''} of {len(table.rows)}"
    return head + (": " + "; ".join(parts) if parts else "")


def _best(
    table: ResultTable, metric: str, by: list[str], minimize: bool, include_failed: bool, fmt: str
) -> tuple[str, str]:
    from xhelpers.views.frames import best, to_frame

    row = best(
        to_frame(table, "--best"),
        metric,
        by=by or None,
        minimize=minimize,
        include_failed=include_failed,
    )
    column = f"{metric}.mean" if by else metric
    note = f"best {column} ({'lowest' if minimize else 'highest'}); " + left_out(
        table, include_failed
    )
    if fmt == "json":
        return json.dumps(json_safe(row), indent=1, default=str, allow_nan=False), note
    width = max(len(str(k)) for k in row)
    lines = [f"{str(k).ljust(width)}  {format_cell(v)}" for k, v in row.items()]
    return "\n".join(lines), note


def _plot(group: ParametrizedExperiments, table: ResultTable, opts: Mapping[str, Any]) -> str:
    from xhelpers.views.frames import to_frame
    from xhelpers.views.plots import plot, write_plot

    metric, x = opts["plot"], opts["x"]
    figure = plot(
        to_frame(table, "--plot", "plots"),
        metric,
        x,
        hue=opts.get("hue"),
        logx=bool(opts.get("logx")),
        include_failed=bool(opts.get("include_failed")),
    )
    default = f"{metric}-by-{x}.png".replace("/", "_")  # a metric "loss/val" is no folder
    path = write_plot(figure, opts.get("output") or default)
    return f"wrote {path}; " + left_out(table, bool(opts.get("include_failed")))
