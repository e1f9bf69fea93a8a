"""The plot view: a metric against a parameter, as ``--plot`` computes it.

pandas (the ``frames`` extra) does the grouping, as for ``--by`` and ``--plot``; without
it the page says what to install. matplotlib is not needed: the page draws the SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xhelpers.errors import XHelpersError
from xhelpers.serve.svgplot import svg_plot

__all__ = ["plot_context"]


def plot_context(
    rows: list[dict[str, Any]],
    params: Sequence[str],
    metrics: Sequence[str],
    args: Mapping[str, str],
) -> dict[str, Any]:
    """The plot page's form (choices and choices made) and its figure, or the error
    ``--plot`` would print for the same choice."""
    context: dict[str, Any] = {
        "parameters": list(params),
        "metrics": [],
        "metric": args.get("metric", ""),
        "x": args.get("x", ""),
        "hue": args.get("hue", ""),
        "logx": args.get("logx", "") in ("1", "on", "true"),
        "with_failed": args.get("with_failed", "") in ("1", "on", "true"),
        "svg": None,
        "error": None,
    }
    try:
        from xhelpers.views.frames import numeric_metrics, to_frame
        from xhelpers.views.plots import plot_table, y_label
        from xhelpers.views.results import ResultTable

        frame = to_frame(ResultTable(rows, list(params), list(metrics)), "the plot view", "frames")
        context["metrics"] = numeric_metrics(frame)
        if not context["metric"] and context["metrics"]:
            context["metric"] = context["metrics"][0]
        if not context["x"] and params:
            context["x"] = params[0]
        if not (context["metric"] and context["x"]):
            context["error"] = "nothing to plot: the group needs a numeric metric and a parameter"
            return context
        hue = context["hue"] or None
        table, numeric = plot_table(
            frame,
            context["metric"],
            context["x"],
            hue=hue,
            logx=context["logx"],
            include_failed=context["with_failed"],
        )
        by = [context["x"]] if hue is None else [context["x"], hue]
        context["svg"] = svg_plot(
            table,
            context["metric"],
            context["x"],
            hue=hue,
            numeric=numeric,
            logx=context["logx"],
            ylabel=y_label(frame, context["metric"], by),
        )
        shown = ["experiments", "used", "failed", "missing"]
        shown += [f"{context['metric']}.{s}" for s in ("count", "mean", "std", "min", "max")]
        context["table"] = {
            "columns": [*by, *shown],
            "rows": [[r[c] for c in [*by, *shown]] for r in table.to_dict("records")],
        }
    except XHelpersError as exc:
        context["error"] = str(exc)
    return context
