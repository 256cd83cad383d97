"""The browser side in real Chromium: the demo page at ``/`` and the ``/sse-hub.js`` helper.

Chromium is Debian's (``apt-get install -y chromium``), driven by playwright with
``executable_path``; playwright's own browser download is never used. The pages load from
the real app on a loopback port; the restart test runs real ``sse-hub`` processes on
Redis, and the proxy tests real nginx. Screenshots go to ``test-artifacts/`` (gitignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Browser, Page, Request

from tests.support.browser import WAIT_MS, chromium
from tests.support.http import HubClientFactory
from tests.support.nginx import NginxCluster
from tests.support.paths import ROOT
from tests.support.processes import HubProcess, free_port, require_binary
from tests.support.sse_client import Event, parse
from tests.support.waiting import wait_until

ARTIFACTS = ROOT / "test-artifacts"
HELPER = ROOT / "sse_hub" / "static" / "sse-hub.js"


@contextlib.asynccontextmanager
async def open_page(browser: Browser, **context_options: Any) -> AsyncIterator[Page]:
    """A page that fails the test on any uncaught script error."""
    context = await browser.new_context(**context_options)
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
        assert errors == [], f"script errors on the page: {errors}"
    finally:
        await context.close()


@dataclass
class HubServer:
    url: str
    client: TestClient[Any, Any]


HubServerFactory = Callable[..., Awaitable[HubServer]]


@pytest.fixture
def hub_server(hub_client: HubClientFactory) -> HubServerFactory:
    """``hub = await hub_server(auth={...})``: the app on a loopback port, ``hub.url`` its base."""

    async def start(**sections: Any) -> HubServer:
        client = await hub_client(**sections)
        return HubServer(str(client.make_url("")).rstrip("/"), client)

    return start


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched


async def post_json(url: str, body: object, headers: dict[str, str] | None = None) -> Any:
    async with aiohttp.ClientSession() as session, session.post(url, json=body, headers=headers) as response:
        payload = await response.json()
        assert response.status == 202, payload
        return payload


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path


async def log_rows(page: Page, event: str = "message") -> list[dict[str, str]]:
    """The demo page's log rows for one event name, oldest first."""
    rows: list[dict[str, str]] = await page.eval_on_selector_all(
        f'#log li[data-event="{event}"]',
        "rows => rows.map(r => ({id: r.dataset.id, data: r.querySelector('.data').textContent})).reverse()",
    )
    return rows


# -- the demo page ---------------------------------------------------------------------


async def test_demo_page_shows_a_published_event_and_the_stats(browser: Browser, hub_server: HubServerFactory) -> None:
    hub = await hub_server()
    async with open_page(browser, viewport={"width": 1280, "height": 900}) as page:
        await page.goto(f"{hub.url}/?channel=demo&channel=news")
        await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
        await page.wait_for_selector('#log li[data-event="connected"]', timeout=WAIT_MS)

        await page.fill("#pub-event", "greet")
        await page.fill("#pub-channels", "demo")
        await page.fill("#pub-data", '{"hello": "browser", "n": [1, 2]}')
        await page.click("#publish")
        await page.wait_for_selector('#log li[data-event="greet"]', timeout=WAIT_MS)
        await page.fill("#pub-event", "")
        await page.fill("#pub-channels", "news")
        await page.fill("#pub-data", "plain text, not JSON")
        await page.click("#publish")
        await page.wait_for_selector('#log li[data-event="message"]', timeout=WAIT_MS)

        [greet] = await log_rows(page, "greet")
        second = str(int(greet["id"]) + 1)
        assert greet == {"id": greet["id"], "data": '{"hello":"browser","n":[1,2]}'}
        assert await log_rows(page, "message") == [{"id": second, "data": "plain text, not JSON"}]
        assert await page.text_content("#publish-message") == f"Published id {second} to news."
        assert await page.text_content("#last-id") == second
        # The panel refreshes by itself every 2 s.
        await page.wait_for_function("document.getElementById('stat-delivered').textContent === '2'", timeout=WAIT_MS)
        assert await page.text_content("#stat-clients") == "1"
        assert await page.text_content("#stat-channels") == "2"
        assert await page.text_content("#stat-published") == "2"
        assert await page.text_content("#stats-message") == ""
        await screenshot(page, "demo-page.png")


async def test_demo_page_is_readable_on_a_phone(browser: Browser, hub_server: HubServerFactory) -> None:
    hub = await hub_server()
    # A phone in dark mode: the page follows prefers-color-scheme.
    phone = {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "color_scheme": "dark",
    }
    async with open_page(browser, **phone) as page:
        await page.goto(f"{hub.url}/")
        await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
        await post_json(f"{hub.url}/broadcast", {"channel": "demo", "data": "word " * 80})
        await page.wait_for_selector('#log li[data-event="message"]', timeout=WAIT_MS)
        # Nothing is wider than the screen: no sideways scrolling on a phone.
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await screenshot(page, "demo-page-phone.png")


async def test_demo_page_keeps_a_bounded_log_when_events_pour_in(
    browser: Browser, hub_server: HubServerFactory
) -> None:
    hub = await hub_server()
    async with open_page(browser) as page:
        await page.goto(f"{hub.url}/?channel=flood")
        await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
        for start in range(0, 1200, 400):
            batch = [{"channel": "flood", "data": f"m{n}"} for n in range(start, start + 400)]
            await post_json(f"{hub.url}/broadcast", batch)
        await page.wait_for_function("document.getElementById('log-count').textContent === '1201'", timeout=WAIT_MS)
        rows = await log_rows(page)
        assert len(rows) == 500
        assert [row["data"] for row in rows] == [f"m{n}" for n in range(700, 1200)]


async def test_demo_page_explains_what_the_hub_refused(browser: Browser, hub_server: HubServerFactory) -> None:
    hub = await hub_server(auth={"admin_tokens": ["admin-secret"]})
    async with open_page(browser) as page:
        await page.goto(f"{hub.url}/")
        await page.wait_for_function(
            "document.getElementById('stats-message').textContent.includes('401')", timeout=WAIT_MS
        )
        assert "this hub needs a token" in (await page.text_content("#stats-message") or "")

        await page.click("#publish-panel summary")  # the token field is folded away
        await page.fill("#token", "admin-secret")
        await page.evaluate("window.sseHubDemo.refreshStats()")
        await page.wait_for_function("document.getElementById('stats-message').textContent === ''", timeout=WAIT_MS)

        await page.fill("#pub-channels", "not/a/channel")
        await page.click("#publish")
        await page.wait_for_function(
            "document.getElementById('publish-message').textContent.startsWith('Not published: 400')",
            timeout=WAIT_MS,
        )

        await page.fill("#sub-channels", "ok, bad channel!")
        await page.click("#connect")
        message = await page.text_content("#subscribe-message")
        assert message is not None and message.startswith("Not a channel name: channel!")


async def test_native_eventsource_resumes_with_last_event_id_after_the_hub_restarts(
    browser: Browser, hub_process: Callable[..., HubProcess], redis_server: str, tmp_path: Path
) -> None:
    """The page's own EventSource, through a hub killed and restarted on the same port,
    while a second hub of the cluster keeps publishing: every message exactly once."""
    redis_env = {
        "SSE_HUB_BROKER__BACKEND": "redis",
        "SSE_HUB_BROKER__REDIS_URL": redis_server,
        "SSE_HUB_BROKER__PREFIX": f"browser-restart-{tmp_path.name}",
        "SSE_HUB_SSE__RETRY_MS": "200",
    }
    subscriber_hub = hub_process(env=redis_env)
    publisher_hub = hub_process(env=redis_env)
    stream_requests: list[Request] = []

    async with open_page(browser) as page:
        page.on("request", lambda request: stream_requests.append(request) if "/events?" in request.url else None)
        await page.goto(f"{subscriber_hub.url}/?channel=restart&reader=eventsource")
        await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)

        published: list[str] = []

        async def publish_range(start: int, stop: int) -> None:
            for n in range(start, stop):
                receipt = await post_json(f"{publisher_hub.url}/broadcast", {"channel": "restart", "data": f"n{n}"})
                published.append(receipt["id"])

        await publish_range(0, 10)
        await page.wait_for_function("id => window.sseHubDemo.lastEventId === id", arg=published[-1], timeout=WAIT_MS)
        seen_before_kill = published[-1]

        subscriber_hub.stop(signal.SIGKILL)
        await page.wait_for_selector('#state[data-state="reconnecting"]', timeout=WAIT_MS)
        await publish_range(10, 20)  # while the page's hub is down: only history has them
        await asyncio.to_thread(hub_process, env=redis_env, port=subscriber_hub.port)
        await publish_range(20, 30)

        await page.wait_for_function("id => window.sseHubDemo.lastEventId === id", arg=published[-1], timeout=WAIT_MS)
        await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
        rows = await log_rows(page)
        # The request that reached the restarted hub (the ones before it were refused).
        answered = [request for request in stream_requests[1:] if await request.response() is not None]
        resumed_with = [(await request.all_headers()).get("last-event-id") for request in answered]

    assert [row["id"] for row in rows] == published
    assert [row["data"] for row in rows] == [f"n{n}" for n in range(30)]
    assert resumed_with == [seen_before_kill]


async def demo_round_trip(page: Page, url: str, channel: str) -> None:
    """Open the demo page at ``url``, publish from its form, see the event and the stats."""
    await page.goto(f"{url}?channel={channel}")
    await page.wait_for_selector('#state[data-state="open"]', timeout=WAIT_MS)
    await page.fill("#pub-channels", channel)
    await page.fill("#pub-data", "through the proxy")
    await page.click("#publish")
    await page.wait_for_selector('#log li[data-event="message"]', timeout=WAIT_MS)
    assert [row["data"] for row in await log_rows(page)] == ["through the proxy"]
    await page.wait_for_function("Number(document.getElementById('stat-published').textContent) >= 1", timeout=WAIT_MS)
    assert await page.text_content("#stats-message") == ""


async def test_demo_page_works_through_the_shipped_nginx_config(browser: Browser, nginx_cluster: NginxCluster) -> None:
    """deploy/nginx.conf in front of two hubs on Redis: the page streams, publishes and
    reads stats through nginx, whichever hub each request reaches."""
    async with open_page(browser) as page:
        await demo_round_trip(page, f"{nginx_cluster.nginx.url}/", "via-nginx")
        # Clients are counted over the cluster, whichever hub answered /stats.
        await page.wait_for_function("document.getElementById('stat-instances').textContent === '2'", timeout=WAIT_MS)
        assert await page.text_content("#stat-clients") == "1"
        await screenshot(page, "demo-page-nginx.png")


NGINX_PREFIX_CONF = """
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {workdir}/body;
    proxy_temp_path {workdir}/proxy;
    fastcgi_temp_path {workdir}/fastcgi;
    uwsgi_temp_path {workdir}/uwsgi;
    scgi_temp_path {workdir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        # The hub under a sub-path: /hub/x is the hub's /x.
        location /hub/ {{
            proxy_pass http://127.0.0.1:{hub_port}/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
    }}
}}
"""


@pytest.fixture
async def prefixed_hub(hub_server: HubServerFactory, tmp_path: Path) -> AsyncIterator[str]:
    """A hub behind a minimal nginx at ``/hub/``; yields the page URL."""
    nginx = require_binary("nginx", "nginx-light")
    hub = await hub_server()
    hub_port = hub.client.port
    workdir = tmp_path / "nginx-prefix"
    workdir.mkdir()
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_PREFIX_CONF.format(workdir=workdir, port=port, hub_port=hub_port))
    process = await asyncio.create_subprocess_exec(
        nginx, "-p", f"{workdir}/", "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.STDOUT
    )
    try:
        await wait_until(lambda: process.returncode is not None or port_is_open(port), timeout=10)
        assert process.returncode is None, (workdir / "error.log").read_text()
        yield f"http://127.0.0.1:{port}/hub/"
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()


def port_is_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


async def test_demo_page_works_under_a_path_prefix(browser: Browser, prefixed_hub: str) -> None:
    async with open_page(browser) as page:
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        await demo_round_trip(page, prefixed_hub, "prefixed")
    # Every request of the page stayed under the prefix.
    assert requested and all(url.startswith(prefixed_hub) for url in requested), requested


# -- the sse-hub.js helper ----------------------------------------------------------------


async def load_helper(page: Page, hub_url: str) -> None:
    """The demo page with ``/sse-hub.js`` loaded as a module (it sets ``window.SseHub``)."""
    await page.goto(f"{hub_url}/?channel=demo")
    await page.add_script_tag(url=f"{hub_url}/sse-hub.js", type="module")
    await page.wait_for_function("window.SseHub !== undefined", timeout=WAIT_MS)
    await page.evaluate("window.received = []; window.resets = []; window.opens = []; window.errors = []")


SUBSCRIBE = """([url, options]) => {
  window.subscription = SseHub.subscribe(url, {
    ...options,
    onEvent: (event) => window.received.push(event),
    onOpen: (info) => window.opens.push(info),
    onReset: (info) => window.resets.push(info),
    onError: (error) => window.errors.push({message: error.message, status: error.status, body: error.body}),
  });
}"""


async def test_sse_hub_js_subscribes_with_an_authorization_header(
    browser: Browser, hub_server: HubServerFactory
) -> None:
    secret = "subscriber-jwt-secret-for-tests-0123456789"
    hub = await hub_server(auth={"subscriber_jwt": {"secret": secret}})
    token = jwt.encode({"channels": ["orders.*"], "sub": "browser"}, secret, algorithm="HS256")
    async with open_page(browser) as page:
        await load_helper(page, hub.url)
        headers: list[dict[str, str]] = []
        page.on("request", lambda request: headers.append(request.headers) if "/events/" in request.url else None)

        await page.evaluate(SUBSCRIBE, ["events/orders.eu", {"token": token}])
        await page.wait_for_function("window.opens.length === 1", timeout=WAIT_MS)
        await post_json(f"{hub.url}/broadcast", {"channel": "orders.eu", "event": "order", "data": {"n": 1}})
        await page.wait_for_function("window.received.length === 1", timeout=WAIT_MS)
        [received] = await page.evaluate("window.received")
        assert received == {"event": "order", "data": '{"n":1}', "id": received["id"]} and received["id"].isdigit()
        assert headers[0]["authorization"] == f"Bearer {token}"

        # Without the header the hub says 401, and the helper stops instead of retrying.
        await page.evaluate("window.subscription.close()")
        await page.evaluate(SUBSCRIBE, ["events/orders.eu", {}])
        await page.wait_for_function("window.subscription.state === 'closed'", timeout=WAIT_MS)
        errors = await page.evaluate("window.errors")
        assert [(error["status"], error["body"]["error"]) for error in errors] == [(401, "unauthorized")]


async def test_sse_hub_js_resumes_with_last_event_id_after_a_dropped_stream(
    browser: Browser, hub_server: HubServerFactory
) -> None:
    hub = await hub_server(sse={"retry_ms": 300})
    async with open_page(browser) as page:
        await load_helper(page, hub.url)
        resumed: list[str | None] = []
        page.on(
            "request",
            lambda request: resumed.append(request.headers.get("last-event-id")) if "/events?" in request.url else None,
        )
        await page.evaluate(SUBSCRIBE, ["events?channel=drop", {}])
        await page.wait_for_function("window.opens.length === 1", timeout=WAIT_MS)
        await post_json(f"{hub.url}/broadcast", {"channel": "drop", "data": "first"})
        await page.wait_for_function("window.received.length === 1", timeout=WAIT_MS)

        client_id = await page.evaluate("window.subscription.clientId")
        async with aiohttp.ClientSession() as session, session.delete(f"{hub.url}/clients/{client_id}") as response:
            assert response.status == 200, await response.text()
        await page.wait_for_function("window.subscription.state === 'reconnecting'", timeout=WAIT_MS)
        await post_json(f"{hub.url}/broadcast", {"channel": "drop", "data": "missed"})
        await page.wait_for_function("window.opens.length === 2", timeout=WAIT_MS)
        await post_json(f"{hub.url}/broadcast", {"channel": "drop", "data": "live"})
        await page.wait_for_function("window.received.length === 3", timeout=WAIT_MS)

        received = await page.evaluate("window.received.map(e => [e.id, e.data])")
        first = int(received[0][0])
        assert received == [[str(first), "first"], [str(first + 1), "missed"], [str(first + 2), "live"]]
        assert resumed == [None, str(first)]
        assert await page.evaluate("window.subscription.state") == "open"


async def test_sse_hub_js_surfaces_a_reset_event(browser: Browser, hub_server: HubServerFactory) -> None:
    hub = await hub_server()
    async with open_page(browser) as page:
        await load_helper(page, hub.url)
        await page.evaluate(SUBSCRIBE, ["events/news", {"lastEventId": "not-a-number"}])
        await page.wait_for_function("window.resets.length === 1", timeout=WAIT_MS)
        assert await page.evaluate("window.resets") == [{"reason": "unknown_id", "last_event_id": "not-a-number"}]
        await page.evaluate("window.subscription.close()")
        assert await page.evaluate("window.subscription.state") == "closed"


STREAMS = [
    "data: a\r\ndata: b\r\n\r\n",
    "data: a\rdata: b\r\rdata:c\n\n",
    "event: x\nid: 7\ndata:  two spaces\n\n: comment\n\ndata\n\n",
    "retry: 10\nid: 1\0x\ndata: nul id ignored\n\nid\ndata: id cleared\n\n",
    "data: é 😀 \u2028 \x00\n\ndata: unfinished",
    "\ufeffdata: bom\n\n",
]


async def test_sse_hub_js_parser_reads_streams_like_the_spec_parser_however_they_are_split(
    browser: Browser,
) -> None:
    """EventStreamParser against tests/support/sse_client.py (written from the spec), with each
    stream fed whole and split at every position (a CR at a chunk's end may be a CRLF)."""
    async with open_page(browser) as page:
        await page.set_content("<!doctype html><title>parser</title>")
        await page.add_script_tag(content=HELPER.read_text(), type="module")
        await page.wait_for_function("window.SseHub !== undefined", timeout=WAIT_MS)
        for text in STREAMS:
            body = text.removeprefix("\ufeff")  # TextDecoder drops the BOM before the parser
            expected = with_last_event_id(parse(body))
            splits = await page.evaluate(
                """(text) => {
                  const results = [];
                  for (let cut = 0; cut <= text.length; cut += 1) {
                    const events = [];
                    const parser = new SseHub.EventStreamParser((event) => events.push(event));
                    parser.feed(text.slice(0, cut));
                    parser.feed(text.slice(cut));
                    results.push(events);
                  }
                  return results;
                }""",
                body,
            )
            for cut, events in enumerate(splits):
                assert events == expected, (text, cut)


def with_last_event_id(events: list[Event]) -> list[dict[str, str]]:
    """The spec parser in tests/ reports each event's own ``id`` line; the helper, like
    EventSource, reports the last event id in force when the event is dispatched."""
    in_force = ""
    result = []
    for event in events:
        if event.id is not None:
            in_force = event.id
        result.append({"event": event.event, "data": event.data, "id": in_force})
    return result
