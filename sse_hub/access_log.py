"""One access-log line per finished request, with credentials in the query redacted."""

from __future__ import annotations

import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

# Query parameters that carry credentials (subscriber JWT, one-time ticket): never logged.
SECRET_PARAMS = frozenset({"token", "ticket", "access_token"})


def redacted_path(request: BaseRequest) -> str:
    if not request.query_string:
        return request.path
    parts = []
    for key, value in request.query.items():
        parts.append(f"{key}={'[redacted]' if key.lower() in SECRET_PARAMS else value}")
    return f"{request.path}?{'&'.join(parts)}"


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %d %.3fs ip=%s",
            request.method,
            redacted_path(request),
            response.status,
            time,
            request.remote,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
