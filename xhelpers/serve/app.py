"""The dashboard's routes: pages (Jinja2 templates) and the JSON their scripts poll.

Every route is GET (Starlette answers HEAD too, and 405 to any other method): nothing
here writes, deletes or runs anything. Handlers are plain functions, which Starlette
runs in its thread pool, so a slow disk never stalls the others.
"""

from __future__ import annotations

import mimetypes
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from xhelpers.errors import XHelpersError
from xhelpers.serve import details
from xhelpers.serve.index import GroupIndex, Row, TreeIndex
from xhelpers.serve.query import BASE_COLUMNS, Query, cell, counts, page, result_rows
from xhelpers.views.results import format_cell
from xhelpers.views.status import STATUS_ORDER, StatusRow

__all__ = ["Dashboard", "build_app"]

_HERE = os.path.dirname(os.path.abspath(__file__))
# Raw files open in a sandbox: an HTML or SVG result file runs no script as the dashboard.
_RAW_POLICY = (b"content-security-policy", b"sandbox; default-src 'none'; img-src 'self'")


def _url_name(name: str) -> str:
    return quote(name, safe="/=,.-_~+:@")


class Dashboard:
    """The index and the templates the routes answer from."""

    def __init__(self, index: TreeIndex, title: str = "xhelpers") -> None:
        self.index = index
        self.title = title
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(os.path.join(_HERE, "templates")),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        self.env.filters["q"] = _url_name
        self.env.filters["qg"] = lambda g: quote(g, safe="")
        self.env.filters["cell"] = format_cell

    # -- helpers ----------------------------------------------------------------------
    def render(self, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        text = self.env.get_template(template).render(title=self.title, **context)
        return HTMLResponse(text, status_code=status_code)

    def group(self, request: Request) -> GroupIndex:
        group = self.index.groups.get(request.path_params["group"])
        if group is None:
            raise HTTPException(404, "no such group")
        return group

    def row(self, group: GroupIndex, name: str) -> Row:
        row = group.rows.get(name)
        if row is None:
            raise HTTPException(404, "no such experiment")
        return row

    # -- pages ------------------------------------------------------------------------
    def groups_page(self, request: Request) -> Response:
        return self.render("groups.html", groups=self._groups())

    def _groups(self) -> list[dict[str, Any]]:
        with self.index.lock:
            return [
                {"name": g.name, "total": len(g.rows), "counts": counts(g)}
                for g in self.index.groups.values()
            ]

    def table_page(self, request: Request) -> Response:
        group = self.group(request)
        with self.index.lock:
            found = counts(group)
        return self.render(
            "table.html", group=group.name, statuses=[s for s in STATUS_ORDER if s in found]
        )

    def experiment_page(self, request: Request) -> Response:
        group = self.group(request)
        row = self.row(group, request.path_params["name"])
        folder = group.base + row.name
        return self.render(
            "experiment.html",
            group=group.name,
            row=row,
            where=[(c, cell(row, c)) for c in BASE_COLUMNS[1:]],
            params=[(k, cell(row, k)) for k in row.params],
            metrics=[(k, cell(row, k)) for k in row.metrics],
            meta=details.experiment_details(folder),
            files=details.file_list(folder),
        )

    def file_page(self, request: Request) -> Response:
        group = self.group(request)
        relative = request.path_params["path"]
        path = _file_path(group, relative)
        shown = details.preview(path)
        name = _experiment_of(group, relative)
        return self.render(
            "file.html", group=group.name, path=relative, experiment=name, preview=shown
        )

    def raw_file(self, request: Request) -> Response:
        group = self.group(request)
        path = _file_path(group, request.path_params["path"])
        kind, _ = mimetypes.guess_type(path)
        if kind is None or kind.startswith("text/") or kind in ("application/javascript",):
            kind = "text/plain; charset=utf-8"  # an HTML result file is shown, not run
        response = FileResponse(path, media_type=kind)
        response.raw_headers.append(_RAW_POLICY)
        return response

    def plot_page(self, request: Request) -> Response:
        from xhelpers.serve.plotting import plot_context

        group = self.group(request)
        with self.index.lock:
            rows, params, metrics = result_rows(group)
        return self.render(
            "plot.html",
            group=group.name,
            **plot_context(rows, params, metrics, request.query_params),
        )

    def diff_page(self, request: Request) -> Response:
        from xhelpers.views.diff import SECTIONS, differing, sections
        from xhelpers.views.diff import cell as diff_cell

        group = self.group(request)
        a, b = request.query_params.get("a", ""), request.query_params.get("b", "")
        context: dict[str, Any] = {"group": group.name, "a": a, "b": b, "sections": []}
        if a and b:
            sides = []
            for name in (a, b):
                row = group.rows.get(name)
                if row is None:
                    context["error"] = f"no experiment {name!r} in group {group.name!r}"
                    return self.render("diff.html", status_code=404, **context)
                fn = (group.source.experiments or {}).get(name)
                status = StatusRow(
                    row.name, row.status, row.duration, row.ended, row.where, row.error
                )
                sides.append(sections(fn, group.base + name, status))
            for section in SECTIONS:
                x, y = sides[0][section], sides[1][section]
                differ = differing(x, y)
                keys = {**dict.fromkeys(x), **dict.fromkeys(y)}
                lines = []
                for key in keys:
                    u, v = x.get(key, _absent()), y.get(key, _absent())
                    shown = (diff_cell(section, key, u), diff_cell(section, key, v))
                    if key in differ and shown[0] == shown[1]:  # rounded alike: every digit
                        shown = (diff_cell(section, key, u, True), diff_cell(section, key, v, True))
                    lines.append((key, *shown, key in differ))
                context["sections"].append((section, lines, len(differ)))
        return self.render("diff.html", **context)

    # -- the scripts' JSON ------------------------------------------------------------
    def api_groups(self, request: Request) -> Response:
        return JSONResponse({"groups": self._groups()})

    def api_rows(self, request: Request) -> Response:
        group = self.group(request)
        query = Query.parse(request.query_params, request.query_params.getlist("status"))
        with self.index.lock:
            data = page(group, query)
            data["counts"] = counts(group)
        return JSONResponse(data)

    def api_state(self, request: Request) -> Response:
        group = self.group(request)
        name = request.query_params.get("name", "")
        row = self.row(group, name)
        data: dict[str, Any] = {c: cell(row, c) for c in BASE_COLUMNS}
        data["error"] = row.error or ""
        offset = request.query_params.get("offset", "-1")
        try:
            since = int(offset)
        except ValueError:
            since = -1
        folder = group.base + row.name
        data["traceback"] = details.traceback_of(folder) if row.error else ""
        data["log"] = details.log_since(folder, since)
        return JSONResponse(data)


def _absent() -> Any:
    from xhelpers.views.diff import ABSENT

    return ABSENT


def _file_path(group: GroupIndex, relative: str) -> str:
    """The file ``relative`` names in the group's folder, or 404 (see guard.inside)."""
    from xhelpers.serve.guard import inside

    path = inside(group.source.folder, relative)
    if path is None:
        raise HTTPException(404, "no such file")
    return path


def _experiment_of(group: GroupIndex, relative: str) -> str | None:
    """The experiment whose folder holds the file ``relative``: its longest name prefix."""
    parts = relative.split("/")
    for cut in range(len(parts) - 1, 0, -1):
        name = "/".join(parts[:cut])
        if name in group.rows:
            return name
    return None


def build_app(dashboard: Dashboard) -> Starlette:
    """The ASGI app of the pages (without the Guard: serve wraps it)."""
    d = dashboard

    async def not_found(request: Request, exc: Exception) -> Response:
        code = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "error"
        return d.render("error.html", status_code=code, code=code, detail=detail)

    async def query_error(request: Request, exc: Exception) -> Response:
        return d.render("error.html", status_code=400, code=400, detail=str(exc))

    routes = [
        Route("/", d.groups_page, methods=["GET"]),
        Route("/api/groups", d.api_groups, methods=["GET"]),
        Route("/api/g/{group}/rows", d.api_rows, methods=["GET"]),
        Route("/api/g/{group}/state", d.api_state, methods=["GET"]),
        Route("/g/{group}", d.table_page, methods=["GET"]),
        Route("/g/{group}/plot", d.plot_page, methods=["GET"]),
        Route("/g/{group}/diff", d.diff_page, methods=["GET"]),
        Route("/g/{group}/x/{name:path}", d.experiment_page, methods=["GET"]),
        Route("/g/{group}/f/{path:path}", d.file_page, methods=["GET"]),
        Route("/g/{group}/raw/{path:path}", d.raw_file, methods=["GET"]),
        Mount("/static", StaticFiles(directory=os.path.join(_HERE, "static")), name="static"),
    ]
    handlers: Mapping[Any, Any] = {HTTPException: not_found, XHelpersError: query_error}
    return Starlette(routes=routes, exception_handlers=dict(handlers))
