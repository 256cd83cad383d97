"""CORS (Fetch standard, "CORS protocol") for every response, streams included.

Invariants: credentials are allowed only for an origin listed in ``server.cors_origins``
(never with ``*``); an origin that is not allowed gets no CORS header at all; the headers
are added in ``on_response_prepare``, so every response, stream or error, carries them.
"""

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
        # With listed origins the answer depends on the request's Origin, whatever it is
        # (even absent), so shared caches must key on it (Fetch standard, "CORS protocol
        # and HTTP caches").
        headers = {"Vary": "Origin"} if self._listed else {}
        if not origin:
            return headers
        if origin in self._listed:
            headers["Access-Control-Allow-Origin"] = origin
            headers["Access-Control-Allow-Credentials"] = "true"
        elif self._any:
            headers["Access-Control-Allow-Origin"] = "*"
        return headers

    async def on_response_prepare(self, request: web.Request, response: web.StreamResponse) -> None:
        headers = self.headers_for(request.headers.get("Origin"))
        vary = headers.pop("Vary", None)
        response.headers.update(headers)
        if vary is not None:
            present = response.headers.get("Vary")
            if present is None:
                response.headers["Vary"] = vary
            elif vary.lower() not in (value.strip().lower() for value in present.split(",")):
                response.headers["Vary"] = f"{present}, {vary}"

    def preflight(self, request: web.Request) -> web.Response:
        headers = self.headers_for(request.headers.get("Origin"))
        if "Access-Control-Allow-Origin" in headers:
            requested = request.headers.get("Access-Control-Request-Headers")
            headers["Access-Control-Allow-Methods"] = ALLOW_METHODS
            headers["Access-Control-Allow-Headers"] = requested or ALLOW_HEADERS
            headers["Access-Control-Max-Age"] = "600"
            # The allowed headers echo the request's, so a cache must key on them too.
            headers["Vary"] = ", ".join(filter(None, (headers.get("Vary"), "Access-Control-Request-Headers")))
        return web.Response(status=204, headers=headers)
