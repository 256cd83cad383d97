"""Real clients read what the hub sends exactly as it was published.

A fixed corpus of awkward payloads (every line ending, empty data, characters beyond the
BMP, U+2028, NUL, a 100 KB line, data that looks like SSE fields, leading spaces,
trailing newlines) goes through the real app to the clients people use: Chromium's
native EventSource, the /sse-hub.js helper in Chromium, the Python ``httpx-sse`` client
and the npm ``eventsource`` package under node. Each must see every event's name, data
and id. SSE carries lines, not line endings, so CR and CRLF arrive as LF (WHATWG HTML
9.2.6); that is the one change any client sees. Client quirks are documented in
docs/api.md ("Client notes") and asserted below.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import pytest
from aiohttp.test_utils import TestClient
from httpx_sse import aconnect_sse
from playwright.async_api import Page

from tests.support.browser import WAIT_MS, chromium
from tests.support.http import HubClientFactory, publish
from tests.support.paths import ROOT

NODE_DIR = ROOT / "tests" / "node"
CHANNEL = "conformance"
TIMEOUT = 15


@dataclass(frozen=True)
class Case:
    label: str
    event: str
    data: str


CORPUS = [
    Case("lf lines", "message", "one\ntwo\nthree"),
    Case("crlf lines", "lines", "one\r\ntwo\r\n"),
    Case("cr lines", "lines", "one\rtwo\rthree"),
    Case("mixed endings and blank lines", "lines", "a\r\n\r\nb\n\nc\r\rd"),
    Case("only line breaks", "lines", "\r\n\n\r"),
    Case("empty string", "empty", ""),
    Case("beyond the BMP", "😀 emoji", "𝄞 clef, 😀 face, 𠜎 CJK ext B"),
    Case("unicode line separators", "unicode", "a\u2028b\u2029c\u0085d\x0be\x0cf\x1cg"),
    Case("nul", "nul", "before\x00after\x00"),
    Case("byte order mark", "unicode", "\ufeffstarts with a BOM"),
    Case("100 KB line", "long", "0123456789abcdef" * 6400),
    Case("looks like fields", "message", "id: 5\n\nevent: x\ndata: y\nretry: 1\n: not a comment\n"),
    Case("colon first", "fields", ":colon\n: space colon\ndata:"),
    Case("leading spaces", " leading space", "  two spaces\n one space\n\ttab"),
    Case("trailing newline", "trailing", "ends with a newline\n"),
    Case("trailing spaces", "trailing", "spaces at the end   "),
    Case("event named like a field", "data", "event name is data"),
    Case("json-looking text", "json", '{"a": [1, 2, "three"]}'),
]
EVENT_NAMES = sorted({case.event for case in CORPUS})


def as_received(data: str) -> str:
    """What a spec-conforming client sees: each line ending becomes LF."""
    return re.sub(r"\r\n|\r", "\n", data)


@dataclass(frozen=True)
class Received:
    event: str
    data: str
    id: str


class Reader(Protocol):
    """A client connected to the hub: ``events(n)`` waits for n events (not ``connected``)."""

    async def events(self, count: int) -> list[Received]: ...


ReaderFactory = Callable[[str], contextlib.AbstractAsyncContextManager[Reader]]


async def publish_corpus(client: TestClient[Any, Any]) -> list[str]:
    items = [{"channel": CHANNEL, "event": case.event, "data": case.data} for case in CORPUS]
    receipts = await publish(client, items)
    return [receipt["id"] for receipt in receipts]


# -- the clients ---------------------------------------------------------------------


class BrowserReader:
    def __init__(self, page: Page) -> None:
        self.page = page

    async def events(self, count: int) -> list[Received]:
        await self.page.wait_for_function(f"window.received.length >= {count}", timeout=TIMEOUT * 1000)
        events: list[dict[str, str]] = await self.page.evaluate("window.received")
        return [Received(**event) for event in events]


NATIVE_EVENTSOURCE = """([url, names]) => {
  window.received = [];
  window.ready = false;
  const source = new EventSource(url);
  source.addEventListener("connected", () => { window.ready = true; });
  for (const name of names) {
    source.addEventListener(name, (e) => window.received.push({event: e.type, data: e.data, id: e.lastEventId}));
  }
}"""

HELPER_SUBSCRIPTION = """([url]) => {
  window.received = [];
  window.ready = false;
  SseHub.subscribe(url, {onOpen: () => { window.ready = true; }, onEvent: (e) => window.received.push(e)});
}"""


@contextlib.asynccontextmanager
async def chromium_eventsource(url: str) -> AsyncIterator[Reader]:
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(url.replace(f"/events/{CHANNEL}", "/healthz"))
        await page.evaluate(NATIVE_EVENTSOURCE, [url, EVENT_NAMES])
        await page.wait_for_function("window.ready", timeout=WAIT_MS)
        yield BrowserReader(page)


@contextlib.asynccontextmanager
async def sse_hub_js(url: str) -> AsyncIterator[Reader]:
    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(url.replace(f"/events/{CHANNEL}", "/healthz"))
        await page.add_script_tag(url=url.replace(f"/events/{CHANNEL}", "/sse-hub.js"), type="module")
        await page.wait_for_function("window.SseHub !== undefined", timeout=WAIT_MS)
        await page.evaluate(HELPER_SUBSCRIPTION, [url])
        await page.wait_for_function("window.ready", timeout=WAIT_MS)
        yield BrowserReader(page)


class HttpxReader:
    def __init__(self, events: asyncio.Queue[Received]) -> None:
        self.queue = events

    async def events(self, count: int) -> list[Received]:
        async with asyncio.timeout(TIMEOUT):
            return [await self.queue.get() for _ in range(count)]


@contextlib.asynccontextmanager
async def httpx_sse(url: str) -> AsyncIterator[Reader]:
    queue: asyncio.Queue[Received] = asyncio.Queue()
    ready = asyncio.Event()

    async def read() -> None:
        async with (
            httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as http,
            aconnect_sse(http, "GET", url) as source,
        ):
            async for event in source.aiter_sse():
                if event.event == "connected":
                    ready.set()
                else:
                    queue.put_nowait(Received(event.event, event.data, event.id))

    task = asyncio.create_task(read())
    try:
        async with asyncio.timeout(TIMEOUT):
            await asyncio.wait([task, asyncio.create_task(ready.wait())], return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()
        yield HttpxReader(queue)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class NodeReader:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    async def line(self) -> dict[str, str]:
        assert self.process.stdout is not None
        raw = await self.process.stdout.readline()
        if not raw:
            stderr = await self.process.stderr.read() if self.process.stderr else b""
            raise AssertionError(f"node reader ended: {stderr.decode(errors='replace')}")
        value: dict[str, str] = json.loads(raw)
        return value

    async def events(self, count: int) -> list[Received]:
        async with asyncio.timeout(TIMEOUT):
            return [Received(**await self.line()) for _ in range(count)]


def require_node_eventsource() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "eventsource").is_dir():
        pytest.fail(
            "node and the npm eventsource package are needed: run `bash .ci/install-browser-deps.sh`",
            pytrace=False,
        )
    return node


@contextlib.asynccontextmanager
async def node_eventsource(url: str) -> AsyncIterator[Reader]:
    node = require_node_eventsource()
    process = await asyncio.create_subprocess_exec(
        node,
        "read-events.mjs",
        url,
        str(len(CORPUS)),
        *EVENT_NAMES,
        cwd=NODE_DIR,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # The 100 KB event is one JSON line: more than asyncio's default 64 KiB line limit.
        limit=1 << 20,
    )
    reader = NodeReader(process)
    try:
        async with asyncio.timeout(TIMEOUT):
            assert await reader.line() == {"ready": True}
        yield reader
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


CLIENTS: dict[str, ReaderFactory] = {
    "chromium-eventsource": chromium_eventsource,
    "sse-hub.js": sse_hub_js,
    "httpx-sse": httpx_sse,
    "node-eventsource": node_eventsource,
}


# -- the tests -----------------------------------------------------------------------


@pytest.fixture
async def conformance_hub(hub_client: HubClientFactory) -> TestClient[Any, Any]:
    # The 100 KB case needs a larger body limit; a long heartbeat keeps comments out.
    return await hub_client(limits={"max_message_bytes": 1_000_000}, sse={"heartbeat_seconds": 600})


@pytest.mark.parametrize("client_name", list(CLIENTS))
async def test_client_reads_every_awkward_payload_as_published(
    client_name: str, conformance_hub: TestClient[Any, Any]
) -> None:
    url = str(conformance_hub.make_url(f"/events/{CHANNEL}"))
    async with CLIENTS[client_name](url) as reader:
        ids = await publish_corpus(conformance_hub)
        received = await reader.events(len(CORPUS))
    for case, event_id, got in zip(CORPUS, ids, received, strict=True):
        assert got == Received(case.event, as_received(case.data), event_id), case.label


async def test_httpx_sse_reports_a_heartbeat_after_an_event_as_an_empty_message(
    hub_client: HubClientFactory,
) -> None:
    """A documented httpx-sse quirk (docs/api.md, "Client notes"): once an id was seen,
    a block with no data line (the hub's ``: ping`` heartbeat) is yielded as an empty
    ``message`` carrying the previous id. Browsers and the spec ignore such a block."""
    client = await hub_client(sse={"heartbeat_seconds": 0.3})
    url = str(client.make_url("/events/beat"))
    events: list[tuple[str, str, str]] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(TIMEOUT, read=None)) as http:
        async with asyncio.timeout(TIMEOUT), aconnect_sse(http, "GET", url) as source:
            async for event in source.aiter_sse():
                events.append((event.event, event.data, event.id))
                if event.event == "connected":
                    receipt = await publish(client, {"channel": "beat", "data": "real"})
                if len(events) == 3:
                    break
    assert events[1:] == [("message", "real", receipt["id"]), ("message", "", receipt["id"])]
