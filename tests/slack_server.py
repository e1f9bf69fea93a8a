"""A stand-in for Slack's Web API on 127.0.0.1, for the real slack_sdk WebClient.

Speaks ``chat.postMessage`` with form or JSON bodies, records every request, and
answers from a script: ``ok`` (the default), ``ratelimited`` (429 with Retry-After),
``server_error`` (HTTP 500), ``error:<code>`` (``{"ok": false, "error": code}``) or
``hang`` (never answers; released when the server closes).
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

OK = "ok"
RATELIMITED = "ratelimited"
SERVER_ERROR = "server_error"
HANG = "hang"


@dataclass
class Request:
    """One request as the server saw it, and how it was answered."""

    path: str
    token: str | None
    channel: str | None
    text: str | None
    thread_ts: str | None
    reply_broadcast: bool
    answer: str
    ts: str | None = None  # the message's ts when answered ok

    @property
    def ok(self) -> bool:
        return self.answer == OK


class FakeSlack:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.default = OK
        self._script: deque[str] = deque()
        self._cond = threading.Condition()
        self._release = threading.Event()
        self._counter = 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                fake._handle(self)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/"

    def script(self, *answers: str) -> None:
        """Answer the next requests so, in order; then ``default``."""
        with self._cond:
            self._script.extend(answers)

    @property
    def posted(self) -> list[Request]:
        """The requests answered ok: the messages Slack would show."""
        with self._cond:
            return [r for r in self.requests if r.ok]

    def wait_for(
        self, predicate: Callable[[list[Request]], bool], timeout: float = 30.0, what: str = ""
    ) -> list[Request]:
        """Block until ``predicate(requests)`` holds; AssertionError after ``timeout``."""
        with self._cond:
            if not self._cond.wait_for(lambda: predicate(self.requests), timeout):
                raise AssertionError(
                    f"timed out waiting for {what or predicate}; got {self.requests!r}"
                )
            return list(self.requests)

    def wait_requests(self, n: int, timeout: float = 30.0) -> list[Request]:
        return self.wait_for(lambda rs: len(rs) >= n, timeout, f"{n} requests")

    def close(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    # -- the server side ---------------------------------------------------------------
    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length).decode()
        fields: dict[str, Any]
        if (h.headers.get("Content-Type") or "").startswith("application/json"):
            fields = json.loads(raw or "{}")
        else:
            fields = {k: v[0] for k, v in parse_qs(raw).items()}
        token = fields.get("token")
        auth = h.headers.get("Authorization") or ""
        if auth.startswith("Bearer "):
            token = auth[len("Bearer ") :]
        broadcast = fields.get("reply_broadcast")
        with self._cond:
            answer = self._script.popleft() if self._script else self.default
            self._counter += 1
            request = Request(
                path=h.path,
                token=token,
                channel=fields.get("channel"),
                text=fields.get("text"),
                thread_ts=fields.get("thread_ts"),
                reply_broadcast=broadcast in (True, "1", "true"),
                answer=answer,
            )
            if answer == OK:
                request.ts = f"{1700000000 + self._counter}.{self._counter:06d}"
            self.requests.append(request)
            self._cond.notify_all()
        if answer == HANG:
            self._release.wait()
            h.close_connection = True
            return
        if answer == OK:
            body = {"ok": True, "channel": request.channel, "ts": request.ts}
            self._reply(h, 200, body)
        elif answer == RATELIMITED:
            self._reply(h, 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"})
        elif answer == SERVER_ERROR:
            self._reply(h, 500, None)
        elif answer.startswith("error:"):
            self._reply(h, 200, {"ok": False, "error": answer[len("error:") :]})
        else:
            raise ValueError(f"unknown answer {answer!r}")

    @staticmethod
    def _reply(
        h: BaseHTTPRequestHandler,
        status: int,
        body: dict[str, Any] | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(body).encode() if body is not None else b"Internal Server Error"
        h.send_response(status)
        h.send_header("Content-Type", "application/json" if body is not None else "text/plain")
        h.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(data)


@contextmanager
def fake_slack() -> Iterator[FakeSlack]:
    server = FakeSlack()
    try:
        yield server
    finally:
        server.close()
