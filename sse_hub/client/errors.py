"""The errors the sse-hub client raises, and how it words the hub's answers in them.

    HubClientError
    ├── HubConnectionError   the hub could not be reached, or did not answer in time
    └── HubResponseError     the hub answered with an error status (``status``, ``body``)
        ├── PublishError     ``POST /broadcast`` refused (4xx/5xx)
        └── SubscribeError   the stream was refused with a status not worth retrying

Shared by ``publisher`` and ``subscription``; ``sse_hub.client`` re-exports the classes.

Invariants: a failure of the network or of the hub reaches the caller as a HubClientError
(aiohttp's own errors are wrapped and chained with ``from``; bad arguments, such as a
malformed URL, are ValueError); a hub's answer is kept as it came (``status``, ``body``)
and only shortened in the message. It depends on aiohttp and yarl only.
"""

from __future__ import annotations

import json
import os

import aiohttp
from yarl import URL


class HubClientError(Exception):
    """Base class of every error this client raises."""


class HubConnectionError(HubClientError):
    """The hub could not be reached, or did not answer within the timeout."""


class HubResponseError(HubClientError):
    """The hub answered with an error status; ``body`` is its JSON error body (or text).

    ``error`` and ``detail`` are the fields of the hub's error shape
    (``{"error": code, "detail": ...}``), None when the answer had another shape.
    """

    def __init__(self, status: int, body: object, url: str) -> None:
        self.status = status
        self.body = body
        self.url = url
        fields = body if isinstance(body, dict) else {}
        self.error: str | None = fields.get("error") if isinstance(fields.get("error"), str) else None
        self.detail: object = fields.get("detail")
        super().__init__(f"{url} answered {status}: {describe_body(body)}")


class PublishError(HubResponseError):
    """``POST /broadcast`` answered 4xx or 5xx; nothing was published."""


class SubscribeError(HubResponseError):
    """The stream was refused with a status that another attempt would not change."""


def describe_body(body: object, limit: int = 500) -> str:
    text = body if isinstance(body, str) else json.dumps(body, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + "..."


def hub_url(url: str) -> URL:
    """The hub's base URL (``http://host:port``, maybe with a path prefix behind a proxy)."""
    parsed = URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ValueError(f"the hub URL must be http(s)://host[:port][/prefix], not {url!r}")
    return parsed.with_query(None).with_fragment(None)


def body_of(text: str) -> object:
    """The answer as JSON when it is JSON, else its text (a proxy's error page)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def connection_error(url: URL, exc: Exception, timeout_seconds: float | None) -> HubConnectionError:
    """The HubConnectionError for a failed request: a timeout or an unreachable hub."""
    if isinstance(exc, TimeoutError):
        return HubConnectionError(f"no answer from the hub at {url} within {timeout_seconds}s")
    return HubConnectionError(f"cannot connect to the hub at {url}: {describe_error(exc)}")


def describe_error(exc: BaseException) -> str:
    """A short reason: ``Connection refused`` rather than aiohttp's full sentence."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionError) and os_error.errno:
            # asyncio words a refusal "Connect call failed (...)"; the OS says what it was.
            return os.strerror(os_error.errno)
        return os_error.strerror or str(os_error) or str(exc)
    return str(exc) or type(exc).__name__
