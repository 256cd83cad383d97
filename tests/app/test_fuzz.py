"""Property/fuzz tests (hypothesis) against one hub that every test attacks in turn.

Properties, for thousands of generated requests:

- never a 5xx; every 4xx the hub answers has a JSON body ``{"error", "detail"}``;
- no event name or payload (CR, LF, NUL, ``data:`` lines, lone surrogates...) can put a
  second event, or any field, into a stream: after each case a sentinel is published and
  the stream must hold exactly the expected events before it (``SseParser``, from the spec);
- ``Last-Event-ID`` and query garbage get a stream (with a ``reset`` when the id is not
  one of ours) or a 4xx, and a replay that is exactly the broker's history, nothing more;
- at the end the same hub is healthy: ``/healthz``, publish and receive, no leaked client.

The hub and its event loop are shared by the whole module on purpose (the last test checks
the hub everything else attacked). Example counts are bounded by ``FUZZ``; set
``SSE_HUB_FUZZ_SCALE=10`` for a deeper run. Each test adds its count of cases to ``CASES``,
printed at the end of the module.
"""

from __future__ import annotations

import json
import os
import re
import string
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from sse_hub.messages.message import GLOBAL_CHANNEL, is_valid_channel, parse_event_id
from sse_hub.web.app import create_app
from sse_hub.web.state import HUB
from tests.support.http import open_stream
from tests.support.raw_http import raw_request
from tests.support.settings import make_settings
from tests.support.sse_client import EventStream
from tests.support.waiting import wait_until

pytestmark = pytest.mark.asyncio(loop_scope="module")

SCALE = float(os.environ.get("SSE_HUB_FUZZ_SCALE", "1"))
# The profile for every test here: no deadline (CI machines stall at times), the shared
# hub and stream fixtures are meant to outlive one example.
FUZZ = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


def budget(examples: int) -> settings:
    return settings(FUZZ, max_examples=max(1, int(examples * SCALE)))


CASES: Counter[str] = Counter()
HISTORY_SIZE = 20
# What the replay test expects, recorded as it is published (not read back from the
# broker): message id -> (event name, data as sent), per stored channel.
STORED: dict[str, dict[int, tuple[str, object]]] = {GLOBAL_CHANNEL: {}, "lei": {}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hub() -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(make_settings(history={"size": HISTORY_SIZE}, demo_page=False))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def secured_hub() -> AsyncIterator[TestClient[Any, Any]]:
    """A second hub with every credential configured, for garbage credentials."""
    auth = {
        "publish_tokens": ["publish-token-0123456789abcdef"],
        "admin_tokens": ["admin-token-0123456789abcdef"],
        "subscriber_jwt": {"secret": "subscriber-secret-0123456789abcdef-0123456789"},
    }
    app = create_app(make_settings(auth=auth, demo_page=False, server={"cors_origins": ["https://app.example"]}))
    async with TestClient(TestServer(app)) as client:
        yield client


@pytest.fixture(scope="module", autouse=True)
def report_cases(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    summary = ", ".join(f"{name}={count}" for name, count in CASES.items())
    line = f"fuzz cases tried: {summary} (total {sum(CASES.values())})"
    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    # Fixture teardown output is captured; this line is for the person running the suite.
    with capture.global_and_fixture_disabled():
        reporter.write_line("\n" + line)


async def check_error_body(response: Any) -> None:
    """A 4xx from the hub carries ``{"error", "detail"}``; nothing is ever a 5xx."""
    assert response.status < 500, await response.text()
    if response.status >= 400:
        payload = await response.json(content_type=None)
        assert set(payload) == {"error", "detail"}, payload


# -- strategies -------------------------------------------------------------------------

LINE_BREAKS = st.sampled_from(["\r", "\n", "\r\n", "\n\r", "\x00", "\r\r", "\n\n"])
FIELD_LIKE = st.sampled_from(
    ["data: injected", "event: injected", "id: 999999", "retry: 1", ":comment", "data:", "id", " ", ""]
)
# Text built to break framing: fragments of field lines glued with line breaks and NULs.
HOSTILE_TEXT = st.lists(st.one_of(LINE_BREAKS, FIELD_LIKE, st.text(max_size=6)), max_size=10).map("".join)
SURROGATE = st.sampled_from(["\ud800", "\udfff", "a\udc80b"])
ANY_TEXT = st.one_of(st.text(max_size=40), HOSTILE_TEXT, SURROGATE)

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=False, allow_infinity=False),
    ANY_TEXT,
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
CHANNELISH = st.one_of(
    st.sampled_from(["fuzz", "a.b", "*", "", "x" * 129, "bad name", "a/b", "ü"]), st.text(max_size=12)
)
FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "data": JSON_VALUES,
    "event": ANY_TEXT,
    "channel": CHANNELISH,
    "channels": st.lists(CHANNELISH, max_size=3) | JSON_VALUES,
    "retry": st.one_of(st.integers(min_value=-5, max_value=86_400_005), JSON_VALUES),
    "client_id": ANY_TEXT,
    "exclude_client_id": ANY_TEXT,
    "id": ANY_TEXT,
    "extra": JSON_VALUES,
}
MESSAGE_LIKE = st.fixed_dictionaries({}, optional={key: values for key, values in FIELD_VALUES.items()}).map(
    lambda fields: json.dumps(fields).encode()
)


def raw_number(digits: str) -> bytes:
    return b'{"data": ' + digits.encode() + b', "channel": "fuzz-numbers"}'


HUGE_NUMBERS = st.one_of(
    st.integers(min_value=1, max_value=20_000).map(lambda n: raw_number("9" * n)),
    st.sampled_from(["1e400", "-1e400", "1e-400", "1E+999999999", "-0", "0.0000000000000000000001e-300"]).map(
        raw_number
    ),
    st.integers(min_value=1, max_value=5000).map(lambda n: raw_number("0." + "1" * n)),
)
DEEP_NESTING = st.integers(min_value=1, max_value=20_000).flatmap(
    lambda depth: st.sampled_from(
        [
            b"[" * depth + b"]" * depth,
            b'{"data": ' + b"[" * depth + b"]" * depth + b"}",
            b'{"data": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}",
            b"[" * depth,  # never closed
        ]
    )
)
INVALID_UTF8 = st.binary(min_size=1, max_size=20).map(lambda junk: b'{"data": "' + junk + b'", "channel": "fuzz"}')
BODIES = st.one_of(
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    MESSAGE_LIKE,
    st.lists(MESSAGE_LIKE, max_size=4).map(lambda items: b"[" + b",".join(items) + b"]"),
    HUGE_NUMBERS,
    DEEP_NESTING,
    INVALID_UTF8,
    st.binary(max_size=200),
)
CONTENT_TYPES = st.sampled_from(
    ["application/json"] * 6 + ["application/merge-patch+json", "text/plain", "", "application/json; charset=latin-1"]
)


# -- publish bodies ---------------------------------------------------------------------


@budget(1500)
@given(body=BODIES, content_type=CONTENT_TYPES)
async def test_no_publish_body_is_a_server_error(hub: TestClient[Any, Any], body: bytes, content_type: str) -> None:
    CASES["publish_bodies"] += 1
    headers = {"Content-Type": content_type} if content_type else {}
    response = await hub.post("/broadcast", data=body, headers=headers)
    await check_error_body(response)
    if response.status not in (200, 202):
        return
    receipts = await response.json()
    items = json.loads(body)
    for receipt, item in zip(*((receipts, items) if isinstance(items, list) else ([receipts], [items])), strict=True):
        assert parse_event_id(receipt["id"]) is not None, receipt
        await check_stored_data(hub, receipt, item["data"])
        if receipt["channels"] == [GLOBAL_CHANNEL]:
            STORED[GLOBAL_CHANNEL][int(receipt["id"])] = (item.get("event", "message"), item["data"])


def refuse_constant(name: str) -> object:
    raise AssertionError(f"{name} is not JSON")


async def check_stored_data(hub: TestClient[Any, Any], receipt: dict[str, Any], sent: object) -> None:
    """What subscribers will get: a string verbatim; anything else as strict JSON (no
    ``NaN``/``Infinity``, which no JSON parser reads) equal to what was sent."""
    if not receipt["channels"]:
        return  # a direct message: not stored
    message_id = int(receipt["id"])
    history = await hub.server.app[HUB].broker.history(receipt["channels"], message_id - 1)
    [stored] = [message for message in history.messages if message.id == message_id]
    if isinstance(sent, str):
        assert stored.data == sent
    else:
        assert json.loads(stored.data, parse_constant=refuse_constant) == sent


# -- injection through event names and data ---------------------------------------------


def client_view(data: str) -> str:
    """What an EventSource reassembles: ``data:`` lines joined with LF (CR and CRLF become LF)."""
    return re.sub(r"\r\n|\r", "\n", data)


def event_name_is_valid(event: str) -> bool:
    return (
        0 < len(event) <= 128
        and not any(char in event for char in "\r\n\x00")
        and not any(is_lone_surrogate(char) for char in event)
    )


def is_lone_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


def has_surrogate(value: object) -> bool:
    """Whether a lone surrogate (JSON ``"\\ud800"``, not valid Unicode) hides in ``value``."""
    if isinstance(value, str):
        return any(is_lone_surrogate(char) for char in value)
    if isinstance(value, list):
        return any(has_surrogate(item) for item in value)
    if isinstance(value, dict):
        return any(has_surrogate(key) or has_surrogate(item) for key, item in value.items())
    return False


@pytest_asyncio.fixture(loop_scope="module")
async def inject_stream(hub: TestClient[Any, Any]) -> AsyncIterator[EventStream]:
    async with open_stream(hub, "/events/inject") as stream:
        yield stream


async def events_until_sentinel(hub: TestClient[Any, Any], stream: EventStream, target: dict[str, str]) -> list[Any]:
    """Publish a sentinel to ``target`` and return every event the stream got before it."""
    response = await hub.post("/broadcast", json={**target, "event": "sentinel", "data": "sentinel"})
    assert response.status == 202, await response.text()
    sentinel_id = (await response.json())["id"]
    before = []
    while True:
        event = await stream.next()
        if event.event == "sentinel":
            assert event.id == sentinel_id and event.data == "sentinel", event
            return before
        before.append(event)


@budget(700)
@given(
    event=st.one_of(ANY_TEXT, st.just("message"), st.text(min_size=120, max_size=140)) | st.none(),
    data=st.one_of(ANY_TEXT, JSON_VALUES, st.lists(HOSTILE_TEXT, max_size=3)),
    with_id=st.booleans(),
)
async def test_no_event_name_or_data_injects_an_event(
    hub: TestClient[Any, Any], inject_stream: EventStream, event: str | None, data: Any, with_id: bool
) -> None:
    CASES["event_and_data_injection"] += 1
    message: dict[str, Any] = {"channel": "inject", "data": data}
    if event is not None:
        message["event"] = event
    if with_id:
        message["id"] = "42\n\ndata: injected"  # publishers cannot set ids at all
    valid = (event is None or event_name_is_valid(event)) and not has_surrogate(data) and not with_id
    response = await hub.post("/broadcast", json=message)
    await check_error_body(response)
    assert (response.status == 202) is valid, (response.status, await response.text())
    received = await events_until_sentinel(hub, inject_stream, {"channel": "inject"})
    if not valid:
        assert received == []
        return
    receipt_id = (await response.json())["id"]
    [got] = received
    assert (got.id, got.event) == (receipt_id, event or "message")
    if isinstance(data, str):
        assert got.data == client_view(data)
    else:
        assert "\n" not in got.data and got.json() == data


# -- channel names ----------------------------------------------------------------------

CHANNEL_NAMES = st.one_of(
    st.text(max_size=140),
    st.text(alphabet=string.ascii_letters + string.digits + "_.:@-", min_size=1, max_size=130),
    st.text(alphabet=string.punctuation + " \t\r\n\x00\x7f", max_size=10),
    st.sampled_from(["*", ".", "..", "%", "%2F", "a/b", "a?b", "a#b", "x" * 128, "x" * 129, "\u00e9", "\ufeff"]),
)


@budget(600)
@given(name=CHANNEL_NAMES, form=st.sampled_from(["path", "query", "comma"]))
async def test_any_channel_name_is_a_stream_or_a_4xx(hub: TestClient[Any, Any], name: str, form: str) -> None:
    CASES["channel_names"] += 1
    if form == "path":
        target = "/events/" + quote(name, safe="", errors="surrogatepass")
    else:
        key = "channel" if form == "query" else "channels"
        target = "/events?" + urlencode({key: name}, errors="surrogatepass")
    response = await hub.get(URL(target, encoded=True))
    try:
        await check_error_body(response)
        names = [n for n in name.split(",") if n] if form == "comma" else [name]
        valid = bool(names) and all(is_valid_channel(n) for n in names) and len(set(names)) <= 64
        if form == "path" and name in (".", ".."):
            return  # dot segments: the URL is normalised before routing; not a channel name
        if valid:
            assert response.status == 200, (target, response.status)
            stream = EventStream(response)
            connected = (await stream.connected()).json()
            assert connected["channels"] == list(dict.fromkeys(names))  # type: ignore[index]
        else:
            assert 400 <= response.status < 500, (target, response.status)
    finally:
        response.close()


# -- Last-Event-ID and query strings ----------------------------------------------------

ID_LIKE = st.one_of(
    st.integers(min_value=0, max_value=10**25).map(str),
    st.sampled_from(["", "0", "00012", "-1", "1e3", " 5", "5 ", "0x10", "\u0661\u0662", "NaN", "9" * 19, "9" * 20]),
    # Printable only: control bytes in headers are the raw header test's business.
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30),
)
QUERY_KEYS = st.sampled_from(
    ["channel", "channels", "last_event_id", "lastEventId", "token", "ticket", "limit", "x", "", "channel[]"]
)
QUERY_PAIRS = st.lists(st.tuples(QUERY_KEYS | st.text(max_size=8), ID_LIKE | CHANNEL_NAMES), max_size=6)
RAW_QUERY = st.text(alphabet=string.ascii_letters + string.digits + "%&=;+?/#[]-._~!$'()*,", max_size=60)


def expected_last_event_id(header: str | None, query: list[tuple[str, str]]) -> str | None:
    """The contract: the header, else ``?last_event_id=``, else ``?lastEventId=`` (first of each)."""
    values = dict(reversed(query))  # the first occurrence wins, as with MultiDict.get
    if header is not None:
        header = header.strip(" \t")  # the HTTP parser drops optional whitespace around values
    return header or values.get("last_event_id") or values.get("lastEventId") or None


def expected_replay(after_id: int) -> tuple[list[tuple[int, str, object]], bool]:
    """The retained messages of ``lei`` and ``*`` newer than ``after_id`` in id order, and
    whether a newer one was evicted: from what was published, not from the broker."""
    retained: list[tuple[int, str, object]] = []
    expired = False
    for messages in STORED.values():
        ids = sorted(messages)
        expired = expired or any(message_id > after_id for message_id in ids[:-HISTORY_SIZE])
        retained += [(message_id, *messages[message_id]) for message_id in ids[-HISTORY_SIZE:] if message_id > after_id]
    return sorted(retained, key=lambda message: message[0]), expired


async def check_stream_replay(
    hub: TestClient[Any, Any], stream: EventStream, channels: list[str], last_event_id: str | None
) -> None:
    """After ``connected``: the ``reset`` the contract asks for (if any), then exactly the
    retained messages newer than the id, in id order, then the sentinel; nothing else."""
    connected = (await stream.connected()).json()
    assert connected["channels"] == channels  # type: ignore[index]
    received = await events_until_sentinel(hub, stream, {"client_id": connected["client_id"]})  # type: ignore[index]
    replay: list[tuple[int, str, object]] = []
    reason = ""
    if last_event_id:
        after_id = parse_event_id(last_event_id)
        reason = "unknown_id"
        if after_id is not None:
            replay, expired = expected_replay(after_id)
            # Only the highest id ever published comes from the broker.
            last_id = (await hub.server.app[HUB].broker.history((), 0)).last_id
            if after_id <= last_id:
                reason = "history_expired" if expired else ""
    if reason:
        reset = received.pop(0) if received else None
        assert reset is not None and (reset.id, reset.event) == (None, "reset"), reset
        assert reset.json() == {"reason": reason, "last_event_id": last_event_id}
    assert [int(event.id or 0) for event in received] == [message[0] for message in replay]
    for event, (_, name, sent) in zip(received, replay, strict=True):
        assert event.event == name
        if isinstance(sent, str):
            assert event.data == client_view(sent)
        else:
            assert event.json() == sent


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def replay_history(hub: TestClient[Any, Any]) -> None:
    """Messages to replay: more than ``history.size`` on ``lei``, so some ids are evicted."""
    for n in range(HISTORY_SIZE + 5):
        message = {"channel": "lei", "event": "e\u2028", "data": f"m{n}\r\nx"}
        response = await hub.post("/broadcast", json=message)
        assert response.status == 202
        STORED["lei"][int((await response.json())["id"])] = (message["event"], message["data"])


def near_stored_ids() -> st.SearchStrategy[str]:
    """Ids at and around the ones stored (evicted, retained, the newest): where an
    off-by-one in the replay would show."""
    stored = sorted(message_id for messages in STORED.values() for message_id in messages)
    return st.tuples(st.sampled_from(stored), st.integers(min_value=-2, max_value=2)).map(lambda pair: str(sum(pair)))


@budget(500)
@given(data=st.data(), pairs=QUERY_PAIRS, path_form=st.booleans())
async def test_last_event_id_and_query_garbage_never_inject_or_fail(
    hub: TestClient[Any, Any], replay_history: None, data: st.DataObject, pairs: list[tuple[str, str]], path_form: bool
) -> None:
    CASES["last_event_id_and_query"] += 1
    header = data.draw(st.none() | ID_LIKE | near_stored_ids(), label="Last-Event-ID")
    if data.draw(st.booleans(), label="query id near the stored ones"):
        pairs = [("last_event_id", data.draw(near_stored_ids())), *pairs]
    query = [pair for pair in pairs if pair[0] not in ("channel", "channels", "ticket", "token")]
    if not path_form:
        query = [("channel", "lei"), *query]
    target = ("/events/lei" if path_form else "/events") + "?" + urlencode(query, errors="surrogatepass")
    headers = {"Last-Event-ID": header} if header is not None else {}
    response = await hub.get(URL(target, encoded=True), headers=headers)
    try:
        await check_error_body(response)
        assert response.status == 200, (target, headers, await response.text())
        await check_stream_replay(hub, EventStream(response), ["lei"], expected_last_event_id(header, query))
    finally:
        response.close()


@budget(400)
@given(pairs=QUERY_PAIRS, raw=RAW_QUERY)
async def test_random_query_strings_are_a_stream_or_a_4xx(
    hub: TestClient[Any, Any], pairs: list[tuple[str, str]], raw: str
) -> None:
    CASES["random_query_strings"] += 1
    encoded = urlencode(pairs, errors="surrogatepass")
    for target in (f"/events?{encoded}", f"/events/q?{raw}", f"/events?{raw}"):
        response = await hub.get(URL(target, encoded=True))
        try:
            await check_error_body(response)
            if response.status == 200:
                stream = EventStream(response)
                connected = (await stream.connected()).json()
                received = await events_until_sentinel(hub, stream, {"client_id": connected["client_id"]})  # type: ignore[index]
                assert all(event.event == "reset" or parse_event_id(event.id or "") for event in received), received
        finally:
            response.close()


# -- header values of random sizes (raw bytes) ------------------------------------------

HEADER_NAMES = st.sampled_from(
    [b"User-Agent", b"Last-Event-ID", b"Cookie", b"Authorization", b"X-Forwarded-For", b"Origin", b"Accept", b"X-Z"]
)
HEADER_BYTES = bytes([9, *range(0x20, 0x7F), *range(0x80, 0x100)])
CREDENTIAL_PREFIXES = st.sampled_from([b"", b"Bearer ", b"bearer ", b"sse_hub_token=", b"a=1; sse_hub_token="])
HEADER_VALUES = st.one_of(
    st.binary(max_size=64).map(lambda raw: bytes(HEADER_BYTES[b % len(HEADER_BYTES)] for b in raw)),
    st.tuples(st.integers(min_value=0, max_value=12_000), st.sampled_from([b"a", b"\xff", b"%", b"9", b" "])).map(
        lambda size_and_byte: size_and_byte[1] * size_and_byte[0]
    ),
)


@budget(600)
@given(
    header=st.tuples(HEADER_NAMES, st.tuples(CREDENTIAL_PREFIXES, HEADER_VALUES).map(b"".join)),
    method=st.sampled_from([b"GET", b"POST", b"TICKET"]),
    secured=st.booleans(),
)
async def test_header_values_of_any_size_and_bytes_are_never_a_server_error(
    hub: TestClient[Any, Any],
    secured_hub: TestClient[Any, Any],
    header: tuple[bytes, bytes],
    method: bytes,
    secured: bool,
) -> None:
    CASES["header_values"] += 1
    name, value = header
    target = secured_hub if secured else hub
    if method == b"GET":
        head = b"GET /events/hdr HTTP/1.1\r\n"
        body = b""
    else:
        path = b"/broadcast" if method == b"POST" else b"/tickets"
        body = b'{"channels": ["hdr"], "data": 1}' if method == b"POST" else b'{"channels": ["hdr"]}'
        head = b"POST %b HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: %d\r\n" % (path, len(body))
    request = head + b"Host: 127.0.0.1\r\nConnection: close\r\n" + name + b": " + value + b"\r\n\r\n" + body
    reply = await raw_request(target.port, request)
    try:
        assert reply.status < 500, (name, value[:100], reply.status)
        # CORS: an unlisted Origin, whatever it holds, is never reflected.
        assert reply.headers.get("access-control-allow-origin") in (None, "*"), reply.headers
        if reply.is_stream:
            assert (await reply.next_event()).event == "connected"
        elif reply.status >= 400 and reply.headers.get("content-type", "").startswith("application/json"):
            assert set(await reply.json()) == {"error", "detail"}
    finally:
        reply.close()


# -- afterwards -------------------------------------------------------------------------


async def test_the_hub_is_healthy_after_the_fuzzing(hub: TestClient[Any, Any]) -> None:
    app_hub = hub.server.app[HUB]
    await wait_until(lambda: len(app_hub.registry) == 0, timeout=10)
    assert (await hub.get("/healthz")).status == 200
    assert (await hub.get("/readyz")).status == 200
    async with open_stream(hub, "/events/after") as stream:
        response = await hub.post("/broadcast", json={"channel": "after", "data": {"ok": True}})
        receipt = await response.json()
        assert response.status == 202, receipt
        event = await stream.next_message()
        assert (event.id, event.json()) == (receipt["id"], {"ok": True})
    stats = await (await hub.get("/stats")).json()
    assert stats["messages_published"] == app_hub.counters.messages_published
