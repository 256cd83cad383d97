"""The worked example of docs/jobs.md, for real: an ``sse-hub serve`` process, the example
app (docs/examples/jobs/app.py) as a process of its own, and its page in Chromium.

The page starts a job; mid-stream the hub drops the page's stream (``DELETE
/clients/{id}``, as a restart or a proxy would); the page must show every token exactly
once, in order, then "done", and make no stream request after the end. The tokens it shows
are compared with what the Python client reads of the same channel from the start, which
stops by itself at the end. The screenshot is the one docs/jobs.md shows (copied from
``test-artifacts/jobs.png`` to docs/img/jobs.png when the page changes).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, Request
from playwright.async_api import TimeoutError as PlaywrightTimeout

from sse_hub.client import subscribe
from tests.e2e.test_browser import open_page, screenshot
from tests.support.browser import WAIT_MS, chromium
from tests.support.paths import ROOT
from tests.support.processes import HubProcess, free_port, wait_for_http

APP = ROOT / "docs" / "examples" / "jobs" / "app.py"
TOKENS = 30
# The stream is dropped once the page shows this many tokens: well before the last.
DROP_AFTER = 5
# A reconnection after the end would come within the hub's retry (200 ms here).
NO_RECONNECT_MS = 1500


@pytest.fixture
def jobs_app(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``url = jobs_app(hub_url)`` runs the example app against that hub until teardown."""
    processes: list[subprocess.Popen[bytes]] = []

    def start(hub_url: str) -> str:
        port = free_port()
        log_path = tmp_path / f"jobs-{port}.log"
        # 0.1 s of "work" per token: the job lasts 3 s, the drop comes after 0.5 s.
        command = [sys.executable, str(APP), "--hub", hub_url, "--port", str(port), "--tokens", str(TOKENS)]
        with log_path.open("wb") as log:
            process = subprocess.Popen([*command, "--delay", "0.1"], stdout=log, stderr=subprocess.STDOUT)
        processes.append(process)
        wait_for_http(f"http://127.0.0.1:{port}/", process, log_path)
        return f"http://127.0.0.1:{port}"

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


async def drop_stream(hub_url: str, client_id: str) -> None:
    async with aiohttp.ClientSession() as session, session.delete(f"{hub_url}/clients/{client_id}") as response:
        assert response.status == 200, await response.text()


async def tokens_from_the_start(hub_url: str, channel: str) -> list[tuple[str, int, str]]:
    """(id, n, text) of every token of ``channel``, read by the Python client, which must
    stop by itself at the channel's end."""
    received = []
    async with asyncio.timeout(10), subscribe(hub_url, [channel], from_start=True) as events:
        async for event in events:
            if event.event == "message":
                token = event.json()
                assert isinstance(token, dict)
                received.append((event.id or "", token["n"], token["text"]))
        assert events.finished
    return received


async def shown_tokens(page: Page) -> list[tuple[str, int, str]]:
    """(id, n, text) of every token the page shows, in the page's order."""
    shown: list[list[str]] = await page.eval_on_selector_all(
        "#output .token", "spans => spans.map(s => [s.dataset.id, s.dataset.n, s.textContent])"
    )
    return [(event_id, int(n), text.removesuffix(" ")) for event_id, n, text in shown]


async def test_jobs_page_shows_every_token_once_in_order_through_a_dropped_stream_then_done(
    hub_process: Callable[..., HubProcess], jobs_app: Callable[[str], str]
) -> None:
    hub = hub_process(env={"SSE_HUB_SSE__RETRY_MS": "200"})
    app_url = await asyncio.to_thread(jobs_app, hub.url)
    stream_requests: list[Request] = []

    async with chromium() as browser, open_page(browser, viewport={"width": 900, "height": 560}) as page:
        page.on("request", lambda request: stream_requests.append(request) if "/events/" in request.url else None)
        await page.goto(f"{app_url}/")
        await page.click("#start")
        await page.wait_for_function(f"window.jobsPage.tokens >= {DROP_AFTER}", timeout=WAIT_MS)
        shown_at_drop = await page.evaluate("window.jobsPage.tokens")
        await drop_stream(hub.url, await page.evaluate("window.jobsPage.subscription.clientId"))

        await page.wait_for_selector('#status[data-state="done"]', timeout=WAIT_MS)
        requests_at_end = len(stream_requests)
        with pytest.raises(PlaywrightTimeout):
            await page.wait_for_event("request", lambda r: "/events/" in r.url, timeout=NO_RECONNECT_MS)
        channel = await page.text_content("#channel")
        shown = await shown_tokens(page)
        resumed_with = [(await request.all_headers()).get("last-event-id") for request in stream_requests]
        await screenshot(page, "jobs.png")

    assert channel is not None and channel.startswith("job-")
    assert shown_at_drop < TOKENS  # the drop came mid-stream
    assert [n for _, n, _ in shown] == list(range(TOKENS))
    assert shown == await tokens_from_the_start(hub.url, channel)
    # From the start, then resumed after a token seen before the last; none after the end.
    ids = [event_id for event_id, _, _ in shown]
    assert requests_at_end == len(stream_requests) == 2
    assert [request.url for request in stream_requests] == [
        f"{hub.url}/events/{channel}?from=start",
        f"{hub.url}/events/{channel}",
    ]
    assert resumed_with[0] is None and resumed_with[1] in ids[DROP_AFTER - 1 : -1]
