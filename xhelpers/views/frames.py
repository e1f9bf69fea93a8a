"""Results as a pandas DataFrame, aggregated over the remaining parameters, and the best.

pandas is an extra (``pip install 'xhelpers[frames]'``), imported only here and only
when asked; without it the error names what to install. Which columns are parameters
and which metrics travels with a frame in ``frame.attrs["xhelpers"]``; a frame without
it (built by hand) counts every column but the row keys as a parameter when grouping,
and every numeric one as a metric.

Aggregates use the rows whose status is done or stale (stale: made by an older
definition, with the parameters it recorded), unless ``include_failed`` adds failed
and interrupted ones; every other row is counted (``failed``, ``missing``), never
averaged in.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from xhelpers.core import results
from xhelpers.errors import MissingDependencyError, ResultsQueryError
from xhelpers.views.results import ROW_KEYS, USABLE, ResultTable

if TYPE_CHECKING:
    import pandas

__all__ = [
    "FAILED_STATUSES",
    "STATISTICS",
    "aggregate",
    "best",
    "check_metric",
    "check_parameters",
    "numeric_metrics",
    "parameters_of",
    "require",
    "to_frame",
]

STATISTICS = ("count", "mean", "std", "min", "max")  # std: the sample's (n - 1), as pandas
FAILED_STATUSES = (results.FAILED, results.INTERRUPTED, results.BLOCKED)
_COUNTS = ("experiments", "used", "failed", "missing")


def require(module: str, feature: str, extra: str) -> Any:
    """Import an optional library, or a one-line error naming what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        package = {"yaml": "pyyaml"}.get(module, module)
        raise MissingDependencyError(
            f"{feature} needs {package}, which is not installed: "
            f"pip install 'xhelpers[{extra}]' (or pip install {package})",
            package=package,
            extra=extra,
        ) from None


def to_frame(
    table: ResultTable, feature: str = "as_frame=True", extra: str = "frames"
) -> pandas.DataFrame:
    """The results table as a DataFrame: one row per experiment, in the table's columns
    (a missing value is NaN in a numeric column; lists and dicts stay objects).
    ``feature`` and ``extra`` name what needs pandas and what to install when it is missing."""
    pd = require("pandas", feature, extra)
    frame = pd.DataFrame.from_records(table.rows, columns=table.columns)
    frame.attrs["xhelpers"] = {"parameters": table.parameters, "metrics": table.metrics}
    return frame


def parameters_of(frame: pandas.DataFrame) -> list[str]:
    known = frame.attrs.get("xhelpers", {}).get("parameters")
    if known is not None:
        return [str(p) for p in known]
    return [str(c) for c in frame.columns if c not in ROW_KEYS]


def numeric_metrics(frame: pandas.DataFrame) -> list[str]:
    """Metrics whose values are numbers: those aggregates average (``duration`` is
    not among them unless asked for by name)."""
    pd = require("pandas", "aggregates", "frames")
    known = frame.attrs.get("xhelpers", {}).get("metrics")
    params = set(parameters_of(frame)) if known is not None else set()
    candidates = list(known) if known is not None else list(frame.columns)
    out = []
    for column in candidates:
        if column in params or column in ROW_KEYS or column not in frame.columns:
            continue
        values = frame[column]
        if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
            continue
        out.append(str(column))
    return out


def check_metric(frame: pandas.DataFrame, metric: str, what: str) -> None:
    """A one-line error, listing the numeric metrics, unless ``metric`` is one of them;
    ``what`` names the option in the message (``--best``)."""
    numeric = numeric_metrics(frame)
    if metric in numeric or (metric == "duration" and "duration" in frame.columns):
        return
    if metric in frame.columns:
        raise ResultsQueryError(
            f"{what} {metric!r}: its values are not numbers; numeric metrics: "
            + (", ".join(numeric) or "none")
        )
    raise ResultsQueryError(
        f"{what} {metric!r}: no such metric; numeric metrics: " + (", ".join(numeric) or "none")
    )


def check_parameters(frame: pandas.DataFrame, names: Sequence[str], what: str) -> None:
    """A one-line error, listing the parameters, unless every name is one."""
    params = parameters_of(frame)
    for name in names:
        if name not in params:
            raise ResultsQueryError(
                f"{what} {name!r}: no such parameter; parameters: " + (", ".join(params) or "none")
            )


def _usable(frame: pandas.DataFrame, include_failed: bool) -> Any:
    statuses = USABLE + ((results.FAILED, results.INTERRUPTED) if include_failed else ())
    return frame["status"].isin(statuses)


def aggregate(
    frame: pandas.DataFrame,
    by: Sequence[str],
    *,
    metrics: Sequence[str] | None = None,
    include_failed: bool = False,
) -> pandas.DataFrame:
    """One row per combination of the ``by`` parameters: how many experiments it has
    (``experiments``), how many were used, failed (or were interrupted or blocked) and
    are missing (not run, running, queued), and ``<metric>.count|mean|std|min|max`` of
    each numeric metric over the used ones. Sorted by the ``by`` values."""
    pd = require("pandas", "aggregates (--by)", "frames")
    by = list(by)
    if not by:
        raise ResultsQueryError("--by: name at least one parameter to group by")
    check_parameters(frame, by, "--by")
    chosen = list(metrics) if metrics is not None else numeric_metrics(frame)
    for metric in chosen:
        check_metric(frame, metric, "metric")
    used = _usable(frame, include_failed)
    failed = frame["status"].isin(FAILED_STATUSES)
    keys = [frame[b] for b in by]
    try:
        counts = (
            pd.DataFrame(
                {
                    "experiments": 1,
                    "used": used,
                    "failed": failed,
                    "missing": ~used & ~failed,
                },
                index=frame.index,
            )
            .groupby(keys, dropna=False, sort=True)
            .sum()
        )
    except TypeError as exc:  # a parameter whose values are lists or dicts
        raise ResultsQueryError(
            f"cannot group by {', '.join(by)}: a value is a list or dict ({exc})"
        ) from None
    if chosen:
        stats = (
            frame.loc[used, chosen]
            .groupby([k[used] for k in keys], dropna=False)
            .agg(list(STATISTICS))
        )
        stats.columns = [f"{m}.{s}" for m, s in stats.columns]
        out = counts.join(stats)
        for metric in chosen:
            out[f"{metric}.count"] = out[f"{metric}.count"].fillna(0).astype(int)
    else:
        out = counts
    for column in _COUNTS:
        out[column] = out[column].astype(int)
    out = out.reset_index()
    out.attrs["xhelpers"] = {"parameters": by, "metrics": chosen, "aggregated": True}
    return out


def best(
    frame: pandas.DataFrame,
    metric: str,
    *,
    by: Sequence[str] | None = None,
    minimize: bool = False,
    include_failed: bool = False,
) -> dict[str, Any]:
    """The experiment with the highest ``metric`` (lowest with ``minimize``) among the
    used ones, as its row; with ``by``, the combination with the best mean, as its row of
    :func:`aggregate`. The first wins a tie."""
    require("pandas", "--best", "frames")
    check_metric(frame, metric, "--best")
    if by:
        table = aggregate(frame, by, metrics=[metric], include_failed=include_failed)
        column = f"{metric}.mean"
    else:
        table = frame[_usable(frame, include_failed)]
        column = metric
    candidates = table[table[column].notna()]
    if candidates.empty:
        raise ResultsQueryError(f"--best {metric!r}: no finished experiment has a value for it")
    where = candidates[column].idxmin() if minimize else candidates[column].idxmax()
    row: dict[str, Any] = candidates.loc[[where]].to_dict("records")[0]
    return row
