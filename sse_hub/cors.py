"""CORS (Fetch standard, "CORS protocol") for every response, streams included."""

from __future__ import annotations

from aiohttp import web

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type, Last-Event-ID, Cache-Control"


class Cors:
    """``server.cors_origins``: ``*`` allows any origin without credentials; a listed
    origin is echoed with credentials allowed; an unlisted one is never reflected."""

    def __init__(self, origins: list[str]) -> None:
        self._any = "*" in origins
        self._listed = frozenset(origin for origin in origins if origin != "*")

    def headers_for(self, origin: str | None) -> dict[str, str]:
        if not origin:
            return {}
        if origin in self._listed:
            return {
                "Access-Control-Allow-Origin": origin,
                "Access-Control-Allow-Credentials": "true",
                "Vary": "Origin",
            }
        if self._any:
            return {"Access-Control-Allow-Origin": "*"}
        return {}

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(self.headers_for(request.headers.get("Origin")))

    def preflight(self, request: web.Request) -> web.Response:
        headers = self.headers_for(request.headers.get("Origin"))
        if headers:
            requested = request.headers.get("Access-Control-Request-Headers")
            headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            headers["Access-Control-Allow-Headers"] = requested or ALLOW_HEADERS
            headers["Access-Control-Max-Age"] = "600"
        return web.Response(status=204, headers=headers)
