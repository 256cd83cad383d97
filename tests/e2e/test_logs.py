"""Logs of the real ``sse-hub serve``: ``log.format: json`` is one object per line; one line
per connect and per disconnect with its reason, per rejected request, at start and at
shutdown; message data and credentials never appear above DEBUG; ``text`` lines read
well; ``log.level`` filters. The formatters' structured ``extra`` fields, in process:
tests/unit/test_logs.py."""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from collections.abc import Callable
from typing import Any

import aiohttp

from tests.support.http import client_id_of, open_stream
from tests.support.processes import HubProcess
from tests.support.waiting import eventually, wait_until

HubStarter = Callable[..., HubProcess]
JSON_ENV = {"SSE_HUB_LOG__FORMAT": "json"}
ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
JSON_TYPE = {"Content-Type": "application/json"}
TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S.*")
# Requests the hub refuses, each with a body or query that must not reach the log.
REJECTED: list[tuple[str, str, dict[str, Any], int]] = [
    ("GET", "/events/bad!name", {}, 400),
    ("GET", "/events", {}, 400),
    ("POST", "/broadcast", {"data": b'{"data": "MARKER", "channel": "no spaces"}', "headers": JSON_TYPE}, 400),
    ("POST", "/broadcast", {"data": b'{"data": "MARKER"', "headers": JSON_TYPE}, 400),
    ("POST", "/broadcast", {"data": b"MARKER", "headers": {"Content-Type": "text/plain"}}, 415),
    ("DELETE", "/clients/c_nobody", {}, 404),
    ("GET", "/nowhere", {}, 404),
]


def json_lines(hub: HubProcess, complete_only: bool = False) -> list[dict[str, Any]]:
    """Every line of the hub's output, each checked to be one JSON log object (while the
    hub runs, ``complete_only`` leaves out a last line still being written)."""
    entries = []
    text = hub.log()
    lines = text.splitlines()
    if complete_only and not text.endswith("\n"):
        lines = lines[:-1]
    for line in lines:
        entry = json.loads(line)  # fails on any line that is not one JSON value
        assert isinstance(entry, dict), line
        assert {"time", "level", "logger", "message"} <= set(entry), line
        assert ISO_UTC.fullmatch(entry["time"]), line
        assert entry["level"] in ("debug", "info", "warning", "error", "critical"), line
        entries.append(entry)
    return entries


def fields(entry: dict[str, Any]) -> dict[str, str]:
    """A JSON line's ``key=value`` pairs, from its message or its own fields (``extra=``)."""
    found = dict(re.findall(r"(\w+)=(\S+)", entry["message"]))
    found.update((key, str(value)) for key, value in entry.items() if key not in ("time", "level", "logger", "message"))
    return found


def lines_about(entries: list[dict[str, Any]], event: str, client_id: str) -> list[dict[str, Any]]:
    return [
        entry
        for entry in entries
        if entry["message"].split(" ", 1)[0] == event and fields(entry).get("client") == client_id
    ]


def summary_pairs(message: str) -> dict[str, str]:
    """The shutdown summary ``stopped key=value ...`` as a dict (more keys may come)."""
    word, _, pairs = message.partition(" ")
    assert word == "stopped", message
    return dict(pair.split("=", 1) for pair in pairs.split())


SUMMARY = {"published": "1", "delivered": "1", "slow_disconnects": "0"}


async def send(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
    async with session.request(method, url, **kwargs) as response:
        await response.read()
        return response.status


# -- JSON format, the whole life of a hub -------------------------------------------------------


async def test_json_logs_have_one_object_per_line_for_start_connects_rejections_disconnects_and_shutdown(
    hub_process: HubStarter,
) -> None:
    hub = hub_process(env=JSON_ENV)
    data_marker = f"data-{secrets.token_hex(8)}"
    token_marker = f"token-{secrets.token_hex(8)}"
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, f"{hub.url}/events/news?token={token_marker}") as first:
            first_id = client_id_of(first)
            status = await send(
                session,
                "POST",
                f"{hub.url}/broadcast",
                json={"channel": "news", "data": data_marker},
                headers={"Authorization": f"Bearer {token_marker}"},
            )
            assert status == 202
            assert (await first.next_message()).data == data_marker
        await wait_until(lambda: bool(lines_about(json_lines(hub, complete_only=True), "disconnect", first_id)))

        for method, path, kwargs, expected in REJECTED:
            if "data" in kwargs:
                kwargs = {**kwargs, "data": kwargs["data"].replace(b"MARKER", data_marker.encode())}
            assert await send(session, method, f"{hub.url}{path}", **kwargs) == expected, path

        async with open_stream(session, f"{hub.url}/events/news") as second:
            second_id = client_id_of(second)
            assert await asyncio.to_thread(hub.stop) == 0
            await second.read_until_closed()

    entries = json_lines(hub)
    messages = [entry["message"] for entry in entries]
    assert messages[0] == f"listening on http://127.0.0.1:{hub.port} broker=memory"
    assert summary_pairs(messages[-1]).items() >= SUMMARY.items()  # the shutdown summary comes last
    for client_id, reason in ((first_id, "disconnected"), (second_id, "shutdown")):
        (connect,) = lines_about(entries, "connect", client_id)
        assert connect["level"] == "info"
        assert (fields(connect)["ip"], fields(connect)["channels"]) == ("127.0.0.1", "news")
        (disconnect,) = lines_about(entries, "disconnect", client_id)
        assert disconnect["level"] == "info"
        assert fields(disconnect)["reason"] == reason
    for method, path, _, status in REJECTED:
        assert any(
            entry["level"] in ("info", "warning") and path in entry["message"] and f" {status}" in entry["message"]
            for entry in entries
        ), f"no log line for {method} {path} -> {status}"
    assert data_marker not in hub.log()
    assert token_marker not in hub.log()


# -- text format and levels ----------------------------------------------------------------------


async def one_subscriber_session(hub: HubProcess, data: str) -> str:
    """Connect, receive one published message, disconnect, wait until the hub saw it go;
    returns the client id."""
    async with aiohttp.ClientSession() as session:
        async with open_stream(session, f"{hub.url}/events/news") as stream:
            client_id = client_id_of(stream)
            status = await send(session, "POST", f"{hub.url}/broadcast", json={"channel": "news", "data": data})
            assert status == 202
            assert (await stream.next_message()).data == data

        async def released() -> bool:
            async with session.get(f"{hub.url}/stats") as response:
                return (await response.json())["total_clients"] == 0

        await eventually(released)
    return client_id


async def test_text_logs_are_one_readable_line_per_record(hub_process: HubStarter) -> None:
    hub = hub_process()
    marker = f"data-{secrets.token_hex(8)}"
    client_id = await one_subscriber_session(hub, marker)
    assert await asyncio.to_thread(hub.stop) == 0
    lines = hub.log().splitlines()
    for line in lines:
        assert TEXT_LINE.fullmatch(line), line
    assert lines[0].endswith(f" INFO sse_hub: listening on http://127.0.0.1:{hub.port} broker=memory")
    assert any(
        line.endswith(f" INFO sse_hub.core.hub: connect client={client_id} ip=127.0.0.1 channels=news")
        for line in lines
    )
    assert any(f"INFO sse_hub.core.hub: disconnect client={client_id} reason=disconnected " in line for line in lines)
    head, _, summary = lines[-1].partition(" INFO sse_hub: ")
    assert head and summary_pairs(summary).items() >= SUMMARY.items()
    assert marker not in hub.log()


async def test_log_level_warning_leaves_out_connects_disconnects_and_access_lines(
    hub_process: HubStarter,
) -> None:
    hub = hub_process(env={**JSON_ENV, "SSE_HUB_LOG__LEVEL": "warning"})
    await one_subscriber_session(hub, "hello")
    assert await asyncio.to_thread(hub.stop) == 0
    entries = json_lines(hub)
    assert [entry for entry in entries if entry["level"] in ("debug", "info")] == []
    assert "connect client=" not in hub.log()


async def test_json_logs_hold_no_token_from_a_request_aiohttp_cannot_parse(hub_process: HubStarter) -> None:
    hub = hub_process(env=JSON_ENV)
    token = f"token-{secrets.token_hex(8)}"
    reader, writer = await asyncio.open_connection("127.0.0.1", hub.port)
    try:
        # A DEL byte in the request target: aiohttp refuses it and logs the raw line.
        writer.write(f"GET /events/news?token={token}\x7f HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        async with asyncio.timeout(5):
            assert (await reader.readline()).split(b" ")[1] == b"400"
    finally:
        writer.close()
    assert await asyncio.to_thread(hub.stop) == 0
    entries = json_lines(hub)
    assert any(entry["logger"] == "aiohttp.server" and "token=[redacted]" in entry["message"] for entry in entries)
    assert token not in hub.log()
