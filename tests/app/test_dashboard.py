"""The dashboard's routes through the real app: who may read it (the admin token, or the
session cookie traded for it), its assets, and the stats stream (frames that match
``/stats``, shared, bounded, not counted as clients, ended by the drain)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient

from sse_hub.web.dashboard_frame import DashboardFeed
from sse_hub.web.dashboard_session import SESSION_COOKIE, session_value
from sse_hub.web.routes.dashboard import MAX_DASHBOARD_STREAMS
from sse_hub.web.state import HUB
from tests.support.http import HubClientFactory, expect_error, open_stream, publish
from tests.support.sse_client import EventStream

ADMIN = "admin-secret"
BEARER = {"Authorization": f"Bearer {ADMIN}"}
AUTH = {"admin_tokens": [ADMIN]}


async def sign_in(client: TestClient[Any, Any]) -> str:
    """The session cookie's value, from ``POST /dashboard/session`` with the admin token."""
    response = await client.post("/dashboard/session", headers=BEARER)
    assert response.status == 204, await response.text()
    client.session.cookie_jar.clear()  # each test sends the cookie itself, or not
    return response.cookies[SESSION_COOKIE].value


async def next_frame(stream: EventStream) -> Any:
    event = await stream.next()
    assert event.event == "stats", event
    return json.loads(event.data)


async def test_the_page_without_credentials_answers_401_with_the_sign_in_page(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=AUTH)
    response = await client.get("/dashboard")
    assert response.status == 401
    assert response.content_type == "text/html"
    assert 'id="sign-in"' in await response.text()


async def test_an_admin_session_cookie_opens_the_page_and_its_assets(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=AUTH)
    response = await client.post("/dashboard/session", headers=BEARER)
    header = response.headers["Set-Cookie"]
    for attribute in ("HttpOnly", "SameSite=Strict", "Max-Age=28800"):
        assert attribute in header, header
    assert "Path=" not in header, header  # the directory of /dashboard/session, behind any prefix
    client.session.cookie_jar.clear()
    cookie = {"Cookie": f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE].value}"}
    page = await client.get("/dashboard", headers=cookie)
    assert page.status == 200
    assert 'id="total-clients"' in await page.text()
    script = await client.get("/dashboard/assets/uPlot.iife.min.js", headers=cookie)
    assert script.status == 200
    assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert (await client.get("/dashboard/assets/dashboard.js")).status == 401


async def test_a_forged_or_expired_session_cookie_is_refused(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=AUTH)
    now = int(time.time())
    for value in (
        session_value(b"not-the-admin-token", now + 60),
        session_value(ADMIN.encode(), now - 1),
        f"{now + 60}.{'0' * 64}",
        "junk",
    ):
        response = await client.get("/dashboard/stream", headers={"Cookie": f"{SESSION_COOKIE}={value}"})
        assert (await expect_error(response, 403))["error"] == "forbidden"


async def test_signing_in_with_a_token_that_is_not_an_admin_token_is_refused(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth={"admin_tokens": [ADMIN], "publish_tokens": ["pub"]})
    response = await client.post("/dashboard/session", headers={"Authorization": "Bearer pub"})
    await expect_error(response, 403)
    assert SESSION_COOKIE not in response.cookies


async def test_an_unknown_asset_is_not_found(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    await expect_error(await client.get("/dashboard/assets/..%2Fapp.py"), 404)


async def test_each_frame_matches_stats_and_the_dashboard_is_not_a_client(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=AUTH)
    cookie = {"Cookie": f"{SESSION_COOKIE}={await sign_in(client)}"}
    response = await client.get("/dashboard/stream", headers=cookie)
    assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    dashboard = EventStream(response)
    async with open_stream(client, "/events/room-7"), open_stream(client, "/events/room-7"):
        await publish(client, {"channel": "room-7", "data": "hi"}, headers=BEARER)
        # A frame a second: the first ones may predate the delivery.
        while (frame := await next_frame(dashboard))["messages_delivered"] < 2:
            pass
        stats = await stats_of(client)
    for key in ("total_clients", "messages_published", "messages_delivered", "slow_disconnects"):
        assert frame[key] == stats[key], key
    assert (frame["total_clients"], frame["cluster_clients"], frame["messages_published"]) == (2, 2, 1)
    assert frame["busiest_channels"] == [{"channel": "room-7", "subscribers": 2}]
    assert [row["total_clients"] for row in frame["instances"]] == [2]
    assert frame["broker"] == "ok"
    response.close()


async def stats_of(client: TestClient[Any, Any]) -> Any:
    response = await client.get("/stats", headers=BEARER)
    assert response.status == 200
    return await response.json()


async def test_frames_are_built_once_a_period_for_every_dashboard(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    now = [100.0]
    feed = DashboardFeed(client.server.app[HUB], clock=lambda: now[0])
    first = await feed.frame()
    assert await feed.frame() is first  # a second dashboard in the same second: the same bytes
    now[0] += 1.0
    assert await feed.frame() is not first


async def test_dashboard_streams_past_the_limit_are_refused_with_503(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    streams = [await client.get("/dashboard/stream") for _ in range(MAX_DASHBOARD_STREAMS)]
    try:
        assert all(response.status == 200 for response in streams)
        refused = await expect_error(await client.get("/dashboard/stream"), 503)
        assert refused["error"] == "too_many_dashboards"
    finally:
        for response in streams:
            response.close()


async def test_the_stream_ends_once_the_hub_drains(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    response = await client.get("/dashboard/stream", timeout=aiohttp.ClientTimeout(total=None, sock_read=10))
    stream = EventStream(response)
    await next_frame(stream)
    client.server.app[HUB].begin_drain()
    await asyncio.wait_for(stream.read_until_closed(), timeout=5)


async def test_head_on_the_stream_answers_headers_and_holds_no_slot(hub_client: HubClientFactory) -> None:
    client = await hub_client()
    for _ in range(MAX_DASHBOARD_STREAMS + 1):
        response = await client.head("/dashboard/stream")
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
