"""Starting the dashboard: index the tree, bind, print the URL, serve until Ctrl-C.

uvicorn serves the Starlette app behind the Guard. The socket is bound here, before
uvicorn starts, so that the URL printed is the one that answers (a busy default port
moves on to the next free one), and the tree is indexed before it is printed, so the
first page is there when the URL is opened.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from secrets import token_urlsafe
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from xhelpers.config import BaseConfig, is_secret_name, load_machine_values, resolve_config
from xhelpers.errors import ConfigError
from xhelpers.serve.index import JOBS_INTERVAL_S, TreeIndex, TreeSource

if TYPE_CHECKING:
    import uvicorn

    from xhelpers.framework import ParametrizedExperiments

__all__ = ["DEFAULT_PORT", "DashboardServer", "machine_secrets", "secrets_of", "sources_of"]

logger = logging.getLogger(__name__)

DEFAULT_PORT = 8765
_PORTS_TRIED = 20  # from the default port up, when it is taken and no --port was given
_ENV_TOKEN = "XHELPERS_SLACK_TOKEN"


def sources_of(
    groups: Iterable[ParametrizedExperiments], config_file: str | None = None
) -> tuple[list[TreeSource], list[str]]:
    """Where each registered group's results are (as a run with this config puts them),
    and the secrets of their configs."""
    sources, found = [], []
    for group in groups:
        config = resolve_config(group.configcls, config_file=config_file)
        folder = os.path.join(str(config.output_directory), group.name)
        sources.append(TreeSource(group.name, folder, group.experiments, config.fingerprint))
        found += secrets_of(config)
    return sources, found


def secrets_of(config: BaseConfig | Mapping[str, Any]) -> list[str]:
    """The values of a config's secret fields (SecretStr, or named like a secret)."""
    values = config.model_dump() if isinstance(config, BaseConfig) else dict(config)
    out = []
    for key, value in values.items():
        if isinstance(value, SecretStr):
            out.append(value.get_secret_value())
        elif isinstance(value, str) and is_secret_name(key):
            out.append(value)
    return out


def machine_secrets(config_file: str | None) -> list[str]:
    """The secrets the machine config and the environment hold (the Slack token)."""
    found = [os.environ[_ENV_TOKEN]] if os.environ.get(_ENV_TOKEN) else []
    try:
        values, _ = load_machine_values(config_file)
    except ConfigError:
        return found
    return found + secrets_of(values)


def _bind(host: str, port: int | None) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    ports: Sequence[int] = (
        [port] if port is not None else range(DEFAULT_PORT, DEFAULT_PORT + _PORTS_TRIED)
    )
    last: OSError | None = None
    for candidate in ports:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            last = exc
            if exc.errno != errno.EADDRINUSE:
                break
            continue
        sock.listen(128)
        sock.set_inheritable(True)
        return sock
    raise ConfigError(
        f"cannot serve on {host}:{ports[0] if len(ports) == 1 else f'{ports[0]}-{ports[-1]}'}: "
        f"{last.strerror if last else 'no port'} (choose another with --port; 0 takes any free one)"
    )


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return socket.gethostname()
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]"
    return host


class DashboardServer:
    """The dashboard of ``sources`` (registered groups) or of the tree at ``root``.

    :meth:`run` serves in this thread until Ctrl-C; :meth:`start` and :meth:`stop`
    serve in a thread of its own (the tests' way)."""

    def __init__(
        self,
        sources: Sequence[TreeSource] = (),
        *,
        root: str | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        token: str | None = None,
        secrets: Iterable[str] = (),
        interval: float = 1.0,
        jobs_interval: float = JOBS_INTERVAL_S,
    ) -> None:
        from xhelpers.serve.app import Dashboard, build_app
        from xhelpers.serve.guard import Guard

        self.index = TreeIndex(sources, root=root, interval=interval, jobs_interval=jobs_interval)
        self.index.sweep()  # the start-up scan: the first page is there once the URL is
        self.token = token or token_urlsafe(24)
        self.host = host
        self.socket = _bind(host, port)
        self.port = int(self.socket.getsockname()[1])
        title = os.path.basename(os.path.abspath(root)) if root else "xhelpers"
        app = build_app(Dashboard(self.index, title=title))
        self.app = Guard(app, token=self.token, bound=host, port=self.port, secrets=secrets)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{_url_host(self.host)}:{self.port}/?token={self.token}"

    def _make(self) -> uvicorn.Server:
        import uvicorn

        config = uvicorn.Config(
            self.app,  # type: ignore[arg-type]
            log_level="warning",
            access_log=False,  # a request line would print the token
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=3,
        )
        self._server = uvicorn.Server(config)
        return self._server

    def run(self, announce: Callable[[str], None] = print) -> None:
        """Serve until Ctrl-C (or SIGTERM); ``announce`` gets the URL once bound."""
        server = self._make()
        self.index.start()
        announce(self.url)
        try:
            server.run(sockets=[self.socket])
        finally:
            self.index.stop()
            self.socket.close()

    def start(self) -> None:
        server = self._make()
        self.index.start()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self._thread.start()
        while not server.started and self._thread.is_alive():
            threading.Event().wait(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.index.stop()
        self.socket.close()
