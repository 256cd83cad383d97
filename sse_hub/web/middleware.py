"""HTTP cross-cutting concerns: errors as JSON, CORS preflight for every path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from sse_hub.errors import HubError
from sse_hub.web.access_log import redacted_path
from sse_hub.web.state import CORS

logger = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


#: The body of a 500: what went wrong is logged, never sent.
INTERNAL_ERROR: dict[str, object] = {"error": "internal_error", "detail": "internal server error"}


def hub_error_body(exc: HubError, path: str) -> dict[str, object]:
    """Log a request answered with ``exc`` and return its JSON body: a 5xx's detail is its
    message only (the rest is logged), a 4xx's its ``detail`` when it has one."""
    if exc.status >= 500:
        logger.warning("request failed path=%s status=%d code=%s: %s", path, exc.status, exc.code, exc.message)
        return {"error": exc.code, "detail": exc.message}
    logger.info("request rejected path=%s status=%d code=%s", path, exc.status, exc.code)
    return {"error": exc.code, "detail": exc.detail if exc.detail is not None else exc.message}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error a client sees is ``{"error": code, "detail": ...}``; 5xx details are
    logged, not sent. CORS preflights are answered here, for every path."""
    if request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
        return request.app[CORS].preflight(request)
    try:
        return await handler(request)
    except HubError as exc:
        body = hub_error_body(exc, redacted_path(request))
        return web.json_response(body, status=exc.status, headers=exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = (exc.reason or "error").lower().replace(" ", "_")
        headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
        return web.json_response({"error": code, "detail": exc.reason}, status=exc.status, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        logger.exception("unhandled error path=%s", redacted_path(request))
        return web.json_response(INTERNAL_ERROR, status=500)
