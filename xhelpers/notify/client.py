"""Slack settings and client: where to post, with which token, and what a failure means.

slack_sdk is imported only when a client is made or a failure described, so importing
this module costs nothing; :mod:`xhelpers.notify` is the public face.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slack_sdk import WebClient
    from slack_sdk.http_retry import RetryHandler

    from xhelpers.config import BaseConfig

__all__ = [
    "CALL_TIMEOUT_S",
    "ENV_BASE_URL",
    "ENV_CHANNEL",
    "ENV_TOKEN",
    "MAX_RETRY_AFTER_S",
    "SlackSettings",
    "describe_failure",
    "make_client",
    "slack_settings",
]

ENV_TOKEN = "XHELPERS_SLACK_TOKEN"
ENV_CHANNEL = "XHELPERS_SLACK_CHANNEL"
ENV_BASE_URL = "XHELPERS_SLACK_BASE_URL"

CALL_TIMEOUT_S = 5  # per HTTP request (slack_sdk takes whole seconds)
MAX_RETRY_AFTER_S = 30  # a 429 asking for a longer wait is a failure, not a retry

_AUTH_ERRORS = ("invalid_auth", "not_authed", "token_revoked", "token_expired", "account_inactive")


@dataclass(frozen=True)
class SlackSettings:
    """Where and how to post; the token is left out of ``repr``."""

    token: str = field(repr=False)
    channel: str
    base_url: str | None = None
    level: int = logging.WARNING

    def without_token(self, text: str) -> str:
        """``text`` with the token, should an error message quote it, replaced by ``***``."""
        return text.replace(self.token, "***")


def slack_settings(
    config: BaseConfig | None = None,
    *,
    channel: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> SlackSettings | None:
    """Token, channel and API URL from ``config``, else the environment; None if incomplete.

    Values set in the config win; ``XHELPERS_SLACK_TOKEN``, ``XHELPERS_SLACK_CHANNEL``
    and ``XHELPERS_SLACK_BASE_URL`` fill in what it leaves unset. ``channel`` (a
    shipped thread's) replaces both.
    """
    env = os.environ if environ is None else environ
    secret = getattr(config, "slacktoken", None)
    token = (secret.get_secret_value() if secret is not None else "") or env.get(ENV_TOKEN, "")
    channel = channel or getattr(config, "slackchannel", None) or env.get(ENV_CHANNEL, "")
    base_url = getattr(config, "slack_base_url", None) or env.get(ENV_BASE_URL, "")
    level = logging.getLevelName(getattr(config, "slack_loglevel", None) or "WARNING")
    token, channel = token.strip(), channel.strip()
    if not token or not channel:
        return None
    return SlackSettings(
        token, channel, base_url.strip() or None, level if isinstance(level, int) else 30
    )


def _quiet_logger() -> logging.Logger:
    """The client's logger: outside the logging tree, so nothing it says propagates.

    slack_sdk logs requests and responses at debug level; none of it may reach the
    console or an experiment's log (the root logger is at DEBUG while one runs).
    """
    quiet = logging.Logger("xhelpers.notify.slack_sdk", logging.CRITICAL)
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    quiet.disabled = True
    return quiet


def _retry_handlers() -> list[RetryHandler]:
    from slack_sdk.http_retry.builtin_handlers import (
        ConnectionErrorRetryHandler,
        RateLimitErrorRetryHandler,
        ServerErrorRetryHandler,
    )
    from slack_sdk.http_retry.request import HttpRequest
    from slack_sdk.http_retry.response import HttpResponse
    from slack_sdk.http_retry.state import RetryState

    class PoliteRateLimit(RateLimitErrorRetryHandler):  # type: ignore[misc]
        """Waits as long as Retry-After says, unless that is more than we would wait."""

        def _can_retry(
            self,
            *,
            state: RetryState,
            request: HttpRequest,
            response: HttpResponse | None = None,
            error: Exception | None = None,
        ) -> bool:
            if response is None or response.status_code != 429:
                return False
            for key, values in response.headers.items():
                if key.lower() == "retry-after":
                    try:
                        return int(values[0]) <= MAX_RETRY_AFTER_S
                    except (ValueError, IndexError):
                        return True
            return True

    return [
        PoliteRateLimit(max_retry_count=2),
        ServerErrorRetryHandler(max_retry_count=2),
        ConnectionErrorRetryHandler(max_retry_count=1),
    ]


def make_client(settings: SlackSettings, *, timeout: int | None = None) -> WebClient:
    """A WebClient with short timeouts, polite retries and a logger that says nothing.

    ``timeout`` (whole seconds per request) defaults to ``CALL_TIMEOUT_S``.
    """
    from slack_sdk import WebClient

    kwargs: dict[str, Any] = {}
    if settings.base_url:
        kwargs["base_url"] = settings.base_url
    return WebClient(
        token=settings.token,
        timeout=CALL_TIMEOUT_S if timeout is None else timeout,
        logger=_quiet_logger(),
        retry_handlers=_retry_handlers(),
        **kwargs,
    )


def describe_failure(exc: BaseException, settings: SlackSettings, *, timeout: float) -> str:
    """What went wrong, in one line, for the console; never the token.

    ``timeout`` is the client's per-request timeout, named when a request timed out.
    """
    from urllib.error import URLError

    from slack_sdk.errors import SlackApiError

    if isinstance(exc, SlackApiError):
        response = exc.response
        status = getattr(response, "status_code", None)
        data = getattr(response, "data", None)
        error = data.get("error") if isinstance(data, dict) else None
        if status == 429:
            what = "rate limited (HTTP 429) beyond its retries"
        elif status is not None and status >= 500:
            what = f"Slack answered HTTP {status} (after retries)"
        elif error in _AUTH_ERRORS:
            what = f"{error}: check the token (slacktoken or {ENV_TOKEN})"
        elif error == "channel_not_found":
            what = (
                f"channel_not_found: check the channel id {settings.channel!r} "
                f"(slackchannel or {ENV_CHANNEL})"
            )
        elif error == "not_in_channel":
            what = f"not_in_channel: invite the app to {settings.channel!r} (/invite @yourapp)"
        elif error == "missing_scope":
            what = "missing_scope: the bot token needs the chat:write scope"
        else:
            what = f"{error or 'error'} (HTTP {status})"
    elif isinstance(exc, TimeoutError) or (
        isinstance(exc, URLError) and isinstance(exc.reason, TimeoutError)
    ):
        what = f"no answer within {timeout} s"
    elif isinstance(exc, URLError):
        what = f"cannot reach {settings.base_url or 'slack.com'}: {exc.reason}"
    else:
        what = f"{type(exc).__name__}: {exc}"
    return what
