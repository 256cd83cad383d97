"""The OpenAPI 3.1 description of the HTTP API, served at ``/openapi.json``.

Built from the settings, so it describes this hub as configured: the ``streams:`` alias
paths, ``limits.max_batch``, whether the demo page exists, and which operations need a
token (``auth.*``). Schemas are JSON Schema 2020-12 (the OpenAPI 3.1 dialect), written
to match what the handlers really send; ``tests/test_openapi.py`` validates real
responses against them, so a change to a response shape must change this module too.
"""

from __future__ import annotations

from sse_hub import __version__
from sse_hub.config import CHANNEL_PATTERN, Settings

JsonObject = dict[str, object]

SSE_STREAM_EXAMPLE = (
    'retry: 3000\nevent: connected\ndata: {"client_id":"c_x1","channels":["news"]}\n\n'
    'id: 42\nevent: headline\ndata: {"title":"Hello"}\n\n: ping\n\n'
)


def ref(name: str, kind: str = "schemas") -> JsonObject:
    return {"$ref": f"#/components/{kind}/{name}"}


def json_content(schema: JsonObject) -> JsonObject:
    return {"application/json": {"schema": schema}}


def error_response(description: str, retry_after: bool = False) -> JsonObject:
    response: JsonObject = {"description": description, "content": json_content(ref("Error"))}
    if retry_after:
        response["headers"] = {"Retry-After": ref("RetryAfter", "headers")}
    return response


def schemas(settings: Settings) -> JsonObject:
    timestamp: JsonObject = {"type": "string", "format": "date-time", "description": "ISO 8601 UTC"}
    counts: JsonObject = {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}
    count: JsonObject = {"type": "integer", "minimum": 0}
    client_id: JsonObject = {"type": "string", "minLength": 1, "maxLength": 128}
    return {
        "ChannelName": {"type": "string", "pattern": f"^{CHANNEL_PATTERN.pattern}$", "examples": ["stocks"]},
        "EventName": {
            "type": "string",
            "minLength": 1,
            "maxLength": 128,
            "pattern": "^[^\\r\\n\\u0000]+$",
            "description": "The SSE event type; `message` is sent without an `event:` line.",
        },
        "EventId": {
            "type": "string",
            "pattern": "^[1-9][0-9]*$",
            "description": "Decimal, increasing in publish order across the cluster.",
        },
        "PublishItem": {
            "type": "object",
            "required": ["data"],
            "additionalProperties": False,
            "properties": {
                "data": {
                    "description": "A string is sent verbatim, one `data:` line per line (CRLF, CR "
                    "and LF all end a line); any other JSON value, `null` included, as compact JSON."
                },
                "event": {**ref("EventName"), "default": "message"},
                "channels": {
                    "type": "array",
                    "items": ref("ChannelName"),
                    "minItems": 1,
                    "maxItems": 100,
                    "description": "Omit both `channel` and `channels` to reach every client (channel `*`).",
                },
                "channel": ref("ChannelName"),
                "retry": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 86_400_000,
                    "description": "Sent as `retry:`: the client's reconnection delay in ms.",
                },
                "exclude_client_id": {**client_id, "description": "Everyone but this client."},
                "client_id": {**client_id, "description": "This client only (direct, not kept in history)."},
            },
            "allOf": [
                {"not": {"required": ["channel", "channels"]}},
                {
                    "if": {"required": ["client_id"]},
                    "then": {"properties": {"channel": False, "channels": False}},
                },
            ],
            "examples": [{"event": "stockUpdate", "data": {"symbol": "AAPL", "price": 182.3}, "channels": ["stocks"]}],
        },
        "PublishBatch": {
            "type": "array",
            "items": ref("PublishItem"),
            "minItems": 1,
            "maxItems": settings.limits.max_batch,
            "description": "All or nothing: one invalid item and nothing is published.",
        },
        "PublishReceipt": {
            "type": "object",
            "required": ["id", "channels"],
            "additionalProperties": False,
            "properties": {
                "id": ref("EventId"),
                "channels": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": '`["*"]` for a global broadcast, `[]` for a direct message.',
                },
                "client_id": {**client_id, "description": "Present for a direct message."},
            },
        },
        "PublishReceipts": {"type": "array", "items": ref("PublishReceipt")},
        "Error": {
            "type": "object",
            "required": ["error", "detail"],
            "additionalProperties": False,
            "properties": {
                "error": {
                    "type": "string",
                    "description": "A stable code: bad_request, invalid_channel, unauthorized, forbidden, "
                    "not_found, unknown_client, payload_too_large, unsupported_media_type, "
                    "too_many_connections_per_ip, too_many_connections, broker_unavailable, ...",
                },
                "detail": {"description": "A message, or a list of the invalid fields, or null."},
            },
        },
        "ClientInfo": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "id",
                "ip",
                "channels",
                "connected_at",
                "last_activity",
                "messages_sent",
                "bytes_sent",
                "buffered_bytes",
                "user_agent",
            ],
            "properties": {
                "id": {"type": "string"},
                "ip": {"type": "string"},
                "channels": {"type": "array", "items": ref("ChannelName")},
                "connected_at": timestamp,
                "last_activity": timestamp,
                "messages_sent": count,
                "bytes_sent": count,
                "buffered_bytes": count,
                "user_agent": {"type": "string"},
            },
        },
        "InstanceSummary": {
            "type": "object",
            "required": ["instance", "started_at", "total_clients", "channels"],
            "properties": {
                "instance": {"type": "string"},
                "started_at": timestamp,
                "total_clients": count,
                "channels": {**counts, "description": "Connected clients per channel."},
            },
        },
        "ClusterTotals": {
            "type": "object",
            "additionalProperties": False,
            "required": ["instances", "total_clients", "channels"],
            "properties": {"instances": count, "total_clients": count, "channels": counts},
        },
        "Stats": {
            "type": "object",
            "additionalProperties": False,
            "required": [
                "instance",
                "started_at",
                "total_clients",
                "channels",
                "messages_published",
                "messages_delivered",
                "slow_disconnects",
                "clients",
            ],
            "properties": {
                "instance": {"type": "string"},
                "started_at": timestamp,
                "total_clients": count,
                "channels": counts,
                "messages_published": count,
                "messages_delivered": {**count, "description": "Messages written to clients (not heartbeats)."},
                "slow_disconnects": count,
                "clients": {"type": "array", "items": ref("ClientInfo")},
                "instances": {
                    "type": "array",
                    "items": ref("InstanceSummary"),
                    "description": "With `scope=cluster`: every live instance.",
                },
                "cluster": {**ref("ClusterTotals"), "description": "With `scope=cluster`."},
            },
        },
        "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
        "Readiness": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"enum": ["ready", "unavailable"]}, "detail": {"type": "string"}},
        },
        "ClientDisconnected": {
            "type": "object",
            "required": ["id", "disconnected"],
            "properties": {"id": {"type": "string"}, "disconnected": {"const": True}},
        },
        "ChannelPattern": {
            "type": "string",
            "pattern": f"^(\\*|{CHANNEL_PATTERN.pattern}(\\.\\*)?)$",
            "description": "A channel, `*` (every channel) or `prefix.*` (`prefix.a`, `prefix.a.b`).",
        },
        "TicketRequest": {
            "type": "object",
            "required": ["channels"],
            "additionalProperties": False,
            "properties": {
                "channels": {"type": "array", "items": ref("ChannelPattern"), "minItems": 1, "maxItems": 100},
                "ttl_seconds": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 60},
            },
        },
        "Ticket": {
            "type": "object",
            "required": ["ticket", "expires_at", "channels"],
            "additionalProperties": False,
            "properties": {
                "ticket": {"type": "string", "description": "Pass as `?ticket=`; accepted once."},
                "expires_at": timestamp,
                "channels": {"type": "array", "items": ref("ChannelPattern")},
            },
        },
    }


def components(settings: Settings) -> JsonObject:
    return {
        "schemas": schemas(settings),
        "headers": {
            "RetryAfter": {"description": "Seconds to wait before trying again.", "schema": {"type": "integer"}}
        },
        "parameters": {
            "LastEventIdHeader": {
                "name": "Last-Event-ID",
                "in": "header",
                "description": "Resume after this id (browsers resend it on reconnect): retained newer "
                "messages are replayed first, or `event: reset` says they are gone.",
                "schema": {"type": "string"},
            },
            "LastEventIdQuery": {
                "name": "last_event_id",
                "in": "query",
                "description": "Like `Last-Event-ID`, for clients that cannot set headers.",
                "schema": {"type": "string"},
            },
            "LastEventIdCamel": {
                "name": "lastEventId",
                "in": "query",
                "description": "Alias of `last_event_id`.",
                "schema": {"type": "string"},
            },
        },
        "responses": {
            "BadRequest": error_response("Invalid JSON, fields or channel names."),
            "Unauthorized": error_response("No token (or an invalid subscriber token / ticket)."),
            "Forbidden": error_response("The token is not valid here, or the channel is not allowed."),
            "TooManyFromIp": error_response("Over `limits.max_connections_per_ip`.", retry_after=True),
            "Unavailable": error_response("At `limits.max_connections`, or shutting down.", retry_after=True),
            "HttpVersion": error_response("Streams need HTTP/1.1 (nginx: `proxy_http_version 1.1`)."),
        },
        "securitySchemes": {
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
        },
    }


def security(settings: Settings) -> dict[str, list[JsonObject]]:
    """Requirements per kind of operation; ``[{}]`` when this hub needs no token for it."""
    auth = settings.auth
    jwt = auth.subscriber_jwt
    open_: list[JsonObject] = [{}]
    publishers: list[JsonObject] = [{"publishToken": []}, {"adminToken": []}]
    return {
        "subscribe": (
            [{"subscriberJwt": []}, {"subscriberJwtQuery": []}, {"subscriberJwtCookie": []}, {"ticket": []}]
            if jwt.secret or jwt.public_key_file
            else open_
        ),
        "publish": publishers if auth.publish_tokens else open_,
        "admin": [{"adminToken": []}] if auth.admin_tokens else open_,
        "tickets": publishers if auth.publish_tokens or auth.admin_tokens else open_,
    }


def stream_operation(summary: str, parameters: list[JsonObject], required: list[JsonObject]) -> JsonObject:
    return {
        "tags": ["subscribe"],
        "summary": summary,
        "description": "A `text/event-stream`: `retry:` and a `connected` event (no id), then replayed "
        "messages (when a last event id is given), then live ones, with a `: ping` comment when idle.",
        "security": required,
        "parameters": [
            *parameters,
            ref("LastEventIdHeader", "parameters"),
            ref("LastEventIdQuery", "parameters"),
            ref("LastEventIdCamel", "parameters"),
        ],
        "responses": {
            "200": {
                "description": "The event stream (`Cache-Control: no-cache, no-transform`, `X-Accel-Buffering: no`).",
                "content": {"text/event-stream": {"schema": {"type": "string"}, "example": SSE_STREAM_EXAMPLE}},
            },
            "400": ref("BadRequest", "responses"),
            "401": ref("Unauthorized", "responses"),
            "403": ref("Forbidden", "responses"),
            "429": ref("TooManyFromIp", "responses"),
            "503": ref("Unavailable", "responses"),
            "505": ref("HttpVersion", "responses"),
        },
    }


def publish_operation(required: list[JsonObject], alias: bool) -> JsonObject:
    return {
        "tags": ["publish"],
        "summary": "Publish one message or a batch" + (" (alias of /broadcast)" if alias else ""),
        "operationId": "publishAlias" if alias else "publish",
        "security": required,
        "requestBody": {
            "required": True,
            "content": json_content({"oneOf": [ref("PublishItem"), ref("PublishBatch")]}),
        },
        "responses": {
            "202": {
                "description": "Stored and published: one receipt, or a list of them for a batch.",
                "content": json_content({"oneOf": [ref("PublishReceipt"), ref("PublishReceipts")]}),
            },
            "400": ref("BadRequest", "responses"),
            "401": ref("Unauthorized", "responses"),
            "403": ref("Forbidden", "responses"),
            "404": error_response("`client_id` names no connected client."),
            "413": error_response("The body is over `limits.max_message_bytes`."),
            "415": error_response("The body is not `application/json`."),
            "503": error_response("The broker cannot take the message (Redis down); nothing was published.", True),
        },
    }


def operation(
    tag: str,
    summary: str,
    media: str,
    schema: JsonObject,
    errors: JsonObject | None = None,
    status: str = "200",
    **fields: object,
) -> JsonObject:
    """An operation whose success is ``status`` with one body; ``errors`` adds responses,
    ``fields`` adds anything else (``security``, ``parameters``, ``requestBody``)."""
    success: JsonObject = {"description": summary, "content": {media: {"schema": schema}}}
    return {"tags": [tag], "summary": summary, **fields, "responses": {status: success, **(errors or {})}}


def paths(settings: Settings) -> JsonObject:
    required = security(settings)
    channel_in_path: JsonObject = {"name": "channel", "in": "path", "required": True, "schema": ref("ChannelName")}
    channels_in_query: list[JsonObject] = [
        {
            "name": "channel",
            "in": "query",
            "description": "Repeat for several channels.",
            "schema": {"type": "array", "items": ref("ChannelName")},
            "style": "form",
            "explode": True,
        },
        {"name": "channels", "in": "query", "description": "Comma-separated channels.", "schema": {"type": "string"}},
    ]
    stats_parameters: list[JsonObject] = [
        {
            "name": "limit",
            "in": "query",
            "description": "List at most this many clients.",
            "schema": {"type": "integer", "minimum": 0},
        },
        {"name": "scope", "in": "query", "schema": {"enum": ["local", "cluster"], "default": "local"}},
    ]
    client_in_path: JsonObject = {"name": "client_id", "in": "path", "required": True, "schema": {"type": "string"}}
    admin_errors: JsonObject = {"401": ref("Unauthorized", "responses"), "403": ref("Forbidden", "responses")}
    bad_request: JsonObject = {"400": ref("BadRequest", "responses")}
    body_errors: JsonObject = {
        "413": error_response("The body is over `limits.max_message_bytes`."),
        "415": error_response("The body is not `application/json`."),
        "503": error_response(
            "The broker cannot store the ticket (Redis down, or `limits.max_tickets` outstanding).", retry_after=True
        ),
    }
    not_ready: JsonObject = {"503": {"description": "Not ready", "content": json_content(ref("Readiness"))}}

    found: JsonObject = {
        "/events/{channel}": {
            "get": stream_operation("Subscribe to one channel", [channel_in_path], required["subscribe"])
        },
        "/events": {"get": stream_operation("Subscribe to several channels", channels_in_query, required["subscribe"])},
    }
    for alias in settings.streams:
        summary = f"Subscribe to {', '.join(alias.channels)} (configured in `streams:`)"
        found[alias.path] = {"get": stream_operation(summary, [], required["subscribe"])}
    found |= {
        "/broadcast": {"post": publish_operation(required["publish"], alias=False)},
        "/api/broadcast": {"post": publish_operation(required["publish"], alias=True)},
        "/stats": {
            "get": operation(
                "operate",
                "Connections and counters of this instance",
                "application/json",
                ref("Stats"),
                bad_request | admin_errors,
                security=required["admin"],
                parameters=stats_parameters,
            )
        },
        "/clients/{client_id}": {
            "delete": operation(
                "operate",
                "Disconnect one client",
                "application/json",
                ref("ClientDisconnected"),
                {"404": error_response("No such client."), **admin_errors},
                security=required["admin"],
                parameters=[client_in_path],
            )
        },
        "/healthz": {"get": operation("operate", "The process is up", "application/json", ref("Health"))},
        "/readyz": {
            "get": operation("operate", "The broker is usable", "application/json", ref("Readiness"), not_ready)
        },
        "/metrics": {
            "get": operation(
                "operate",
                "Prometheus metrics",
                "text/plain",
                {"type": "string"},
                admin_errors,
                security=required["admin"],
            )
        },
        "/tickets": {
            "post": operation(
                "subscribe",
                "A one-time ticket for `?ticket=`",
                "application/json",
                ref("Ticket"),
                bad_request
                | admin_errors
                | body_errors
                | {"404": error_response("Subscriber auth is off: no tickets.")},
                status="201",
                security=required["tickets"],
                requestBody={"required": True, "content": json_content(ref("TicketRequest"))},
            )
        },
        "/openapi.json": {"get": operation("docs", "This document", "application/json", {"type": "object"})},
        "/sse-hub.js": {
            "get": operation("docs", "The browser helper (an ES module)", "text/javascript", {"type": "string"})
        },
    }
    if settings.demo_page:
        found["/"] = {"get": operation("docs", "The demo page", "text/html", {"type": "string"})}
    return found


def build_openapi(settings: Settings) -> dict[str, object]:
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
        "paths": paths(settings),
        "components": components(settings),
    }
