"""The dashboard in real Chromium: sign in with the admin token, then, while the test
connects streams and publishes, the page's numbers match ``/stats``; the client table
searches and disconnects. Under load it takes the screenshot ``test-artifacts/dashboard.png``
(the README's, ``docs/img/dashboard.png``, is a copy of one).

Chromium is Debian's, driven by playwright with ``executable_path`` (tests/support/browser.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient
from playwright.async_api import Page

from tests.support.browser import WAIT_MS, chromium
from tests.support.http import HubClientFactory, open_stream
from tests.support.paths import ROOT
from tests.support.waiting import eventually

ADMIN = "dashboard-admin-token"
BEARER = {"Authorization": f"Bearer {ADMIN}"}
ARTIFACTS = ROOT / "test-artifacts"
# Streams the test opens: channel -> how many.
STREAMS = {"room-1": 4, "room-2": 2, "lobby": 1}


async def stats(client: TestClient[Any, Any]) -> Any:
    response = await client.get("/stats", headers=BEARER)
    assert response.status == 200, await response.text()
    return await response.json()


async def shown(page: Page, element_id: str) -> int | None:
    """A number tile of the page (``1,234`` as Intl writes it); None before the first frame."""
    text = (await page.text_content(f"#{element_id}") or "").replace(",", "")
    return int(text) if text.isdigit() else None


async def page_matches_stats(page: Page, client: TestClient[Any, Any], keys: dict[str, str]) -> bool:
    """Whether each tile (``keys``: element id -> /stats field) shows what /stats says now."""
    now = await stats(client)
    return all([await shown(page, element) == now[field] for element, field in keys.items()])


@contextlib.asynccontextmanager
async def publishing(client: TestClient[Any, Any]) -> AsyncIterator[list[int]]:
    """Publish to every channel of ``STREAMS`` until the block ends; yields the count sent."""
    sent = [0]

    async def run() -> None:
        while True:
            for channel in STREAMS:
                response = await client.post("/broadcast", json={"channel": channel, "event": "tick", "data": "x"})
                assert response.status == 202
                sent[0] += 1
            await asyncio.sleep(0.01)  # pacing the load, not waiting for anything

    task = asyncio.create_task(run())
    try:
        yield sent
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sign_in(page: Page, base_url: str) -> None:
    answer = await page.goto(f"{base_url}/dashboard")
    assert answer is not None and answer.status == 401
    await page.fill("#token", ADMIN)
    await page.click("button[type=submit]")
    await page.wait_for_selector("#live.ok", timeout=WAIT_MS)


async def test_the_dashboard_shows_what_stats_says_while_streams_connect_and_messages_flow(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(auth={"admin_tokens": [ADMIN]})
    base_url = str(client.make_url("")).rstrip("/")
    async with chromium() as browser, contextlib.AsyncExitStack() as streams:
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        await sign_in(page, base_url)
        async with publishing(client) as sent:
            for channel, count in STREAMS.items():
                for _ in range(count):
                    await streams.enter_async_context(open_stream(client, f"/events/{channel}"))
            await eventually(lambda: page_matches_stats(page, client, {"total-clients": "total_clients"}), timeout=10)
            await page.wait_for_function(
                "document.querySelector('#channels td')?.textContent === 'room-1'", timeout=WAIT_MS
            )
            await eventually(lambda: ready_for_screenshot(page, sent), timeout=10)
            ARTIFACTS.mkdir(exist_ok=True)
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
        counters = {"published": "messages_published", "delivered": "messages_delivered", "slow": "slow_disconnects"}
        await eventually(lambda: page_matches_stats(page, client, counters), timeout=10)
        await search_and_disconnect(page, client)
        await context.close()
        assert errors == [], f"script errors on the page: {errors}"


async def ready_for_screenshot(page: Page, sent: list[int]) -> bool:
    """Charts have a few seconds of load behind them and the client table has loaded."""
    rows = await page.locator("#clients tr").count()
    rate = await shown(page, "publish-rate")
    return sent[0] > 0 and rows == sum(STREAMS.values()) and (rate or 0) > 0


async def search_and_disconnect(page: Page, client: TestClient[Any, Any]) -> None:
    """Search narrows the table to room-2's streams; Disconnect ends one of them, as
    ``/stats`` and then the page's tile see."""
    await page.fill("#search", "room-2")
    assert await page.locator("#clients tr").count() == STREAMS["room-2"]
    await page.locator("#clients tr button").first.click()
    total = sum(STREAMS.values()) - 1

    async def one_fewer() -> bool:
        return (await stats(client))["total_clients"] == total and await shown(page, "total-clients") == total

    await eventually(one_fewer, timeout=10)


async def test_a_wrong_token_keeps_the_sign_in_page_with_a_reason(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth={"admin_tokens": [ADMIN], "publish_tokens": ["publisher"]})
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(str(client.make_url("/dashboard")))
        await page.fill("#token", "publisher")
        await page.click("button[type=submit]")
        await page.wait_for_function(
            "document.querySelector('#error').textContent.includes('not an admin token')", timeout=WAIT_MS
        )
        async with aiohttp.ClientSession() as session, session.get(str(client.make_url("/dashboard"))) as answer:
            assert answer.status == 401
