"""One-time stream tickets: ``POST /tickets`` (publish or admin token) returns a ticket
that opens one stream, within its TTL, for its channels only; across instances in Redis
mode a ticket issued on one instance is redeemed once on any (two real processes:
tests/e2e/test_tickets.py)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from sse_hub.broker.local import MemoryTickets
from sse_hub.errors import TooManyTickets
from sse_hub.web.state import HUB, TICKETS
from tests.support.fakes import FakeClock
from tests.support.http import HubClientFactory, expect_error, open_stream
from tests.support.tokens import PUBLISH, SECRET, bearer
from tests.support.waiting import wait_until

TIMEOUT = 5

ADMIN = "admin-token-0123456789abcdef"
# Tickets exist only where subscribers need a credential.
ISSUER = {"publish_tokens": [PUBLISH], "subscriber_jwt": {"secret": SECRET}}


async def issue(
    client: TestClient[Any, Any], channels: list[str], ttl_seconds: int | None = None, token: str | None = PUBLISH
) -> str:
    body: dict[str, Any] = {"channels": channels}
    if ttl_seconds is not None:
        body["ttl_seconds"] = ttl_seconds
    response = await client.post("/tickets", json=body, headers=bearer(token) if token else {})
    payload = await response.json()
    assert response.status == 201, payload
    ticket: str = payload["ticket"]
    return ticket


# -- issuing ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        # no token, the publish token, the admin token, a wrong token
        ({"publish_tokens": [PUBLISH]}, (401, 201, 403, 403)),
        ({"admin_tokens": [ADMIN]}, (401, 403, 201, 403)),
        ({"publish_tokens": [PUBLISH], "admin_tokens": [ADMIN]}, (401, 201, 201, 403)),
        ({}, (403, 403, 403, 403)),
    ],
    ids=["publish-only", "admin-only", "both", "no-issuer-tokens"],
)
async def test_issuing_a_ticket_needs_a_publish_or_admin_token(
    hub_client: HubClientFactory, auth: dict[str, Any], expected: tuple[int, ...]
) -> None:
    """Tickets bypass the subscriber JWT, so a hub that asks subscribers for a JWT but has
    no issuer token configured issues none at all (else anyone could mint a ``*`` ticket)."""
    client = await hub_client(auth={**auth, "subscriber_jwt": {"secret": SECRET}})
    actual = []
    for token in (None, PUBLISH, ADMIN, "wrong-token-0123456789abcdef"):
        response = await client.post("/tickets", json={"channels": ["*"]}, headers=bearer(token) if token else {})
        actual.append(response.status)
        if response.status != 201:
            payload = await expect_error(response, response.status)
            if response.status == 401:
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert payload["error"] in ("unauthorized", "forbidden")
    assert tuple(actual) == expected


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        # no token, the publish token, the admin token, a wrong token
        ({}, (404, 404, 404, 404)),
        ({"publish_tokens": [PUBLISH]}, (401, 404, 403, 403)),
        ({"admin_tokens": [ADMIN]}, (401, 403, 404, 403)),
        ({"publish_tokens": [PUBLISH], "admin_tokens": [ADMIN]}, (401, 404, 404, 403)),
    ],
    ids=["no-auth-at-all", "publish-only", "admin-only", "both"],
)
async def test_tickets_are_404_when_subscriber_auth_is_off(
    hub_client: HubClientFactory, auth: dict[str, Any], expected: tuple[int, ...]
) -> None:
    """Every stream is open without ``auth.subscriber_jwt``: a ticket would open nothing
    more, so the hub stores none. Only a caller the token check lets through learns why."""
    client = await hub_client(auth=auth)
    actual = []
    for token in (None, PUBLISH, ADMIN, "wrong-token-0123456789abcdef"):
        response = await client.post("/tickets", json={"channels": ["*"]}, headers=bearer(token) if token else {})
        actual.append(response.status)
        payload = await expect_error(response, response.status)
        if response.status == 404:
            assert payload["error"] == "not_found"
            assert "subscriber_jwt" in payload["detail"]
    assert tuple(actual) == expected
    assert len(client.server.app[TICKETS]) == 0


async def test_a_ticket_comes_with_its_expiry(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=ISSUER)
    before = time.time()
    response = await client.post("/tickets", json={"channels": ["news"], "ttl_seconds": 30}, headers=bearer(PUBLISH))
    payload = await response.json()
    assert response.status == 201, payload
    assert {"ticket", "expires_at"} <= set(payload)
    assert len(payload["ticket"]) >= 32, "a ticket is unguessable"
    expires_at = datetime.fromisoformat(payload["expires_at"].replace("Z", "+00:00")).timestamp()
    assert before + 29 <= expires_at <= time.time() + 31
    assert payload["ticket"] != await issue(client, ["news"]), "every ticket is new"


async def test_a_ticket_is_valid_for_60_seconds_by_default(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=ISSUER)
    response = await client.post("/tickets", json={"channels": ["news"]}, headers=bearer(PUBLISH))
    payload = await response.json()
    expires_at = datetime.fromisoformat(payload["expires_at"].replace("Z", "+00:00")).timestamp()
    assert 55 <= expires_at - time.time() <= 61


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b"{}",
        b'"news"',
        b"null",
        b'{"channels": []}',
        b'{"channels": "news"}',
        b'{"channels": [1]}',
        b'{"channels": [null]}',
        b'{"channels": ["bad name"]}',
        b'{"channels": ["a\\nb"]}',
        b'{"channels": ["news*"]}',
        b'{"channels": ["*.*"]}',
        b'{"channels": ["' + b"x" * 129 + b'"]}',
        b'{"channels": ["news"], "ttl_seconds": 0}',
        b'{"channels": ["news"], "ttl_seconds": -1}',
        b'{"channels": ["news"], "ttl_seconds": 3601}',
        b'{"channels": ["news"], "ttl_seconds": "60"}',
        b'{"channels": ["news"], "ttl_seconds": 1.5}',
        b'{"channels": ["news"], "ttl_seconds": true}',
        b'{"channels": ["news"], "ttl_seconds": 1e400}',
        b'{"channels": ["news"], "ttl_seconds": 99999999999999999999999999}',
        b'{"channels": ["news"], "extra": 1}',
        b'{"channels": ["news"], "channels": 5}',
        b'{"channels": ["\\ud800"]}',
        b'{"channels": ["\xff"]}',
        b"\xff\xfe",
        json.dumps({"channels": [f"c{n}" for n in range(101)]}).encode(),
    ],
)
async def test_a_bad_ticket_request_is_400(hub_client: HubClientFactory, body: bytes) -> None:
    client = await hub_client(auth=ISSUER)
    response = await client.post("/tickets", data=body, headers={**bearer(PUBLISH), "Content-Type": "application/json"})
    await expect_error(response, 400)


async def test_a_ticket_request_that_is_not_json_is_415(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=ISSUER)
    response = await client.post(
        "/tickets", data=b'{"channels": ["news"]}', headers={**bearer(PUBLISH), "Content-Type": "text/plain"}
    )
    await expect_error(response, 415)


# -- the cap ----------------------------------------------------------------------------


async def test_past_max_tickets_issuing_is_503_until_one_is_used(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=ISSUER, limits={"max_tickets": 3})
    tickets = [await issue(client, ["news"]) for _ in range(3)]
    refused = await client.post("/tickets", json={"channels": ["news"]}, headers=bearer(PUBLISH))
    payload = await expect_error(refused, 503)
    assert payload["error"] == "too_many_tickets"
    assert "limits.max_tickets" in payload["detail"]
    assert int(refused.headers["Retry-After"]) >= 1
    async with open_stream(client, f"/events/news?ticket={tickets[0]}"):
        pass
    await issue(client, ["news"])  # the used ticket's position
    await expect_error(await client.post("/tickets", json={"channels": ["news"]}, headers=bearer(PUBLISH)), 503)


async def test_expired_tickets_are_swept_before_the_cap_refuses() -> None:
    clock = FakeClock()
    tickets = MemoryTickets(2, clock)
    await tickets.issue("short", ("news",), 10)
    await tickets.issue("long", ("news",), 60)
    with pytest.raises(TooManyTickets):
        await tickets.issue("third", ("news",), 60)
    clock.now += 10
    await tickets.issue("third", ("news",), 60)  # "short" expired and was swept
    with pytest.raises(TooManyTickets):
        await tickets.issue("fourth", ("news",), 60)
    assert await tickets.redeem("short") is None
    assert await tickets.redeem("long") == ("news",)
    assert await tickets.redeem("third") == ("news",)


async def test_used_tickets_leave_nothing_behind() -> None:
    """Each ticket sits in a dict and in a heap by expiry; a used one leaves the dict at
    once and the heap when it has grown to twice the live tickets, not after its TTL."""
    tickets = MemoryTickets(10, FakeClock())
    for n in range(5000):
        await tickets.issue(f"t{n}", ("news",), 3600)
        assert await tickets.redeem(f"t{n}") == ("news",)
    assert len(tickets) == 0
    assert len(tickets._expiries) < 2000, "the heap kept the used tickets"


# -- redeeming --------------------------------------------------------------------------


async def test_a_ticket_opens_one_stream_for_its_channels_then_is_spent(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=ISSUER)
    ticket = await issue(client, ["news", "stocks.*"])
    path = f"/events?channel=news&channel=stocks.eu&ticket={ticket}"
    async with open_stream(client, path) as stream:
        response = await client.post(
            "/broadcast", json={"channels": ["stocks.eu"], "data": "tick"}, headers=bearer(PUBLISH)
        )
        assert response.status == 202
        assert (await stream.next_message()).data == "tick"
        # A second use, while the first stream is still open, and after.
        await expect_error(await client.get(path), 401)
    await expect_error(await client.get(path), 401)


@pytest.mark.parametrize(
    ("granted", "path"),
    [
        (["news"], "/events/sport"),
        (["news"], "/events?channel=news&channel=sport"),
        (["stocks.*"], "/events/stocks"),
        (["news"], "/api/events"),
    ],
)
async def test_a_ticket_does_not_open_other_channels(
    hub_client: HubClientFactory, granted: list[str], path: str
) -> None:
    client = await hub_client(auth=ISSUER)
    ticket = await issue(client, granted)
    separator = "&" if "?" in path else "?"
    payload = await expect_error(await client.get(f"{path}{separator}ticket={ticket}"), 403)
    assert payload["error"] == "forbidden"
    assert len(client.server.app[HUB].registry) == 0


@pytest.mark.parametrize("ticket", ["", "nope", "x" * 5000, "%00", "..", "*"])
async def test_an_unknown_ticket_is_401(hub_client: HubClientFactory, ticket: str) -> None:
    client = await hub_client(auth=ISSUER)
    response = await client.get(f"/events/news?ticket={ticket}")
    await expect_error(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_an_expired_ticket_is_401(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth=ISSUER)
    issued_at = time.monotonic()
    ticket = await issue(client, ["news"], ttl_seconds=1)
    fresh = await issue(client, ["news"], ttl_seconds=60)
    # The broker measures the TTL on the monotonic clock: wait until 1 s has passed on it.
    await wait_until(lambda: time.monotonic() - issued_at > 1.05, timeout=3)
    await expect_error(await client.get(f"/events/news?ticket={ticket}"), 401)
    async with open_stream(client, f"/events/news?ticket={fresh}"):
        pass


async def test_a_ticket_needs_no_jwt_and_a_jwt_hub_still_refuses_streams_without_either(
    hub_client: HubClientFactory,
) -> None:
    client = await hub_client(auth=ISSUER)
    await expect_error(await client.get("/events/news"), 401)
    ticket = await issue(client, ["news"])
    async with open_stream(client, f"/events/news?ticket={ticket}"):
        pass


async def test_many_tickets_each_open_exactly_one_stream(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth={"admin_tokens": [ADMIN], "subscriber_jwt": {"secret": SECRET}})
    tickets = [await issue(client, ["news"], token=ADMIN) for _ in range(20)]
    statuses = []
    for ticket in tickets + tickets:
        response = await client.get(f"/events/news?ticket={ticket}")
        statuses.append(response.status)
        response.close()
    assert statuses == [200] * 20 + [401] * 20
