"""The API documents: ``/openapi.json`` is valid OpenAPI 3.1, names every route, and the
real responses of the app validate against the schemas it declares; docs/config.md and
docs/api.md keep up with the settings and the endpoints."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel

from sse_hub.config.settings import Settings
from sse_hub.web.app import routes
from sse_hub.web.openapi.spec import build_openapi
from tests.support.http import HubClientFactory, open_stream, publish
from tests.support.openapi import connected_client_id, contract_of
from tests.support.paths import ROOT
from tests.support.settings import make_settings


def document_for(settings: Settings) -> dict[str, Any]:
    return build_openapi(settings, routes(settings))


# -- the document ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sections",
    [
        {},
        {
            "streams": [{"path": "/api/stocks", "channels": ["stocks"]}, {"path": "/feed", "channels": ["a", "b"]}],
            "auth": {"publish_tokens": ["p"], "admin_tokens": ["a"], "subscriber_jwt": {"secret": "s"}},
            "limits": {"max_batch": 7},
            "demo_page": False,
        },
    ],
    ids=["defaults", "configured"],
)
def test_openapi_document_is_valid_openapi_3_1(sections: dict[str, Any]) -> None:
    document = document_for(make_settings(**sections))
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


async def test_served_document_is_valid_and_names_every_route_of_the_app(client: TestClient[Any, Any]) -> None:
    contract = await contract_of(client)
    validate_openapi(contract.document)
    documented = {(path, method) for path, item in contract.document["paths"].items() for method in item}
    routed = {
        (route.resource.canonical, route.method.lower())
        for route in client.app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "OPTIONS", "*")
    }
    assert routed - documented == set()


def test_document_follows_the_settings() -> None:
    settings = make_settings(
        streams=[{"path": "/api/stocks", "channels": ["stocks", "fx"]}],
        auth={"admin_tokens": ["a"], "subscriber_jwt": {"secret": "s"}},
        limits={"max_batch": 7},
        demo_page=False,
    )
    document = document_for(settings)
    paths = document["paths"]
    assert "stocks, fx" in paths["/api/stocks"]["get"]["summary"]
    assert "/api/events" not in paths
    assert "/" not in paths
    assert document["components"]["schemas"]["PublishBatch"]["maxItems"] == 7
    # Only admin tokens: publishing stays open, stats need the admin token.
    assert paths["/broadcast"]["post"]["security"] == [{}]
    assert paths["/stats"]["get"]["security"] == [{"adminToken": []}]
    assert {"subscriberJwt": []} in paths["/events/{channel}"]["get"]["security"]

    defaults = document_for(Settings())
    assert "/api/events" in defaults["paths"]
    assert "/" in defaults["paths"]
    assert defaults["paths"]["/stats"]["get"]["security"] == [{}]


# -- real responses against the declared schemas ---------------------------------------------


async def test_publish_receipts_match_their_schema(client: TestClient[Any, Any]) -> None:
    contract = await contract_of(client)
    async with open_stream(client, "/events/news") as stream:
        client_id = connected_client_id(stream)
        single = await publish(client, {"channel": "news", "event": "headline", "data": {"title": "hi"}})
        batch = await publish(client, [{"channels": ["news", "sport"], "data": "x"}, {"data": None}])
        direct = await publish(client, {"client_id": client_id, "data": "for you"})
        alias = await (await client.post("/api/broadcast", json={"channel": "news", "data": 1})).json()
    for body in (single, batch, direct):
        contract.check_response("/broadcast", "post", 202, body)
    contract.check_response("/api/broadcast", "post", 202, alias)
    contract.check_schema("Receipt", single)
    contract.check_schema("Receipts", batch)
    assert direct["client_id"] == client_id
    assert batch[1]["channels"] == ["*"]


async def test_the_connected_and_reset_events_match_their_schemas(client: TestClient[Any, Any]) -> None:
    contract = await contract_of(client)
    async with open_stream(client, "/events?channel=a&channel=b", headers={"Last-Event-ID": "not-an-id"}) as stream:
        connected = stream.parser.events[0]
        reset = await stream.next()
    assert (connected.event, reset.event) == ("connected", "reset")
    contract.check_schema("Connected", connected.json())
    contract.check_schema("Reset", reset.json())
    assert reset.json() == {"reason": "unknown_id", "last_event_id": "not-an-id"}


async def test_error_bodies_match_the_error_schema(hub_client: HubClientFactory) -> None:
    client = await hub_client(limits={"max_message_bytes": 100})
    contract = await contract_of(client)
    cases = [
        ("post", "/broadcast", {"data": b"{not json", "headers": {"Content-Type": "application/json"}}, 400),
        ("post", "/broadcast", {"json": {"channel": "bad channel", "data": 1}}, 400),
        ("post", "/broadcast", {"data": b"x", "headers": {"Content-Type": "text/plain"}}, 415),
        ("post", "/broadcast", {"json": {"data": "x" * 200}}, 413),
        ("post", "/broadcast", {"json": {"client_id": "c_nobody", "data": 1}}, 404),
        ("get", "/events/bad%20channel", {}, 400),
        ("get", "/events", {}, 400),
        ("get", "/stats?scope=galaxy", {}, 400),
        ("delete", "/clients/c_nobody", {}, 404),
    ]
    for method, path, kwargs, status in cases:
        response = await client.request(method.upper(), path, **kwargs)
        body = await response.json()
        assert response.status == status, (path, body)
        template = "/events/{channel}" if path.startswith("/events/") else path.split("?")[0]
        template = "/clients/{client_id}" if path.startswith("/clients/") else template
        contract.check_response(template, method, status, body)
        contract.check_schema("ErrorBody", body)


async def test_stats_match_the_stats_schema(client: TestClient[Any, Any]) -> None:
    contract = await contract_of(client)
    async with open_stream(client, "/events?channel=a&channel=b", headers={"User-Agent": "schema-test"}) as stream:
        await publish(client, {"channel": "a", "data": "x"})
        await stream.next()
        local = await (await client.get("/stats")).json()
        cluster = await (await client.get("/stats?scope=cluster&limit=0")).json()
    assert local["clients"][0]["user_agent"] == "schema-test"
    contract.check_response("/stats", "get", 200, local)
    contract.check_response("/stats", "get", 200, cluster)
    contract.check_schema("Stats", local)
    contract.check_schema("ClusterStats", cluster)
    assert cluster["clients"] == []
    assert cluster["cluster"]["total_clients"] == 1


async def test_health_readiness_and_disconnect_match_their_schemas(client: TestClient[Any, Any]) -> None:
    contract = await contract_of(client)
    health = await client.get("/healthz")
    contract.check_response("/healthz", "get", health.status, await health.json())
    ready = await client.get("/readyz")
    contract.check_response("/readyz", "get", ready.status, await ready.json())
    async with open_stream(client, "/events/gone") as stream:
        client_id = connected_client_id(stream)
        response = await client.delete(f"/clients/{client_id}")
        contract.check_response("/clients/{client_id}", "delete", response.status, await response.json())


async def test_tickets_and_metrics_match_their_schemas(hub_client: HubClientFactory) -> None:
    client = await hub_client(auth={"admin_tokens": ["admin"], "subscriber_jwt": {"secret": "s" * 32}})
    contract = await contract_of(client)
    admin = {"Authorization": "Bearer admin"}
    response = await client.post("/tickets", json={"channels": ["orders.*"], "ttl_seconds": 30}, headers=admin)
    contract.check_response("/tickets", "post", response.status, await response.json())
    refused = await client.post("/tickets", json={"channels": ["orders"]})
    contract.check_response("/tickets", "post", refused.status, await refused.json())
    invalid = await client.post("/tickets", json={"channels": []}, headers=admin)
    contract.check_response("/tickets", "post", invalid.status, await invalid.json())
    metrics = await client.get("/metrics", headers=admin)
    assert metrics.status == 200
    contract.check_response("/metrics", "get", 200, await metrics.text(), metrics.content_type)
    unauthorized = await client.get("/metrics")
    contract.check_response("/metrics", "get", unauthorized.status, await unauthorized.json())
    assert (refused.status, invalid.status, unauthorized.status) == (401, 400, 401)


async def test_static_files_are_served_as_documented(client: TestClient[Any, Any]) -> None:
    contract = await contract_of(client)
    for path, media in [("/", "text/html"), ("/sse-hub.js", "text/javascript")]:
        response = await client.get(path)
        assert response.status == 200
        assert response.content_type == media
        contract.check_response(path, "get", 200, await response.text(), media)


# -- the Markdown docs keep up ---------------------------------------------------------------


def settings_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Every dotted key of the settings, e.g. ``auth.subscriber_jwt.secret``."""
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys.extend(settings_keys(annotation, f"{prefix}{name}."))
        else:
            keys.append(prefix + name)
    return keys


def test_config_doc_names_every_key_and_its_environment_variable() -> None:
    text = (ROOT / "docs" / "config.md").read_text()
    missing = []
    for key in settings_keys(Settings):
        env = "SSE_HUB_" + key.upper().replace(".", "__")
        if f"`{key}`" not in text or f"`{env}`" not in text:
            missing.append(f"{key} / {env}")
    assert missing == [], "docs/config.md does not describe: " + ", ".join(missing)


def test_api_doc_covers_every_documented_path() -> None:
    text = (ROOT / "docs" / "api.md").read_text()
    document = document_for(Settings())
    missing = [
        path for path in document["paths"] if not re.search(rf"\b(GET|POST|DELETE) {re.escape(path)}[`\s]", text)
    ]
    assert missing == [], "docs/api.md has no section for: " + ", ".join(missing)
