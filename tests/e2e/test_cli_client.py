"""``sse-hub publish`` and ``sse-hub tail`` as subprocesses against a real ``sse-hub serve``:
data from ``--data`` and stdin, JSON versus text, exit codes and messages on errors, tail's
two output forms, Ctrl-C, and tail reconnecting by itself across a hub restart."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from sse_hub.client import Event, JsonValue, Publisher, subscribe
from sse_hub.client.cli import json_or_text
from tests.support.cli import BASE_ENV, CLI, start_tail
from tests.support.paths import ROOT
from tests.support.processes import HubProcess, free_port

HubStarter = Callable[..., HubProcess]


@dataclass
class Completed:
    code: int
    stdout: str
    stderr: str


async def run_cli(*args: str, stdin: bytes | None = None, env: dict[str, str] | None = None) -> Completed:
    process = await asyncio.create_subprocess_exec(
        *CLI,
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**BASE_ENV, **(env or {})},
        cwd=ROOT,
    )
    try:
        async with asyncio.timeout(30):
            stdout, stderr = await process.communicate(stdin)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Completed(process.returncode, stdout.decode(), stderr.decode())


async def replay(url: str, channel: str, count: int) -> list[Event]:
    """The first ``count`` messages the hub kept for ``channel`` (replayed after id 0)."""
    messages: list[Event] = []
    async with subscribe(url, [channel], last_event_id="0") as events, asyncio.timeout(10):
        async for event in events:
            if event.event != "connected":
                messages.append(event)
            if len(messages) == count:
                break
    return messages


# -- publish ------------------------------------------------------------------------------------


async def test_publish_prints_the_receipt_of_the_data_given_with_data(hub_process: HubStarter) -> None:
    hub = hub_process()
    result = await run_cli("publish", "--url", hub.url, "--channel", "news", "--event", "greet", "--data", "hello")
    assert (result.code, result.stderr) == (0, "")
    receipt = json.loads(result.stdout)
    assert receipt == {"id": receipt["id"], "channels": ["news"]}
    assert await replay(hub.url, "news", 1) == [Event(receipt["id"], "greet", "hello")]


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ('{ "a": [1, 2] }', {"a": [1, 2]}),
        ("[1, 2]", [1, 2]),
        ("-1.5e3", -1500.0),
        ("true", True),
        ("null", None),
        (" 42 ", 42),
        ("hello world", "hello world"),
        ('"quoted"', '"quoted"'),  # a JSON string literal is sent as typed, quotes included
        ("NaN", "NaN"),
        ("1e999", "1e999"),  # not representable: re-encoding would write Infinity
        ('{"a": 1', '{"a": 1'),
        ("", ""),
    ],
)
def test_publish_decides_between_a_json_value_and_text(text: str, sent: JsonValue) -> None:
    assert json_or_text(text) == sent and type(json_or_text(text)) is type(sent)


async def test_publish_sends_json_values_as_json_and_anything_else_as_a_string(hub_process: HubStarter) -> None:
    hub = hub_process()
    sent_and_received = [
        (["--data", '{ "a": [1, 2] }'], '{"a":[1,2]}'),
        (["--data", '"quoted"'], '"quoted"'),
        (["--text", "--data", "[1, 2]"], "[1, 2]"),
    ]
    results = await asyncio.gather(
        *(run_cli("publish", "--url", hub.url, "--channel", "mix", *args) for args, _ in sent_and_received)
    )
    assert [result.code for result in results] == [0] * len(results), [result.stderr for result in results]
    receipts = [json.loads(result.stdout) for result in results]
    expected = {receipt["id"]: data for receipt, (_, data) in zip(receipts, sent_and_received, strict=True)}
    received = {event.id: event.data for event in await replay(hub.url, "mix", len(expected))}
    assert received == expected


async def test_publish_reads_all_of_stdin_as_one_message_dropping_one_trailing_newline(
    hub_process: HubStarter,
) -> None:
    hub = hub_process()
    text = await run_cli("publish", "--url", hub.url, "--channel", "in", stdin=b"line 1\nline 2\n\n")
    as_json = await run_cli("publish", "--url", hub.url, "--channel", "in", stdin=b'{"ok": true}\n')
    assert (text.code, as_json.code) == (0, 0), (text.stderr, as_json.stderr)
    assert [event.data for event in await replay(hub.url, "in", 2)] == ["line 1\nline 2\n", '{"ok":true}']


async def test_publish_id_only_prints_just_the_id(hub_process: HubStarter) -> None:
    hub = hub_process()
    first = await run_cli("publish", "--url", hub.url, "--id-only", "--data", "x")
    second = await run_cli("publish", "--url", hub.url, "--id-only", "--data", "y")
    assert first.stdout.strip().isdigit(), first.stdout
    assert (first.stdout, second.stdout) == (first.stdout, f"{int(first.stdout) + 1}\n")


async def test_publish_takes_the_hub_url_from_the_environment(hub_process: HubStarter) -> None:
    hub = hub_process()
    result = await run_cli("publish", "--data", "x", env={"SSE_HUB_URL": hub.url})
    assert result.code == 0 and json.loads(result.stdout)["channels"] == ["*"]


async def test_publish_exits_1_and_prints_the_error_body_when_the_hub_refuses(hub_process: HubStarter) -> None:
    hub = hub_process()
    result = await run_cli("publish", "--url", hub.url, "--channel", "no spaces", "--data", "x")
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith("sse-hub publish: the hub answered 400: {")
    assert '"error": "bad_request"' in result.stderr and "Traceback" not in result.stderr


async def test_publish_exits_1_with_a_clear_message_when_no_hub_listens() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = await run_cli("publish", "--url", url, "--data", "x")
    assert (result.code, result.stdout) == (1, "")
    assert result.stderr == f"sse-hub publish: cannot connect to the hub at {url}: Connection refused\n"


async def test_publish_without_a_url_is_a_usage_error() -> None:
    result = await run_cli("publish", "--data", "x")
    assert (result.code, result.stderr) == (2, "sse-hub publish: give --url URL or set SSE_HUB_URL\n")


# -- tail ---------------------------------------------------------------------------------------


async def test_tail_prints_each_event_of_its_channels_as_it_arrives(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with start_tail("--url", hub.url, "news") as tail, Publisher(hub.url) as publisher:
        assert "connected to" in await tail.note("connected")
        await publisher.publish("not followed", channels=["other"])
        greet = await publisher.publish("hello", channels=["news"], event="greet")
        assert await tail.line() == f"[{greet['id']}] greet: hello\n"
        multi = await publisher.publish("a\nb", channels=["news"])
        assert [await tail.line(), await tail.line()] == [f"[{multi['id']}] message: a\n", "b\n"]


async def test_tail_json_prints_one_object_per_event(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with start_tail("--url", hub.url, "--json", "news") as tail, Publisher(hub.url) as publisher:
        await tail.note("connected")
        receipt = await publisher.publish({"k": 1}, channels=["news"], event="tick")
        multi = await publisher.publish("a\r\nb", channels=["news"])
        lines = [json.loads(await tail.line()), json.loads(await tail.line())]
    assert lines == [
        {"id": receipt["id"], "event": "tick", "data": '{"k":1}'},
        {"id": multi["id"], "event": "message", "data": "a\nb"},
    ]


async def test_tail_exits_0_on_ctrl_c_without_a_traceback(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with start_tail("--url", hub.url, "news") as tail:
        await tail.note("connected")
        code, stderr = await tail.interrupt(signal.SIGINT)
    assert (code, stderr) == (0, "")


async def test_tail_replays_what_came_after_last_event_id(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with Publisher(hub.url) as publisher:
        receipts = [await publisher.publish(f"m{n}", channels=["news"]) for n in range(3)]
    async with start_tail("--url", hub.url, "--last-event-id", receipts[0]["id"], "news") as tail:
        lines = [await tail.line(), await tail.line()]
    assert lines == [f"[{receipts[1]['id']}] message: m1\n", f"[{receipts[2]['id']}] message: m2\n"]


async def test_tail_exits_1_when_the_hub_refuses_the_channel(hub_process: HubStarter) -> None:
    hub = hub_process()
    async with start_tail("--url", hub.url, "no spaces") as tail:
        async with asyncio.timeout(15):
            code = await tail.process.wait()
            assert tail.process.stderr is not None
            stderr = (await tail.process.stderr.read()).decode()
    assert code == 1
    assert stderr.startswith("sse-hub tail: the hub refused the stream with 400: ")


async def test_tail_reconnects_by_itself_after_a_hub_restart(hub_process: HubStarter) -> None:
    # The hub asks streams to come back after max(retry_ms, 1 s) x 1..3 when it stops.
    env = {"SSE_HUB_SSE__RETRY_MS": "200"}
    first = hub_process(env=env)
    async with start_tail("--url", first.url, "news") as tail:
        await tail.note("connected")
        async with Publisher(first.url) as publisher:
            before = await publisher.publish("before", channels=["news"])
        assert await tail.line() == f"[{before['id']}] message: before\n"
        assert first.stop() == 0
        second = hub_process(env=env, port=first.port)
        await tail.note("connected", timeout=30)
        # The memory broker forgets on restart: the id tail resends is unknown to the new
        # hub, which says so with a reset before live messages.
        reset = await tail.line()
        assert reset == f'[-] reset: {{"reason":"unknown_id","last_event_id":"{before["id"]}"}}\n'
        async with Publisher(second.url) as publisher:
            after = await publisher.publish("after", channels=["news"])
        assert await tail.line() == f"[{after['id']}] message: after\n"
        code, _ = await tail.interrupt()
    assert code == 0
