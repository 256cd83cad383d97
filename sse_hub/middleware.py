"""HTTP cross-cutting concerns: errors as JSON, CORS preflight for every path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from sse_hub.access_log import redacted_path
from sse_hub.errors import HubError
from sse_hub.keys import CORS

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(
    status: int, code: str, detail: object = None, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": code, "detail": detail}, status=status, headers=headers)


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error a client sees is ``{"error": code, "detail": ...}``; 5xx details are
    logged, not sent. CORS preflights are answered here, for every path."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return request.app[CORS].preflight(request)
    try:
        return await handler(request)
    except HubError as exc:
        if exc.status >= 500:
            logger.warning(
                "request failed path=%s status=%d code=%s: %s",
                redacted_path(request),
                exc.status,
                exc.code,
                exc.message,
            )
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        logger.info("request rejected path=%s status=%d code=%s", redacted_path(request), exc.status, exc.code)
        detail = exc.detail if exc.detail is not None else exc.message
        return error_response(exc.status, exc.code, detail, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = (exc.reason or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return error_response(exc.status, code, exc.reason, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("unhandled error path=%s", redacted_path(request))
        return error_response(500, "internal_error", "internal server error")
