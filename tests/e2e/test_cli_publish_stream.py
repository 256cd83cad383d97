"""``producer | sse-hub publish --stream --channel C`` as a real process against a real
``sse-hub serve``: each stdin line published as it is written (a subscriber sees line 1
before line 2 is written), the final message at EOF, the summary; refusals and usage."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from sse_hub.client import Event, Subscription, subscribe
from tests.support.cli import BASE_ENV, CLI
from tests.support.paths import ROOT
from tests.support.processes import HubProcess

HubStarter = Callable[..., HubProcess]
TIMEOUT = 10


@asynccontextmanager
async def publish_stream(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """``sse-hub publish --stream *args`` with a pipe to its stdin; killed on the way out."""
    process = await asyncio.create_subprocess_exec(
        *CLI,
        "publish",
        "--stream",
        *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=BASE_ENV,
        cwd=ROOT,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def write(process: asyncio.subprocess.Process, text: str) -> None:
    assert process.stdin is not None
    process.stdin.write(text.encode())
    await process.stdin.drain()


async def finish(process: asyncio.subprocess.Process) -> tuple[int, str, str]:
    """Close stdin; the exit code, stdout and stderr."""
    assert process.stdin is not None
    process.stdin.close()  # communicate() without input leaves it open
    async with asyncio.timeout(TIMEOUT):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def next_message(events: Subscription) -> Event:
    async with asyncio.timeout(TIMEOUT):
        while (event := await anext(events)).event == "connected":
            pass
    return event


async def test_each_line_is_published_as_it_is_written_and_eof_ends_the_channel(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with subscribe(hub.url, ["job-42"]) as events:
        await next_message_after_connected(events)
        async with publish_stream("--url", hub.url, "--channel", "job-42", "--event", "token") as process:
            await write(process, "Hello\n")
            first = await next_message(events)
            await write(process, '{"n": 2}\r\n')
            second = await next_message(events)
            code, stdout, stderr = await finish(process)
        final = await next_message(events)
    sent = [("token", "Hello"), ("token", '{"n":2}'), ("message", "")]  # the final message: empty
    assert [(event.event, event.data) for event in (first, second, final)] == sent
    assert (code, stderr) == (0, "")
    assert json.loads(stdout) == {"published": 3, "first_id": first.id, "last_id": final.id}


async def next_message_after_connected(events: Subscription) -> None:
    """Wait for ``connected``: from then on the stream misses nothing published."""
    async with asyncio.timeout(TIMEOUT):
        assert (await anext(events)).event == "connected"


async def test_keep_open_sends_no_final_message(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with publish_stream("--url", hub.url, "--channel", "job", "--keep-open", "--id-only") as process:
        await write(process, "only\n")
        code, stdout, stderr = await finish(process)
    assert (code, stderr) == (0, "")
    async with subscribe(hub.url, ["job"], last_event_id="0") as events:
        replayed = await next_message(events)
    assert (replayed.id, replayed.data) == (stdout.strip(), "only")


async def test_a_refused_stream_exits_1_with_the_hubs_answer(hub_process: HubStarter) -> None:
    hub = hub_process(env={"SSE_HUB_AUTH__PUBLISH_TOKENS": "[secret]"})
    async with publish_stream("--url", hub.url, "--channel", "job", "--token", "wrong") as process:
        await write(process, "x\n")
        code, stdout, stderr = await finish(process)
    assert (code, stdout) == (1, "")
    assert stderr.startswith("sse-hub publish: the hub answered 403: {") and "Traceback" not in stderr


async def test_stream_without_exactly_one_channel_is_a_usage_error(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with publish_stream("--url", hub.url, "--channel", "a", "--channel", "b") as process:
        code, _, stderr = await finish(process)
    assert code == 2
    assert "exactly one --channel" in stderr
