"""``sse-hub.js`` and streams that end (issue 26), in real Chromium: ``onEnd`` once per
channel, ``finished`` (state and callback) once every channel ended or on ``204``, and no
request after that; ``from: "start"`` until an id was seen. First against a scripted server
(exactly these bytes), then against the real app."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tests.e2e.test_browser import open_page, post_json
from tests.support.browser import WAIT_MS, chromium
from tests.support.http import HubClientFactory
from tests.support.paths import ROOT

HELPER = ROOT / "sse_hub" / "static" / "sse-hub.js"
# Long enough for a reconnection that should not happen to show: the scripts ask for a
# 10 ms retry, the real hubs here for 100 ms.
NO_RECONNECT_MS = 1500


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


@pytest.fixture
def hub_url(hub_client: HubClientFactory) -> Callable[..., Awaitable[str]]:
    """``url = await hub_url(sse={...})``: the real app on a loopback port."""

    async def start(**sections: Any) -> str:
        client = await hub_client(**sections)
        return str(client.make_url("")).rstrip("/")

    return start


def end(channel: str) -> bytes:
    return b'event: end\ndata: {"channel":"%s"}\n\n' % channel.encode()


def connected(*channels: str) -> bytes:
    names = ",".join(f'"{name}"' for name in channels)
    return b'event: connected\ndata: {"client_id":"c","channels":[%s]}\n\n' % names.encode()


@dataclass
class Script:
    """Serves a blank page, ``/sse-hub.js``, and ``/events``: the n-th request gets
    ``bodies[n]`` (``None``: 204) and the stream stays open unless the body ends with
    ``<close>``. Records each request's query and Last-Event-ID."""

    bodies: list[bytes | None] = field(default_factory=list)
    requests: list[tuple[dict[str, str], str | None]] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def events(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((dict(request.query), request.headers.get("Last-Event-ID")))
        body = self.bodies[len(self.requests) - 1] if len(self.requests) <= len(self.bodies) else b"<close>"
        if body is None:
            return web.Response(status=204)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"retry: 10\n" + body.removesuffix(b"<close>"))
        if not body.endswith(b"<close>"):
            await self.release.wait()
        return response


async def blank(request: web.Request) -> web.Response:
    return web.Response(text="<!doctype html><title>sse-hub.js</title>", content_type="text/html")


async def helper(request: web.Request) -> web.Response:
    return web.Response(text=HELPER.read_text(), content_type="text/javascript")


@pytest.fixture
async def scripted() -> AsyncIterator[tuple[Script, str]]:
    script = Script()
    app = web.Application()
    app.router.add_get("/", blank)
    app.router.add_get("/sse-hub.js", helper)
    app.router.add_get("/events", script.events)
    async with TestServer(app, host="127.0.0.1") as server:
        try:
            yield script, str(server.make_url("")).rstrip("/")
        finally:
            script.release.set()


SUBSCRIBE = """([url, options]) => {
  window.log = [];
  window.subscription = SseHub.subscribe(url, {
    ...options,
    onEvent: (event) => window.log.push(["event", event.id, event.data]),
    onEnd: (channel) => window.log.push(["end", channel]),
    onFinished: () => window.log.push(["finished", window.subscription.state]),
  });
}"""


async def subscribe(page: Page, base: str, path: str, **options: Any) -> list[str]:
    """Load the helper from ``base``, subscribe to ``path``; returns the list that collects
    the page's requests for the stream (it grows as the page makes more)."""
    await page.goto(f"{base}/")
    await page.add_script_tag(url=f"{base}/sse-hub.js", type="module")
    await page.wait_for_function("window.SseHub !== undefined", timeout=WAIT_MS)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url) if "/events" in request.url else None)
    await page.evaluate(SUBSCRIBE, [f"{base}/{path}", options])
    return requests


async def finished_without_reconnecting(page: Page, requests: list[str]) -> list[list[str]]:
    """Wait for the subscription to finish, then for a reconnection that must not come;
    returns the page's log."""
    await page.wait_for_function("window.subscription.state === 'finished'", timeout=WAIT_MS)
    made = len(requests)
    with pytest.raises(PlaywrightTimeout):
        await page.wait_for_event("request", lambda request: "/events" in request.url, timeout=NO_RECONNECT_MS)
    assert len(requests) == made
    log: list[list[str]] = await page.evaluate("window.log")
    return log


async def test_sse_hub_js_finishes_after_the_end_of_its_channel_and_makes_no_more_requests(
    browser: Browser, scripted: tuple[Script, str]
) -> None:
    script, base = scripted
    # The hub closes the stream after the end, as it does: a client that did not stop would
    # come back after the 10 ms retry.
    script.bodies = [connected("job") + b"id: 1\ndata: token\n\n" + end("job") + b"<close>"]
    async with open_page(browser) as page:
        requests = await subscribe(page, base, "events?channel=job")
        log = await finished_without_reconnecting(page, requests)
    assert log == [["event", "1", "token"], ["end", "job"], ["finished", "finished"]]
    assert len(script.requests) == 1


async def test_sse_hub_js_goes_on_after_one_of_two_channels_ends_and_reports_each_end_once(
    browser: Browser, scripted: tuple[Script, str]
) -> None:
    script, base = scripted
    script.bodies = [
        connected("a", "b") + b"id: 1\ndata: a-last\n\n" + end("a") + b"<close>",
        connected("a", "b") + end("a") + b"id: 2\ndata: b-last\n\n" + end("b"),
    ]
    async with open_page(browser) as page:
        requests = await subscribe(page, base, "events?channel=a&channel=b")
        log = await finished_without_reconnecting(page, requests)
    assert log == [
        ["event", "1", "a-last"],
        ["end", "a"],
        ["event", "2", "b-last"],
        ["end", "b"],
        ["finished", "finished"],
    ]
    assert [last_event_id for _, last_event_id in script.requests] == [None, "1"]


async def test_sse_hub_js_asks_from_the_start_until_an_id_was_seen_and_stops_on_204(
    browser: Browser, scripted: tuple[Script, str]
) -> None:
    script, base = scripted
    script.bodies = [connected("job") + b"<close>", connected("job") + b"id: 5\ndata: first\n\n<close>", None]
    async with open_page(browser) as page:
        requests = await subscribe(page, base, "events?channel=job", **{"from": "start"})
        log = await finished_without_reconnecting(page, requests)
    assert log == [["event", "5", "first"], ["finished", "finished"]]
    assert script.requests == [
        ({"channel": "job", "from": "start"}, None),
        ({"channel": "job", "from": "start"}, None),
        ({"channel": "job"}, "5"),
    ]


# -- against the real app ---------------------------------------------------------------------


async def test_sse_hub_js_reads_an_ended_channel_from_the_start_then_finishes(
    browser: Browser, hub_url: Callable[..., Awaitable[str]]
) -> None:
    url = await hub_url(sse={"retry_ms": 100})
    items: list[dict[str, Any]] = [{"channel": "job-1", "data": f"t{n}"} for n in range(3)]
    items[-1]["final"] = True
    receipts = await post_json(f"{url}/broadcast", items)
    async with open_page(browser) as page:
        requests = await subscribe(page, url, "events/job-1", **{"from": "start"})
        log = await finished_without_reconnecting(page, requests)
    assert log == [
        *[["event", receipt["id"], f"t{n}"] for n, receipt in enumerate(receipts)],
        ["end", "job-1"],
        ["finished", "finished"],
    ]
    assert requests == [f"{url}/events/job-1?from=start"]


async def test_sse_hub_js_resuming_at_the_final_message_gets_204_and_finishes(
    browser: Browser, hub_url: Callable[..., Awaitable[str]]
) -> None:
    url = await hub_url(sse={"retry_ms": 100})
    [receipt] = await post_json(f"{url}/broadcast", [{"channel": "job-2", "data": "only", "final": True}])
    async with open_page(browser) as page:
        requests = await subscribe(page, url, "events/job-2", lastEventId=receipt["id"])
        log = await finished_without_reconnecting(page, requests)
    assert log == [["finished", "finished"]]


# -- the native EventSource, with no helper --------------------------------------------------

NATIVE = """(url) => {
  window.log = [];
  const source = new EventSource(url);
  window.source = source;
  source.onmessage = (event) => window.log.push(["message", event.lastEventId, event.data]);
  source.addEventListener("end", (event) => window.log.push(["end", event.data]));
  source.onerror = () => window.log.push(["error", source.readyState]);
}"""


async def test_a_native_eventsource_stops_reconnecting_after_the_end(
    browser: Browser, hub_url: Callable[..., Awaitable[str]]
) -> None:
    """The hub ends the stream after ``end``; EventSource reconnects once with the final
    message's id, gets 204 and, by the WHATWG rules, stops for good (readyState CLOSED)."""
    url = await hub_url(sse={"retry_ms": 100})
    async with open_page(browser) as page:
        await page.goto(f"{url}/sse-hub.js")  # any page of the hub's origin
        requests: list[str] = []
        page.on("request", lambda request: requests.append(request.url) if "/events/" in request.url else None)
        await page.evaluate(NATIVE, f"{url}/events/job-3")
        await page.wait_for_function("window.source.readyState === EventSource.OPEN", timeout=WAIT_MS)
        token, final = await post_json(
            f"{url}/broadcast",
            [{"channel": "job-3", "data": "t1"}, {"channel": "job-3", "data": "done", "final": True}],
        )
        await page.wait_for_function("window.source.readyState === EventSource.CLOSED", timeout=WAIT_MS)
        made = len(requests)
        with pytest.raises(PlaywrightTimeout):
            await page.wait_for_event("request", lambda request: "/events/" in request.url, timeout=NO_RECONNECT_MS)
        log = await page.evaluate("window.log")
    assert made == 2, "the first stream, then one reconnection that got 204"
    assert log[:3] == [
        ["message", token["id"], "t1"],
        ["message", final["id"], "done"],
        ["end", '{"channel":"job-3"}'],
    ]
    assert log[-1] == ["error", 2], "the 204 closed the EventSource"
