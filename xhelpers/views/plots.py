"""``--plot`` and ``group.plot``: a metric's mean and spread against one parameter.

matplotlib is an extra (``pip install 'xhelpers[plots]'``), imported only here and only
when asked. Figures are made with :class:`matplotlib.figure.Figure` itself, never
pyplot: no global state to leak between calls, no GUI backend to pick on a headless
node, and nothing to close.

What is drawn comes from :func:`xhelpers.views.frames.aggregate` grouped by ``x`` (and
``hue``): the same numbers ``--by`` prints, so a plot never disagrees with the table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xhelpers.errors import ResultsQueryError
from xhelpers.views.frames import (
    aggregate,
    check_metric,
    check_parameters,
    parameters_of,
    require,
)
from xhelpers.views.results import format_cell

if TYPE_CHECKING:
    import pandas
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot", "plot_table", "write_plot", "y_label"]

_FORMATS = (".png", ".svg", ".pdf")  # what write_plot writes, by the file name's suffix
_BAND_ALPHA = 0.2


def plot(
    frame: pandas.DataFrame,
    metric: str,
    x: str,
    *,
    hue: str | None = None,
    logx: bool = False,
    include_failed: bool = False,
) -> Figure:
    """``metric``'s mean against parameter ``x`` (a line with markers) and mean ± std as
    a band, over the other parameters; one line per value of ``hue``. Uses what
    :func:`~xhelpers.views.frames.aggregate` uses: finished experiments, and failed or
    interrupted ones too with ``include_failed``.

    Each line has one band in ``ax.collections``, at the same index (empty where every
    point is a single experiment, whose std is undefined)."""
    require("matplotlib", "--plot", "plots")
    from matplotlib.figure import Figure

    table, numeric = plot_table(frame, metric, x, hue=hue, logx=logx, include_failed=include_failed)
    by = [x] if hue is None else [x, hue]

    figure = Figure(layout="constrained")
    ax = figure.add_subplot()
    if numeric:
        positions: dict[Any, float] = {}
    else:  # categories in the order aggregate sorted them, the same for every line
        positions = {v: float(i) for i, v in enumerate(dict.fromkeys(table[x]))}
    lines = [(None, table)] if hue is None else list(table.groupby(hue, dropna=False, sort=True))
    for value, rows in lines:
        label = f"{hue}={format_cell(_scalar(value))}" if hue is not None else None
        _draw(ax, rows, x, metric, positions, label)

    ax.set_xlabel(x)
    ax.set_ylabel(y_label(frame, metric, by))
    if numeric and logx:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(positions.values()), labels=[format_cell(_scalar(v)) for v in positions])
    if hue is not None:
        ax.legend(title=hue)
    ax.grid(True, alpha=0.3)
    return figure


def plot_table(
    frame: pandas.DataFrame,
    metric: str,
    x: str,
    *,
    hue: str | None = None,
    logx: bool = False,
    include_failed: bool = False,
) -> tuple[pandas.DataFrame, bool]:
    """What :func:`plot` draws, without drawing it: the rows of
    :func:`~xhelpers.views.frames.aggregate` by ``x`` (and ``hue``) that have a point, and
    whether ``x`` is numeric (else its values are categories, in the table's order).
    The dashboard draws its plots from this too, so they never disagree with ``--plot``."""
    check_metric(frame, metric, "--plot")
    check_parameters(frame, [x], "--x")
    if hue is not None:
        check_parameters(frame, [hue], "--hue")
        if hue == x:
            raise ResultsQueryError(
                f"--hue {hue!r} is the x axis' parameter: one line per value of another one"
            )
    by = [x] if hue is None else [x, hue]
    table = aggregate(frame, by, metrics=[metric], include_failed=include_failed)
    # A combination none of whose experiments has a value (all pending, or failed) has no
    # point: the line joins its neighbours, whose markers show where values are.
    table = table[table[f"{metric}.count"] > 0]
    table = table[table[x].notna()]  # an experiment without the parameter has no place
    if table.empty:
        raise ResultsQueryError(
            f"--plot {metric!r}: no "
            + ("finished, failed or interrupted" if include_failed else "finished")
            + f" experiment with parameter {x!r} has a value for it"
        )
    numeric = _numeric(table[x])
    if logx:
        _check_log_scale(table[x], x, numeric)
    return table, numeric


def write_plot(figure: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``figure`` to ``path`` (relative to the working directory) as PNG, SVG or PDF,
    as its suffix says, atomically; the absolute path written."""
    from xhelpers.core.files import atomic_write

    target = Path(os.path.abspath(path))
    suffix = target.suffix.lower()
    if suffix not in _FORMATS:
        kinds = ", ".join(_FORMATS)
        raise ResultsQueryError(
            f"-o {os.fspath(path)}: a plot is written as {kinds} by the file name's suffix: "
            f"name it {target.stem}.png"
        )
    # No creation date in PDF and SVG files, so the same results make the same file.
    metadata = {".pdf": {"CreationDate": None}, ".svg": {"Date": None}}.get(suffix)
    with atomic_write(target) as stream:
        figure.savefig(stream, format=suffix[1:], metadata=metadata)
    return target


def _draw(
    ax: Axes,
    rows: pandas.DataFrame,
    x: str,
    metric: str,
    positions: dict[Any, float],
    label: str | None,
) -> None:
    import numpy as np

    if positions:
        xs = np.array([positions[v] for v in rows[x]], dtype=float)
    else:
        xs = rows[x].to_numpy(dtype=float)
    order = np.argsort(xs, kind="stable")
    xs = xs[order]
    mean = rows[f"{metric}.mean"].to_numpy(dtype=float)[order]
    std = rows[f"{metric}.std"].to_numpy(dtype=float)[order]
    (line,) = ax.plot(xs, mean, marker="o", label=label)
    # A single experiment has no std (NaN): its point stands alone, without a band.
    ax.fill_between(
        xs,
        mean - std,
        mean + std,
        where=~np.isnan(std),
        color=line.get_color(),
        alpha=_BAND_ALPHA,
        linewidth=0,
    )


def _numeric(values: pandas.Series) -> bool:
    import pandas as pd

    return bool(pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values))


def _check_log_scale(values: pandas.Series, x: str, numeric: bool) -> None:
    if not numeric:
        raise ResultsQueryError(f"--logx: the values of --x {x!r} are not all numbers")
    low = values.min()
    if low <= 0:
        raise ResultsQueryError(
            f"--logx: --x {x!r} has a value <= 0 ({format_cell(_scalar(low))}), "
            "which a log scale cannot show"
        )


def _scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds, so labels read as the table's cells."""
    import numpy as np

    return value.item() if isinstance(value, np.generic) else value


def y_label(frame: pandas.DataFrame, metric: str, by: list[str]) -> str:
    """The y axis' label: the metric, and the parameters its mean and std are over."""
    # Name only the parameters that vary: a constant one is not averaged over.
    over = [
        p
        for p in parameters_of(frame)
        if p not in by and p in frame.columns and frame[p].map(repr).nunique() > 1
    ]
    return f"{metric} (mean ± std over {', '.join(over)})" if over else metric
