"""CORS (Fetch standard, "CORS protocol"): any origin by default without credentials,
listed origins echoed with credentials, unlisted ones never reflected, preflights
answered for every path, and the headers on streams and errors too."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.support.http import HubClientFactory, open_stream

APP = "https://app.example"
EVIL = "https://evil.example"


def vary_values(headers: Any) -> set[str]:
    return {value.strip().lower() for header in headers.getall("Vary", []) for value in header.split(",")}


async def test_by_default_any_origin_is_allowed_without_credentials(client: TestClient[Any, Any]) -> None:
    response = await client.get("/stats", headers={"Origin": EVIL})
    assert response.status == 200
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


async def test_a_listed_origin_is_echoed_with_credentials_and_vary(hub_client: HubClientFactory) -> None:
    client = await hub_client(server={"cors_origins": [APP]})
    response = await client.get("/stats", headers={"Origin": APP})
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert "origin" in vary_values(response.headers)


@pytest.mark.parametrize("origin", [EVIL, "https://app.example.evil", "http://app.example", "null"])
async def test_an_unlisted_origin_is_never_reflected(hub_client: HubClientFactory, origin: str) -> None:
    client = await hub_client(server={"cors_origins": [APP]})
    response = await client.get("/stats", headers={"Origin": origin})
    assert response.status == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Credentials" not in response.headers
    # The answer depends on Origin, so a shared cache must not serve it to another one.
    assert "origin" in vary_values(response.headers)


async def test_with_a_wildcard_and_a_list_only_listed_origins_get_credentials(hub_client: HubClientFactory) -> None:
    client = await hub_client(server={"cors_origins": ["*", APP]})
    listed = await client.get("/stats", headers={"Origin": APP})
    other = await client.get("/stats", headers={"Origin": EVIL})
    assert (listed.headers["Access-Control-Allow-Origin"], listed.headers["Access-Control-Allow-Credentials"]) == (
        APP,
        "true",
    )
    assert other.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in other.headers
    assert "origin" in vary_values(other.headers)


async def test_a_request_without_origin_gets_no_allow_origin_from_a_list(hub_client: HubClientFactory) -> None:
    client = await hub_client(server={"cors_origins": [APP]})
    response = await client.get("/stats")
    assert "Access-Control-Allow-Origin" not in response.headers


def split_list(value: str) -> set[str]:
    return {item.strip().lower() for item in value.split(",")}


@pytest.mark.parametrize("path", ["/broadcast", "/api/broadcast"])
async def test_the_preflight_of_a_json_post_is_answered_204(client: TestClient[Any, Any], path: str) -> None:
    response = await client.options(
        path,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "post" in split_list(response.headers["Access-Control-Allow-Methods"])
    assert {"content-type", "authorization"} <= split_list(response.headers["Access-Control-Allow-Headers"])
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "access-control-request-headers" in vary_values(response.headers)


async def test_the_preflight_for_a_listed_origin_allows_credentials(hub_client: HubClientFactory) -> None:
    client = await hub_client(server={"cors_origins": [APP]})
    response = await client.options(
        "/broadcast",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type, authorization",
        },
    )
    assert response.status == 204
    assert response.headers["Access-Control-Allow-Origin"] == APP
    assert response.headers["Access-Control-Allow-Credentials"] == "true"
    assert {"content-type", "authorization"} <= split_list(response.headers["Access-Control-Allow-Headers"])
    assert "origin" in vary_values(response.headers)


async def test_the_preflight_for_an_unlisted_origin_allows_nothing(hub_client: HubClientFactory) -> None:
    client = await hub_client(server={"cors_origins": [APP]})
    response = await client.options("/broadcast", headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"})
    assert response.status < 500
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Access-Control-Allow-Methods" not in response.headers


async def test_a_preflight_for_a_stream_with_last_event_id_is_answered(client: TestClient[Any, Any]) -> None:
    response = await client.options(
        "/events/news",
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "last-event-id",
        },
    )
    assert response.status == 204
    assert "get" in split_list(response.headers["Access-Control-Allow-Methods"])
    assert "last-event-id" in split_list(response.headers["Access-Control-Allow-Headers"])


async def test_the_stream_response_carries_cors_headers(hub_client: HubClientFactory) -> None:
    client = await hub_client(server={"cors_origins": [APP]})
    async with open_stream(client, "/events/news", headers={"Origin": APP}) as stream:
        headers = stream.response.headers
        assert headers["Access-Control-Allow-Origin"] == APP
        assert headers["Access-Control-Allow-Credentials"] == "true"
        assert "origin" in vary_values(headers)


async def test_the_stream_response_allows_any_origin_by_default(client: TestClient[Any, Any]) -> None:
    async with open_stream(client, "/events/news", headers={"Origin": EVIL}) as stream:
        assert stream.response.headers["Access-Control-Allow-Origin"] == "*"


async def test_error_responses_carry_cors_headers_so_a_page_can_read_them(client: TestClient[Any, Any]) -> None:
    bad_publish = await client.post(
        "/broadcast", data=b"{", headers={"Origin": APP, "Content-Type": "application/json"}
    )
    bad_stream = await client.get("/events/a%20b", headers={"Origin": APP})
    assert (bad_publish.status, bad_stream.status) == (400, 400)
    assert bad_publish.headers["Access-Control-Allow-Origin"] == "*"
    assert bad_stream.headers["Access-Control-Allow-Origin"] == "*"


async def test_a_publish_response_carries_cors_headers(client: TestClient[Any, Any]) -> None:
    response = await client.post("/broadcast", json={"channel": "news", "data": 1}, headers={"Origin": APP})
    assert response.status == 202
    assert response.headers["Access-Control-Allow-Origin"] == "*"
