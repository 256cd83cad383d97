"""The operator's dashboard: ``GET /dashboard``, its assets, its session and its stream.

- ``GET /dashboard``: the page (``static/dashboard.html``), for the admin as ``/stats``
  is (``web/dashboard_session.py``: the header or the session cookie). Without either it
  answers 401 (403 for a stale cookie) with the sign-in page as its body, which holds no
  data: a browser shows it and trades the typed token for the cookie.
- ``GET /dashboard/assets/{name}``: the page's script, style and the vendored uPlot, by
  a fixed list of names; the same access as the page.
- ``POST /dashboard/session`` (admin token in the header): the cookie; ``DELETE``: gone.
- ``GET /dashboard/stream``: ``text/event-stream``, ``event: stats`` every
  ``FRAME_SECONDS`` (``web/dashboard_frame.py``), for ``EventSource`` with the cookie.

Invariants (the dashboard must not slow the hub): the stream is not a hub subscriber (it
is not in ``/stats`` nor in the fan-out); it writes one frame a second, shared by every
dashboard (``DashboardFeed``); at most ``MAX_DASHBOARD_STREAMS`` are open per instance
(503 past it); a write the client has not taken within ``WRITE_TIMEOUT_SECONDS`` ends the
stream; and it ends within a frame period once the hub drains. Its handler is the one
writer of its response.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from aiohttp import web

from sse_hub.errors import HubError, NotFound
from sse_hub.messages import sse
from sse_hub.web.dashboard_frame import FRAME_SECONDS
from sse_hub.web.dashboard_session import close_session, open_session, require_reader
from sse_hub.web.state import DASHBOARD_FEED, DASHBOARD_STREAMS, HUB

STATIC = Path(__file__).parent.parent.parent / "static"
PAGE = STATIC / "dashboard.html"
SIGN_IN_PAGE = STATIC / "dashboard-login.html"
ASSETS = {
    "dashboard.js": (STATIC / "dashboard.js", "text/javascript; charset=utf-8"),
    "dashboard.css": (STATIC / "dashboard.css", "text/css; charset=utf-8"),
    "uPlot.iife.min.js": (STATIC / "vendor" / "uplot" / "uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "uPlot.min.css": (STATIC / "vendor" / "uplot" / "uPlot.min.css", "text/css; charset=utf-8"),
}
MAX_DASHBOARD_STREAMS = 16
WRITE_TIMEOUT_SECONDS = 10.0
# What EventSource waits before it reconnects a dropped dashboard stream.
RETRY_MS = 2000
STREAM_HEADERS = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache, no-transform",
    "X-Accel-Buffering": "no",  # nginx: pass each frame on at once
}


async def page(request: web.Request) -> web.FileResponse:
    try:
        require_reader(request)
    except HubError as exc:
        # The sign-in page is static and holds no data; the status still says why.
        return web.FileResponse(SIGN_IN_PAGE, status=exc.status, headers={"Cache-Control": "no-store"})
    return web.FileResponse(PAGE, headers={"Cache-Control": "no-store"})


async def asset(request: web.Request) -> web.FileResponse:
    require_reader(request)
    found = ASSETS.get(request.match_info["name"])
    if found is None:
        raise NotFound("no such dashboard asset")
    path, content_type = found
    return web.FileResponse(path, headers={"Content-Type": content_type})


async def sign_in(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    open_session(request, response)
    return response


async def sign_out(request: web.Request) -> web.Response:
    response = web.Response(status=204)
    close_session(response)
    return response


async def stream(request: web.Request) -> web.StreamResponse:
    """The stats stream: a frame a second from the app's shared feed, while the hub runs."""
    require_reader(request)
    app = request.app
    hub, feed = app[HUB], app[DASHBOARD_FEED]
    with app[DASHBOARD_STREAMS].taken():
        response = web.StreamResponse(headers=STREAM_HEADERS)
        await response.prepare(request)
        if request.method == "HEAD":  # aiohttp routes HEAD here: headers only (RFC 9110, 9.3.2)
            return response
        with contextlib.suppress(ConnectionResetError, TimeoutError):
            await response.write(sse.encode_retry(RETRY_MS))
            while not hub.draining:
                frame = await feed.frame()
                async with asyncio.timeout(WRITE_TIMEOUT_SECONDS):
                    await response.write(frame)
                await asyncio.sleep(FRAME_SECONDS)
        return response
