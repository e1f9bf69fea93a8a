"""What keeps the dashboard its user's: the token, the Host check, paths, secrets.

- Every request needs the token: as ``?token=`` on any URL (then also set as an
  HTTP-only cookie, so the pages' own requests carry it), or that cookie. The cookie's
  name holds the port: browsers share cookies between the ports of one host.
- The Host header must name the machine itself (``localhost``, a loopback address,
  or the address bound), whatever the port (``ssh -L`` forwards from another one):
  a page of another site whose name an attacker points at 127.0.0.1 (DNS rebinding)
  sends its own name, and is refused. A server bound to every address (``0.0.0.0``)
  cannot know its names: the token alone guards it.
- A file is served only from inside its group's folder (see :func:`inside`).
- No response carries a secret of the configs the dashboard knows (the Slack token):
  :class:`Guard` masks every occurrence in every body, as it leaves.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

__all__ = ["Guard", "cookie_name", "host_allowed", "inside"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

_LOOPBACK = ("localhost", "127.0.0.1", "::1")
_WILDCARD = ("0.0.0.0", "::", "")
# Encoded separators and dots in the raw path: a route never needs them (names are
# folders), and a server that decoded them after routing would walk out of the tree.
_ENCODED = re.compile(rb"%(2f|5c|2e|00)", re.IGNORECASE)
_MIN_SECRET = 4  # shorter "secrets" (a test's "x") would mask every such letter


def cookie_name(port: int) -> str:
    return f"xhelpers-token-{port}"


def host_allowed(host_header: str, bound: str) -> bool:
    """Whether a request's Host header names this machine (see the module docstring)."""
    if bound in _WILDCARD:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8765
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.rsplit(":", 1)[0]
    return host in _LOOPBACK or host == bound.lower().strip("[]")


def inside(folder: str, relative: str) -> str | None:
    """The real path of file ``relative`` (a ``/``-separated path) in ``folder``, or
    None when it is not a regular file inside it: ``..``, ``.``, empty parts, an
    absolute path, a backslash or NUL, and symlinks leading out of ``folder`` all are
    None (served as 404, like a file that does not exist)."""
    if not relative or relative.startswith("/") or "\\" in relative or "\0" in relative:
        return None
    parts = relative.split("/")
    if any(p in ("", ".", "..") for p in parts):
        return None
    root = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(root, *parts))
    if not real.startswith(root + os.sep) or not os.path.isfile(real):
        return None
    return real


class Guard:
    """ASGI middleware: the Host check, then the token, then secrets masked on the way out."""

    def __init__(
        self, app: App, *, token: str, bound: str, port: int, secrets: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.token = token
        self.bound = bound
        self.cookie = cookie_name(port)
        found = {s for s in secrets if len(s) >= _MIN_SECRET}
        self.secrets = sorted((s.encode() for s in found), key=len, reverse=True)
        self.keep = max((len(s) for s in self.secrets), default=1) - 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not host_allowed(headers.get("host", ""), self.bound):
            await _plain(send, 403, "Forbidden: this dashboard answers to localhost only")
            return
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[-1]
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header is as good as none
            cookie = SimpleCookie()
        held = cookie[self.cookie].value if self.cookie in cookie else ""
        if not (self._good(given) or self._good(held)):
            await _plain(
                send, 403, "Forbidden: open the URL the serve command printed (with its token)"
            )
            return
        if _ENCODED.search(scope.get("raw_path") or b""):
            await _plain(send, 404, "Not Found")
            return
        set_cookie = self._good(given) and not self._good(held)
        await self.app(scope, receive, self._masking(send, set_cookie))

    def _good(self, candidate: str) -> bool:
        return bool(candidate) and hmac.compare_digest(candidate.encode(), self.token.encode())

    def _masking(self, send: Send, set_cookie: bool) -> Send:
        held = b""

        async def masked(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                own = {k.lower() for k, _ in headers}  # a raw file's stricter policy stays
                headers += [(k, v) for k, v in _SECURITY_HEADERS if k not in own]
                if set_cookie:
                    value = f"{self.cookie}={self.token}; Path=/; HttpOnly; SameSite=Strict"
                    headers.append((b"set-cookie", value.encode()))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and self.secrets:
                # Masked with as many stars, so Content-Length holds; the end of a chunk
                # waits for the next, as a secret may straddle the two.
                data = self._mask(held + message.get("body", b""))
                if message.get("more_body", False) and self.keep:
                    data, held = data[: -self.keep], data[-self.keep :]
                else:
                    held = b""
                message["body"] = data
            await send(message)

        return masked

    def _mask(self, data: bytes) -> bytes:
        for secret in self.secrets:
            if secret in data:
                data = data.replace(secret, b"*" * len(secret))
        return data


# Pages draw only from the dashboard itself; a result file opened raw runs nothing.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; object-src 'none'; frame-ancestors 'none'; "
        b"base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                *_SECURITY_HEADERS,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
