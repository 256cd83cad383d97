"""The Mercure endpoint end to end: both protocols, on the memory broker and on Redis.

Each test gets two hubs, ``a`` and ``b``: on memory they are one instance; on Redis two
instances sharing one prefix, so an update published to ``a`` is received, live and in
replay, by a subscriber of ``b``. An update that must not arrive is checked by publishing
a public marker after it and reading the marker next (no waiting out a timeout).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import jwt
import pytest
from aiohttp.test_utils import TestClient

from sse_hub.config.settings import ConfigError, load_settings
from sse_hub.web.app import create_app
from tests.support.http import expect_error
from tests.support.plugin import HubsFactory
from tests.support.settings import make_settings
from tests.support.sse_client import EventStream

SECRET = "!ChangeThisMercureHubJWTSecretKey!"
HUB = "/.well-known/mercure"
BOOKS = "https://example.com/books"
MERCURE = {"enabled": True, "publisher_jwt": {"secret": SECRET}, "anonymous": True}


def legacy_token(publish: list[str] | None = None, subscribe: list[str] | None = None, **claims: Any) -> str:
    mercure: dict[str, list[str]] = {}
    if publish is not None:
        mercure["publish"] = publish
    if subscribe is not None:
        mercure["subscribe"] = subscribe
    return jwt.encode({"mercure": mercure, **claims}, SECRET, algorithm="HS256")


def access_token(subscribe: list[str], **claims: Any) -> str:
    """A protocol 1.0 (RFC 9068) token, as the 1.0 conformance suite builds it."""
    detail = {
        "type": "https://mercure.rocks/authorization-detail",
        "actions": ["subscribe"],
        "topics": [{"match": topic} for topic in subscribe],
    }
    body = {
        "aud": "https://localhost/.well-known/mercure",
        "iss": "https://localhost",
        "exp": int(time.time()) + 600,
        "authorization_details": [detail],
        **claims,
    }
    return jwt.encode(body, SECRET, algorithm="HS256", headers={"typ": "at+jwt"})


PUBLISHER = legacy_token(publish=["*"])


@dataclass
class Hubs:
    a: TestClient[Any, Any]
    b: TestClient[Any, Any]

    async def publish(self, topics: list[str], data: str = "", **fields: str) -> str:
        form = [("topic", topic) for topic in topics] + [("data", data), *fields.items()]
        response = await self.a.post(
            HUB,
            data=urlencode(form),
            headers={"Authorization": f"Bearer {PUBLISHER}", "Content-Type": "application/x-www-form-urlencoded"},
        )
        body = await response.text()
        assert response.status == 200, body
        assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
        return body

    @contextlib.asynccontextmanager
    async def subscribe(
        self, query: list[tuple[str, str]], headers: dict[str, str] | None = None
    ) -> AsyncIterator[tuple[EventStream, aiohttp.ClientResponse]]:
        response = await self.b.get(
            f"{HUB}?{urlencode(query)}", headers=headers, timeout=aiohttp.ClientTimeout(total=None, sock_read=30)
        )
        try:
            assert response.status == 200, await response.text()
            assert response.headers["Content-Type"] == "text/event-stream; charset=utf-8"
            yield EventStream(response), response
        finally:
            response.close()


@pytest.fixture(params=["memory", "redis"])
async def hubs(request: pytest.FixtureRequest, start_hubs: HubsFactory) -> Hubs:
    return Hubs(*await start_hubs(request.param, mercure=MERCURE))


@pytest.fixture(params=["memory", "redis"])
async def paged_hubs(request: pytest.FixtureRequest, start_hubs: HubsFactory) -> Hubs:
    """Replays read two updates a page (client_buffer_bytes // max_message_bytes)."""
    limits = {"max_message_bytes": 4096, "client_buffer_bytes": 8192}
    return Hubs(*await start_hubs(request.param, mercure=MERCURE, limits=limits))


async def test_draft07_templates_and_exact_topics_deliver_once_with_hub_ids(hubs: Hubs) -> None:
    query = [("topic", f"{BOOKS}/{{id}}"), ("topic", f"{BOOKS}/1")]
    async with hubs.subscribe(query) as (stream, _):
        # Both selectors and both topics match: delivered once; a blank line in data survives.
        hub_id = await hubs.publish([f"{BOOKS}/1", "https://example.com/other"], "one\n\ntwo")
        assert hub_id.startswith("#") and int(hub_id[1:]) >= 1
        assert (await hubs.publish(["https://example.com/other"], "no")).startswith("#")
        own = await hubs.publish([f"{BOOKS}/2"], "three", id="urn:uuid:3", type="book")
        assert own == "urn:uuid:3"
        first, second = await stream.take(2)
    assert (first.id, first.data, first.event) == (hub_id, "one\n\ntwo", "message")
    assert (second.id, second.data, second.event) == ("urn:uuid:3", "three", "book")


async def test_v1_match_and_urlpattern_on_alternate_topics(hubs: Hubs) -> None:
    query = [("match", "https://example.com/alt"), ("match_urlpattern", f"{BOOKS}/:id")]
    async with hubs.subscribe(query) as (stream, _):
        await hubs.publish(["https://example.com/canonical", "https://example.com/alt"], "by alternate")
        await hubs.publish([f"{BOOKS}/1/chapters"], "not this one")
        await hubs.publish([f"{BOOKS}/7"], "by pattern")
        first, second = await stream.take(2)
    assert [first.data, second.data] == ["by alternate", "by pattern"]


async def test_private_updates_reach_only_granted_subscribers_live(hubs: Hubs) -> None:
    topic = f"{BOOKS}/secret"
    granted = {"Authorization": f"Bearer {legacy_token(subscribe=[f'{BOOKS}/{{id}}'])}"}
    cookie = {"Cookie": f"mercureAuthorization={legacy_token(subscribe=['*'])}"}
    async with (
        hubs.subscribe([("topic", topic)]) as (anonymous, _),
        hubs.subscribe([("topic", topic)], granted) as (with_header, _),
        hubs.subscribe([("topic", topic)], cookie) as (with_cookie, _),
        hubs.subscribe([("match", topic)], {"Authorization": f"Bearer {access_token([topic])}"}) as (v1, _),
        hubs.subscribe([("topic", topic), ("authorization", legacy_token(subscribe=[topic]))]) as (in_query, _),
    ):
        await hubs.publish([topic], "private", private="")  # present, even empty: private
        await hubs.publish([topic], "public")
        assert (await anonymous.next()).data == "public"
        for stream in (with_header, with_cookie, v1, in_query):
            assert [event.data for event in await stream.take(2)] == ["private", "public"]


async def test_replay_from_a_publisher_id_with_the_draft07_header(hubs: Hubs) -> None:
    topic = f"{BOOKS}/1"
    await hubs.publish([topic], "before", id="first")
    await hubs.publish([topic], "secret", private="on")
    await hubs.publish(["https://example.com/elsewhere"], "elsewhere")
    last = await hubs.publish([topic], "after")
    async with hubs.subscribe([("topic", topic)], {"Last-Event-ID": "first"}) as (stream, response):
        assert response.headers["Last-Event-ID"] == "first"
        replayed = await stream.next()
        await hubs.publish([topic], "live")
        live = await stream.next()
    assert (replayed.id, replayed.data) == (last, "after")  # the private one was skipped
    assert live.data == "live"


async def test_replay_with_the_query_cursor_and_the_private_grant(hubs: Hubs) -> None:
    topic = f"{BOOKS}/1"
    start = await hubs.publish([topic], "start")
    await hubs.publish([topic], "secret", private="on")
    token = legacy_token(subscribe=[topic])
    query = [("topic", topic), ("lastEventID", start)]
    async with hubs.subscribe(query, {"Authorization": f"Bearer {token}"}) as (stream, response):
        assert response.headers["Last-Event-ID"] == start
        assert (await stream.next()).data == "secret"


async def test_v1_replay_header_and_earliest_rules(hubs: Hubs) -> None:
    topic = f"{BOOKS}/1"
    first = await hubs.publish([topic], "one")
    await hubs.publish([topic], "two")
    async with hubs.subscribe([("match", topic), ("last_event_id", first)]) as (stream, response):
        assert response.headers["Mercure-Last-Event-ID"] == first
        assert "Last-Event-ID" not in response.headers
        assert (await stream.next()).data == "two"
    for cursor in ("earliest", "unknown-id", "#999999999"):
        async with hubs.subscribe([("match", topic), ("last_event_id", cursor)]) as (stream, response):
            assert response.headers["Mercure-Last-Event-ID"] == "earliest"
            assert [event.data for event in await stream.take(2)] == ["one", "two"]
    async with hubs.subscribe([("match", topic)]) as (stream, response):
        assert "Mercure-Last-Event-ID" not in response.headers  # no cursor, no header


async def test_publish_errors(hubs: Hubs) -> None:
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    body = urlencode({"topic": f"{BOOKS}/1", "data": "x"})
    response = await hubs.a.post(HUB, data=body, headers=form)
    await expect_error(response, 401)
    assert response.headers["WWW-Authenticate"] == "Bearer"
    bad = {**form, "Authorization": "Bearer not-a-token"}
    await expect_error(await hubs.a.post(HUB, data=body, headers=bad), 401)
    narrow = {**form, "Authorization": f"Bearer {legacy_token(publish=[f'{BOOKS}/1'])}"}
    two_topics = urlencode([("topic", f"{BOOKS}/1"), ("topic", f"{BOOKS}/2")])
    await expect_error(await hubs.a.post(HUB, data=two_topics, headers=narrow), 403)
    missing = {**form, "Authorization": f"Bearer {PUBLISHER}"}
    await expect_error(await hubs.a.post(HUB, data="data=x", headers=missing), 400)
    json_body = {"Authorization": f"Bearer {PUBLISHER}"}
    await expect_error(await hubs.a.post(HUB, json={"topic": "x"}, headers=json_body), 415)


async def test_subscribe_errors(hubs: Hubs) -> None:
    await expect_error(await hubs.b.get(HUB), 400)
    await expect_error(await hubs.b.get(f"{HUB}?topic=a&match=b"), 400)
    # A bad or expired token is refused even though anonymous subscribers are allowed.
    expired = legacy_token(subscribe=["*"], exp=int(time.time()) - 60)
    for token in ("garbage", expired):
        response = await hubs.b.get(f"{HUB}?topic=a", headers={"Authorization": f"Bearer {token}"})
        await expect_error(response, 401)
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


async def test_token_expiry_closes_the_stream(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(mercure=MERCURE)))
    hubs = Hubs(client, client)
    token = legacy_token(subscribe=["*"], exp=int(time.time()) + 2)
    async with hubs.subscribe([("topic", "a")], {"Authorization": f"Bearer {token}"}) as (stream, _):
        await stream.read_until_closed(timeout=15)


async def test_anonymous_false_needs_a_token(aiohttp_client: Any) -> None:
    settings = make_settings(mercure={**MERCURE, "anonymous": False})
    client = await aiohttp_client(create_app(settings))
    await expect_error(await client.get(f"{HUB}?topic=a"), 401)


async def test_plain_channels_and_mercure_are_separate(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(mercure=MERCURE)))
    hubs = Hubs(client, client)
    async with hubs.subscribe([("topic", "*")]) as (stream, _):
        response = await client.post("/broadcast", json={"data": "to every channel client"})
        assert response.status == 202
        await hubs.publish(["a"], "mercure")
        assert (await stream.next()).data == "mercure"


async def test_the_endpoint_exists_only_when_enabled(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(make_settings()))
    assert (await client.get(f"{HUB}?topic=a")).status == 404


def test_enabled_needs_a_publisher_key() -> None:
    with pytest.raises(ConfigError, match="publisher_jwt"):
        load_settings(environ={"SSE_HUB_MERCURE__ENABLED": "true"})


async def test_a_hostile_template_subscription_does_not_stall_the_hub(hubs: Hubs) -> None:
    """Twenty adjacent expressions and a long topic that fails at its end: a backtracking
    engine would hold the event loop (dispatch is synchronous) far past the test timeout;
    on RE2 the marker published next arrives."""
    template = "https://example.com/" + "".join(f"{{v{i}}}" for i in range(20)) + "/end"
    async with hubs.subscribe([("topic", template)]) as (stream, _):
        await hubs.publish(["https://example.com/" + "a," * 1000 + "!end"], "hostile")
        await hubs.publish(["https://example.com/x/end"], "marker")
        assert (await stream.next()).data == "marker"


async def test_cors_allows_credentials_only_for_listed_origins(aiohttp_client: Any) -> None:
    origin = "https://app.example.com"
    listed = await aiohttp_client(create_app(make_settings(mercure=MERCURE, server={"cors_origins": [origin]})))
    async with Hubs(listed, listed).subscribe([("topic", "a")], {"Origin": origin}) as (_, response):
        assert response.headers["Access-Control-Allow-Origin"] == origin
        assert response.headers["Access-Control-Allow-Credentials"] == "true"
        assert "Mercure-Last-Event-ID" in response.headers["Access-Control-Expose-Headers"]
    anyone = await aiohttp_client(create_app(make_settings(mercure=MERCURE, server={"cors_origins": ["*"]})))
    async with Hubs(anyone, anyone).subscribe([("topic", "a")], {"Origin": origin}) as (_, response):
        assert response.headers["Access-Control-Allow-Origin"] == "*"
        assert "Access-Control-Allow-Credentials" not in response.headers


async def test_openapi_lists_the_endpoint_when_enabled(aiohttp_client: Any) -> None:
    client = await aiohttp_client(create_app(make_settings(mercure=MERCURE)))
    document = await (await client.get("/openapi.json")).json()
    operations = document["paths"][HUB]
    assert set(operations) == {"get", "post"}
    assert "topic" in {parameter["name"] for parameter in operations["get"]["parameters"]}


async def test_a_paged_replay_skips_pages_the_subscriber_may_not_see(paged_hubs: Hubs) -> None:
    topic = f"{BOOKS}/1"
    first = await paged_hubs.publish([topic], "0")
    for index in range(1, 8):  # pages of two: the second and third hold only private updates
        await paged_hubs.publish([topic], str(index), **({"private": "on"} if 1 <= index <= 4 else {}))
    async with paged_hubs.subscribe([("topic", topic), ("lastEventID", first)]) as (stream, response):
        assert response.headers["Last-Event-ID"] == first
        assert [event.data for event in await stream.take(3)] == ["5", "6", "7"]
        await paged_hubs.publish([topic], "live")
        assert (await stream.next()).data == "live"
