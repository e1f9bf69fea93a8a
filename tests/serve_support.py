"""Helpers for the dashboard's tests: a result tree, a real server, raw HTTP requests."""

from __future__ import annotations

import http.client
import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from experiments import diverges, scored

import xhelpers as xh
from xhelpers.serve.guard import cookie_name
from xhelpers.serve.server import DashboardServer

TOKEN = "test-token-0123456789abcdef"


def make_tree(folder: Path) -> Path:
    """A sweep of 12 experiments (lr x seed), one of which fails, run for real in
    ``folder``; the result tree's path."""
    fns = {
        f"lr={lr}/seed={seed}": partial(scored, lr=lr, seed=seed)
        for lr in (0.01, 0.1, 1.0)
        for seed in range(4)
    }
    fns["lr=10.0/seed=0"] = partial(diverges, lr=10.0, seed=0)
    group = xh.ParametrizedExperiments("sweep", fns)
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        group(quiet=True, slack=False)
    finally:
        os.chdir(cwd)
    return folder / "results"


@contextmanager
def serving(root: Path, **kwargs: object) -> Iterator[DashboardServer]:
    """The dashboard of the tree at ``root``, served on a free port, for the block."""
    server = DashboardServer(root=str(root), port=0, token=TOKEN, interval=0.2, **kwargs)  # type: ignore[arg-type]
    server.start()
    try:
        yield server
    finally:
        server.stop()


def get(
    server: DashboardServer,
    path: str,
    *,
    host: str | None = None,
    token: str | None = TOKEN,
    method: str = "GET",
) -> tuple[int, dict[str, str], bytes]:
    """One request with the path sent exactly as given (no normalising), the Host
    header as given, and the token as the cookie: (status, headers, body)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host if host is not None else f"127.0.0.1:{server.port}")
        if token is not None:
            conn.putheader("Cookie", f"{cookie_name(server.port)}={token}")
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()
