"""The demo page at ``/`` in real Chromium: its log shows every event the stream carries.

Issue 28, part 3: a new user publishes with the README's curl (``"event": "greeting"``) and
the page's log must show it, although nobody typed that name anywhere: ``EventSource``
reports only names it listens for, so the page reads the stream with fetch and
``sse-hub.js``'s parser. The hub's own events (``connected``, ``reset``, ``end``) show too.
The native ``EventSource`` stays as the reader to copy (``?reader=eventsource``, and the
code under "In your own page"). The app runs on a loopback port; publishes go through
``POST /broadcast`` from outside the page, as curl would send them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from playwright.async_api import Browser, Page

from tests.e2e.test_browser import open_page, post_json, screenshot
from tests.support.browser import WAIT_MS, chromium
from tests.support.http import HubClientFactory

HubUrlFactory = Callable[..., Awaitable[str]]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
def hub_url(hub_client: HubClientFactory) -> HubUrlFactory:
    """``url = await hub_url(sse={...})``: the real app on a loopback port."""

    async def start(**sections: Any) -> str:
        client = await hub_client(**sections)
        return str(client.make_url("")).rstrip("/")

    return start


async def logged(page: Page) -> list[tuple[str, str, str]]:
    """The page's log as (event, id, data), oldest first."""
    rows: list[list[str]] = await page.eval_on_selector_all(
        "#log li",
        "rows => rows.map(r => [r.dataset.event, r.dataset.id, r.querySelector('.data').textContent]).reverse()",
    )
    return [(event, event_id, data) for event, event_id, data in rows]


async def wait_for_log_count(page: Page, count: int) -> None:
    await page.wait_for_function(
        "n => document.getElementById('log-count').textContent === String(n)", arg=count, timeout=WAIT_MS
    )


async def open_demo(page: Page, url: str) -> None:
    """Open the page and wait until its stream is open and ``connected`` is logged."""
    await page.goto(url)
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    await page.wait_for_selector('#log li[data-event="connected"]', timeout=WAIT_MS)


async def test_demo_page_logs_events_of_any_name_published_from_outside(
    browser: Browser, hub_url: HubUrlFactory
) -> None:
    hub = await hub_url()
    async with open_page(browser, viewport={"width": 1280, "height": 900}) as page:
        await open_demo(page, f"{hub}/?channel=demo")
        bodies = [
            {"channel": "demo", "event": "greeting", "data": {"text": "hello"}},  # the README's curl
            {"channel": "demo", "event": "order.created", "data": "o-17"},
            {"channel": "demo", "data": "no name: a message event"},
        ]
        receipts = [await post_json(f"{hub}/broadcast", body) for body in bodies]
        await wait_for_log_count(page, 4)

        assert (await logged(page))[1:] == [
            ("greeting", receipts[0]["id"], '{"text":"hello"}'),
            ("order.created", receipts[1]["id"], "o-17"),
            ("message", receipts[2]["id"], "no name: a message event"),
        ]
        # Nobody told the page those names: the EventSource name list is untouched.
        assert await page.input_value("#sub-events") == "message"
        assert await page.text_content("#last-id") == receipts[2]["id"]
        await screenshot(page, "demo-page-every-event.png")


async def test_demo_page_logs_the_hubs_own_events_connected_reset_and_end(
    browser: Browser, hub_url: HubUrlFactory
) -> None:
    hub = await hub_url()
    async with open_page(browser) as page:
        await open_demo(page, f"{hub}/?channel=job&channel=news")
        [(_, _, connected)] = await logged(page)
        assert json.loads(connected)["channels"] == ["job", "news"]

        # A final message ends "job": the stream gets it, then `end`, and goes on with "news".
        receipt = await post_json(f"{hub}/broadcast", {"channel": "job", "data": "done", "final": True})
        await wait_for_log_count(page, 3)
        assert (await logged(page))[1:] == [("message", receipt["id"], "done"), ("end", "", '{"channel":"job"}')]

        # Resuming after an id from before this hub's sequence began: history cannot make
        # the page whole, so the stream starts with `reset` after `connected`.
        await page.fill("#sub-channels", "news")
        await page.fill("#sub-last-id", "1")
        await page.click("#connect")
        await wait_for_log_count(page, 5)
        (connected_again, _, _), (reset, reset_id, reset_data) = (await logged(page))[3:]
        assert (connected_again, reset, reset_id) == ("connected", "reset", "")
        assert json.loads(reset_data)["reason"] == "history_expired"


async def test_demo_page_keeps_eventsource_as_the_reader_to_copy(browser: Browser, hub_url: HubUrlFactory) -> None:
    hub = await hub_url()
    async with open_page(browser) as page:
        await open_demo(page, f"{hub}/?channel=demo&reader=eventsource")
        assert await page.evaluate("window.sseHubDemo.source instanceof EventSource")
        assert await page.is_visible("#sub-events")
        # The names it listens for are the ones in the field.
        receipt = await post_json(f"{hub}/broadcast", {"channel": "demo", "data": "listed"})
        await wait_for_log_count(page, 2)
        assert (await logged(page))[1:] == [("message", receipt["id"], "listed")]

        await page.click("#subscribe-panel summary")
        example = await page.text_content("#example-code") or ""
        assert example.startswith(f'const source = new EventSource("{hub}/events?channel=demo");')
        assert "source.onmessage" in example
