"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``, generated.

Schemas come from the types the handlers use (``messages.message.PublishItem``, the ``schemas``
TypedDicts and ``TicketRequest``) through pydantic's JSON Schema (2020-12, the OpenAPI 3.1
dialect); paths come from the app's route table (``app.routes``), where each route names
its ``Operation`` (written in ``openapi.operations``: the prose, parameters and errors). So a
route cannot be served undocumented, and a body cannot change shape without its schema
changing too.

Built from the settings, so it describes this hub as configured: ``streams:`` aliases,
``limits.max_batch``, the demo page, and which operations need a token (``auth.*``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from pydantic import TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode

from sse_hub import __version__
from sse_hub.config.settings import Settings
from sse_hub.messages.message import PUBLISH_BATCH, PublishItem
from sse_hub.web.openapi import schemas

if TYPE_CHECKING:
    from aiohttp import web

JsonObject = dict[str, object]
Access = Literal["subscribe", "publish", "admin", "tickets"]
Handler = Callable[["web.Request"], Awaitable["web.StreamResponse"]]

# Each named schema and the type it is generated from (validation: what we accept;
# serialization: what we send).
_SOURCES: list[tuple[str, JsonSchemaMode, TypeAdapter[Any]]] = [
    ("PublishItem", "validation", TypeAdapter(PublishItem)),
    ("PublishBatch", "validation", PUBLISH_BATCH),
    ("Receipt", "serialization", schemas.RECEIPT),
    ("Receipts", "serialization", schemas.RECEIPTS),
    ("ErrorBody", "serialization", TypeAdapter(schemas.ErrorBody)),
    ("Stats", "serialization", schemas.STATS),
    ("ClusterStats", "serialization", schemas.CLUSTER_STATS),
    ("TicketRequest", "validation", TypeAdapter(schemas.TicketRequest)),
    ("Ticket", "serialization", schemas.TICKET),
    ("Health", "serialization", TypeAdapter(schemas.Health)),
    ("Readiness", "serialization", TypeAdapter(schemas.Readiness)),
    ("ClientDisconnected", "serialization", TypeAdapter(schemas.ClientDisconnected)),
    ("Connected", "serialization", schemas.CONNECTED),
    ("Reset", "serialization", schemas.RESET),
    ("End", "serialization", schemas.END),
    ("PublishStreamSummary", "serialization", schemas.PUBLISH_STREAM_SUMMARY),
    ("ChannelPresence", "serialization", schemas.CHANNEL_PRESENCE),
    ("ClientPresence", "serialization", schemas.CLIENT_PRESENCE),
    ("PublishStreamError", "serialization", TypeAdapter(schemas.PublishStreamError)),
]


class _OpenApiSchema(GenerateJsonSchema):
    """pydantic's JSON Schema without a generated ``title`` on every property."""

    def field_title_should_be_set(self, schema: object) -> bool:
        return False


@cache
def component_schemas() -> tuple[dict[str, JsonObject], dict[str, JsonObject]]:
    """The named schemas (``$defs`` under ``#/components/schemas``) and, by name, the
    schema of each ``_SOURCES`` entry (a ``$ref`` or an inline array)."""
    by_key, definitions = TypeAdapter.json_schemas(
        _SOURCES,
        ref_template="#/components/schemas/{model}",
        schema_generator=_OpenApiSchema,
    )
    named = {key[0]: dict(schema) for key, schema in by_key.items()}
    return dict(definitions.get("$defs", {})), named


def ref(name: str) -> JsonObject:
    return {"$ref": f"#/components/schemas/{name}"}


@dataclass(frozen=True)
class Operation:
    """One documented operation: its success answer, who may call it, what can go wrong."""

    tag: str
    summary: str
    answer: JsonObject  # the success body's schema
    access: Access | None = None
    errors: Mapping[int, str] = field(default_factory=dict)  # status -> when
    error_body: JsonObject = field(default_factory=lambda: ref("ErrorBody"))
    retry_after: frozenset[int] = frozenset({429, 503})  # error statuses sent with Retry-After
    parameters: tuple[JsonObject, ...] = ()
    request: JsonObject | None = None
    # Other media types the request body may have, with their schema (media -> schema).
    other_requests: Mapping[str, JsonObject] = field(default_factory=dict)
    media: str = "application/json"
    status: int = 200
    no_content: str | None = None  # when the operation answers 204 instead
    description: str | None = None
    operation_id: str | None = None
    example: str | None = None


@dataclass(frozen=True)
class Route:
    """A route of the app and its operation: registered and documented from one table."""

    method: str
    path: str
    handler: Handler
    operation: Operation

    @property
    def pattern(self) -> str:
        """The path as aiohttp matches it: a ``{channel}`` segment takes any character but
        ``/``, braces included (a Redis Cluster hash tag; aiohttp's default refuses them)."""
        return self.path.replace("{channel}", "{channel:[^/]+}")


def security(settings: Settings) -> dict[Access, list[JsonObject]]:
    """Requirements per kind of operation; ``[{}]`` when this hub needs no token for it."""
    auth = settings.auth
    jwt = auth.subscriber_jwt
    open_: list[JsonObject] = [{}]
    publishers: list[JsonObject] = [{"publishToken": []}, {"adminToken": []}]
    subscribers: list[JsonObject] = [
        {"subscriberJwt": []},
        {"subscriberJwtQuery": []},
        {"subscriberJwtCookie": []},
        {"ticket": []},
    ]
    return {
        "subscribe": subscribers if jwt.secret or jwt.public_key_file else open_,
        "publish": publishers if auth.publish_tokens else open_,
        "admin": [{"adminToken": []}] if auth.admin_tokens else open_,
        "tickets": publishers if auth.publish_tokens or auth.admin_tokens else open_,
    }


SECURITY_SCHEMES: JsonObject = {
    "publishToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "A token from `auth.publish_tokens` (an admin token publishes too).",
    },
    "adminToken": {"type": "http", "scheme": "bearer", "description": "A token from `auth.admin_tokens`."},
    "subscriberJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "Its `channels` claim (`*`, `prefix.*` allowed) bounds what may be subscribed.",
    },
    "subscriberJwtQuery": {"type": "apiKey", "in": "query", "name": "token"},
    "subscriberJwtCookie": {"type": "apiKey", "in": "cookie", "name": "sse_hub_token"},
    "ticket": {
        "type": "apiKey",
        "in": "query",
        "name": "ticket",
        "description": "A one-time ticket from `POST /tickets`, for EventSource, which cannot send headers.",
    },
}
RETRY_AFTER: JsonObject = {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}


def operation_object(operation: Operation, required: dict[Access, list[JsonObject]]) -> JsonObject:
    content: JsonObject = {"schema": operation.answer}
    if operation.example is not None:
        content["example"] = operation.example
    responses: JsonObject = {
        str(operation.status): {"description": operation.summary, "content": {operation.media: content}}
    }
    if operation.no_content is not None:
        responses["204"] = {"description": operation.no_content}
    for status, when in sorted(operation.errors.items()):
        response: JsonObject = {"description": when, "content": {"application/json": {"schema": operation.error_body}}}
        if status in operation.retry_after:
            response["headers"] = {"Retry-After": RETRY_AFTER}
        responses[str(status)] = response
    found: JsonObject = {"tags": [operation.tag], "summary": operation.summary}
    if operation.description is not None:
        found["description"] = operation.description
    if operation.operation_id is not None:
        found["operationId"] = operation.operation_id
    if operation.access is not None:
        found["security"] = required[operation.access]
    if operation.parameters:
        found["parameters"] = list(operation.parameters)
    if operation.request is not None:
        media = {"application/json": {"schema": operation.request}}
        media.update({name: {"schema": schema} for name, schema in operation.other_requests.items()})
        found["requestBody"] = {"required": True, "content": media}
    found["responses"] = responses
    return found


def build_openapi(settings: Settings, routes: Iterable[Route]) -> JsonObject:
    required = security(settings)
    paths: dict[str, JsonObject] = {}
    for route in routes:
        paths.setdefault(route.path, {})[route.method.lower()] = operation_object(route.operation, required)
    definitions, named = component_schemas()
    batch = {**named["PublishBatch"], "minItems": 1, "maxItems": settings.limits.max_batch}
    batch["description"] = "All or nothing: one invalid item and nothing is published."
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "sse-hub",
            "version": __version__,
            "summary": "Server-Sent Events broadcast hub: subscribe with EventSource, publish with POST.",
            "description": 'Errors are always `{"error": code, "detail": ...}`. CORS preflights '
            "(`OPTIONS`) are answered on every path per `server.cors_origins`. See docs/api.md.",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        # Relative to where this document is served, so it holds behind a path prefix too.
        "servers": [{"url": ".", "description": "this hub"}],
        "tags": [
            {"name": "subscribe", "description": "Server-Sent Event streams"},
            {"name": "publish", "description": "Messages in"},
            {"name": "operate", "description": "Stats, health, metrics, admin"},
            {"name": "docs", "description": "This document, the browser helper and the demo page"},
        ],
        "paths": paths,
        "components": {
            "schemas": {**definitions, "PublishBatch": batch, "Receipts": named["Receipts"]},
            "securitySchemes": SECURITY_SCHEMES,
        },
    }
