"""The plot view's figure: ``--plot``'s lines and bands, drawn as SVG in the page.

The numbers are :func:`xhelpers.views.plots.plot_table`'s, so the figure is the one
``--plot`` writes; only the drawing is the dashboard's (no matplotlib on the server,
no JavaScript library in the page).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

from xhelpers.views.results import format_cell

__all__ = ["svg_plot"]

_W, _H = 760, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 80, 170, 20, 56
_COLORS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
_MAX_TICKS = 12  # distinct x values shown as ticks; past this, evenly spaced ones


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low]
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step) + 1)]


def _number(v: float) -> str:
    return format_cell(float(f"{v:.6g}"))


def svg_plot(
    table: Any,
    metric: str,
    x: str,
    *,
    hue: str | None,
    numeric: bool,
    logx: bool,
    ylabel: str,
) -> str:
    """The SVG (a string, escaped) of ``plot_table``'s ``table``."""
    records: list[dict[str, Any]] = table.to_dict("records")
    if numeric:
        positions: dict[Any, float] = {}
    else:
        positions = {_scalar(v): float(i) for i, v in enumerate(dict.fromkeys(table[x]))}

    def where(v: Any) -> float:
        v = _scalar(v)
        if positions:
            return positions[v]
        return math.log10(float(v)) if logx else float(v)

    lines: dict[Any, list[tuple[float, float, float, int, Any]]] = {}
    for r in records:
        key = _scalar(r[hue]) if hue is not None else None
        mean, std = float(r[f"{metric}.mean"]), float(r[f"{metric}.std"])
        lines.setdefault(key, []).append((where(r[x]), mean, std, int(r[f"{metric}.count"]), r[x]))
    xs = [p[0] for pts in lines.values() for p in pts]
    ys = [
        y
        for pts in lines.values()
        for _, m, s, _, _ in pts
        for y in ((m - s, m + s) if math.isfinite(s) else (m,))
        if math.isfinite(y)
    ]
    x0, x1 = min(xs), max(xs)
    y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
    if x1 == x0:
        x0, x1 = x0 - 1, x1 + 1
    if y1 == y0:
        y0, y1 = y0 - 1, y1 + 1
    pad = (y1 - y0) * 0.06
    y0, y1 = y0 - pad, y1 + pad
    padx = (x1 - x0) * 0.04
    x0, x1 = x0 - padx, x1 + padx
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def px(v: float) -> float:
        return _LEFT + (v - x0) / (x1 - x0) * plot_w

    def py(v: float) -> float:
        return _TOP + (y1 - v) / (y1 - y0) * plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="plot" role="img" '
        f'viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" font-size="12">',
        f'<rect x="{_LEFT}" y="{_TOP}" width="{plot_w}" height="{plot_h}" fill="none" '
        'stroke="#888"/>',
    ]
    for t in _ticks(y0, y1):
        y = py(t)
        out.append(
            f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_number(t)}</text>'
        )
    distinct = sorted({(p[0], format_cell(_scalar(p[4]))) for pts in lines.values() for p in pts})
    if positions or len(distinct) <= _MAX_TICKS:
        xticks = [(v, label) for v, label in dict(distinct).items()]
    else:
        xticks = [(t, _number(10**t if logx else t)) for t in _ticks(x0, x1)]
    for v, label in xticks:
        xx = px(v)
        out.append(
            f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{_TOP}" y2="{_TOP + plot_h}" stroke="#eee"/>'
            f'<text x="{xx:.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
    out.append(
        f'<text x="{_LEFT + plot_w / 2}" y="{_H - 12}" text-anchor="middle">'
        f"{escape(x)}{' (log scale)' if logx and numeric else ''}</text>"
        f'<text transform="translate(16 {_TOP + plot_h / 2}) rotate(-90)" '
        f'text-anchor="middle">{escape(ylabel)}</text>'
    )
    for i, (key, pts) in enumerate(sorted(lines.items(), key=lambda kv: str(kv[0]))):
        color = _COLORS[i % len(_COLORS)]
        pts.sort(key=lambda p: p[0])
        out += _band(pts, color, px, py)
        path = " ".join(f"{px(p[0]):.1f},{py(p[1]):.1f}" for p in pts)
        name = f"{hue}={format_cell(key)}" if hue is not None else metric
        out.append(
            f'<polyline class="line" data-label="{escape(name)}" points="{path}" fill="none" '
            f'stroke="{color}" stroke-width="2"/>'
        )
        for xv, mean, std, n, raw in pts:
            spread = f" ± {_number(std)}" if math.isfinite(std) else ""
            tip = f"{x}={format_cell(_scalar(raw))}: {_number(mean)}{spread} (n={n})"
            out.append(
                f'<circle class="point" cx="{px(xv):.1f}" cy="{py(mean):.1f}" r="4" '
                f'fill="{color}"><title>{escape(tip)}</title></circle>'
            )
        if hue is not None:
            ly = _TOP + 14 + 18 * i
            lx = _LEFT + plot_w + 16
            out.append(
                f'<line x1="{lx}" x2="{lx + 20}" y1="{ly - 4}" y2="{ly - 4}" stroke="{color}" '
                f'stroke-width="3"/><text x="{lx + 26}" y="{ly}">{escape(name)}</text>'
            )
    out.append("</svg>")
    return "".join(out)


def _band(
    pts: Sequence[tuple[float, float, float, int, Any]], color: str, px: Any, py: Any
) -> list[str]:
    """mean ± std as filled polygons, one per run of points that have a std (a single
    experiment has none: its point stands alone, as in ``--plot``)."""
    out: list[str] = []
    run: list[tuple[float, float, float, int, Any]] = []
    for p in [*pts, None]:
        if p is not None and math.isfinite(p[2]):
            run.append(p)
            continue
        if run:
            upper = [f"{px(q[0]):.1f},{py(q[1] + q[2]):.1f}" for q in run]
            lower = [f"{px(q[0]):.1f},{py(q[1] - q[2]):.1f}" for q in reversed(run)]
            out.append(
                f'<polygon class="band" points="{" ".join(upper + lower)}" fill="{color}" '
                'fill-opacity="0.2" stroke="none"/>'
            )
            run = []
    return out
