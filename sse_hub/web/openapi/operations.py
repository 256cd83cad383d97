"""The operations of the HTTP API as ``/openapi.json`` describes them: the prose.

One ``Operation`` per kind of route (summary, who may call it, its parameters, what can
go wrong); the app's route table (``app.routes``) pairs each route with one of these. The
bodies' schemas are not written here: an operation names them (``ref("Stats")``) and
``openapi.spec`` generates them from the types the handlers use.
"""

from __future__ import annotations

from collections.abc import Iterable

from sse_hub.web.openapi.spec import JsonObject, Operation, ref

SSE_STREAM_EXAMPLE = (
    'retry: 3000\nevent: connected\ndata: {"client_id":"c_x1","channels":["news"]}\n\n'
    'id: 42\nevent: headline\ndata: {"title":"Hello"}\n\n: ping\n\n'
)


def parameter(name: str, where: str, description: str, schema: JsonObject, **more: object) -> JsonObject:
    return {"name": name, "in": where, "description": description, "schema": schema, **more}


TEXT: JsonObject = {"type": "string"}
ADMIN_ERRORS = {401: "No token.", 403: "The token is not an admin token."}
BODY_ERRORS = {
    400: "Invalid JSON or fields.",
    413: "The body is over `limits.max_message_bytes`.",
    415: "The body is not `application/json`.",
}
LAST_EVENT_ID = (
    parameter(
        "Last-Event-ID",
        "header",
        "Resume after this id (browsers resend it on reconnect): retained newer messages are "
        "replayed first, or `event: reset` (data: `Reset`) says they are gone.",
        TEXT,
    ),
    parameter("last_event_id", "query", "Like `Last-Event-ID`, for clients that cannot set headers.", TEXT),
    parameter("lastEventId", "query", "Alias of `last_event_id`.", TEXT),
    parameter(
        "from",
        "query",
        "`start`: replay every retained message of the stream's channels (and global broadcasts) "
        "before the live ones; `event: reset` (`history_expired`, `last_event_id` null) first when "
        "history no longer reaches a channel's first message. A last event id wins over it.",
        {"enum": ["start"]},
    ),
)
CHANNEL_IN_PATH = parameter("channel", "path", "The channel.", ref("ChannelName"), required=True)
CHANNELS_IN_QUERY = (
    parameter(
        "channel", "query", "Repeat for several channels.", {"type": "array", "items": ref("ChannelName")}, explode=True
    ),
    parameter("channels", "query", "Comma-separated channels.", TEXT),
)


def stream(summary: str, parameters: Iterable[JsonObject] = ()) -> Operation:
    return Operation(
        "subscribe",
        summary,
        TEXT,
        access="subscribe",
        media="text/event-stream",
        parameters=(*parameters, *LAST_EVENT_ID),
        description="A `text/event-stream`: `retry:` and a `connected` event (no id, data: `Connected`), then "
        "replayed messages (when a last event id or `from=start` is given), then live ones, with a `: ping` "
        "comment when idle. After a channel's final message, `event: end` (no id, data: `End`); once every "
        "channel of the stream ended, the hub ends the stream. "
        "Sent with `Cache-Control: no-cache, no-transform` and `X-Accel-Buffering: no`.",
        no_content="Nothing to send: every channel of the stream ended, and the last event id is at or past "
        "their final messages, or there is neither a last event id nor `from=start` (EventSource stops).",
        errors={
            400: "Invalid channel names, or `from` other than `start`.",
            401: "No token, or an invalid subscriber token or ticket.",
            403: "The token does not allow the channel.",
            429: "Over `limits.max_connections_per_ip`.",
            503: "At `limits.max_connections`, or shutting down.",
            505: "Streams need HTTP/1.1 (nginx: `proxy_http_version 1.1`).",
        },
        example=SSE_STREAM_EXAMPLE,
    )


STREAM_ONE = stream("Subscribe to one channel", [CHANNEL_IN_PATH])
STREAM_MANY = stream("Subscribe to several channels", CHANNELS_IN_QUERY)


def stream_alias(channels: Iterable[str]) -> Operation:
    return stream(f"Subscribe to {', '.join(channels)} (configured in `streams:`)")


NDJSON_BODY: JsonObject = {
    "type": "string",
    "description": "`application/x-ndjson`, usually chunked: one `PublishItem` per line, each published "
    "as soon as its line has arrived whole (blank lines are skipped). The answer is a "
    "`PublishStreamSummary`; an error stops the stream at its line and answers a `PublishStreamError` "
    "(docs/api.md, Publish as a stream).",
}


def publish(alias: bool) -> Operation:
    return Operation(
        "publish",
        "Publish one message or a batch" + (" (alias of /broadcast)" if alias else ""),
        {"oneOf": [ref("Receipt"), ref("Receipts"), ref("PublishStreamSummary")]},
        access="publish",
        request={"oneOf": [ref("PublishItem"), ref("PublishBatch")]},
        other_requests={"application/x-ndjson": NDJSON_BODY},
        error_body={"anyOf": [ref("ErrorBody"), ref("PublishStreamError")]},
        parameters=(
            parameter(
                "channel",
                "query",
                "NDJSON only: the channel of the lines that name no `channel`, `channels` or `client_id`.",
                {"type": "string"},
            ),
        ),
        status=202,
        description="Stored and published: one receipt, or a list of them for a batch (all or nothing); "
        "for an NDJSON stream, what it published.",
        operation_id="publishAlias" if alias else "publish",
        errors={
            **BODY_ERRORS,
            401: "No token.",
            403: "The token may not publish.",
            404: "`client_id` names no connected client.",
            408: "An NDJSON stream stayed silent for `limits.publish_stream_idle_seconds`.",
            409: 'A message names a channel that has ended (`channel_finished`, detail `{"channel": name}`); '
            "nothing of the request was published (an NDJSON stream: nothing from that line on).",
            503: "The broker cannot take the message (Redis down); nothing was published. Also past "
            "`limits.max_publish_streams` open NDJSON streams (`too_many_publish_streams`).",
        },
    )


AFTER = parameter("after", "query", "The page of clients after this client id: a `next` cursor.", TEXT)
BROKER_DOWN = {503: "The broker cannot answer (Redis down): `broker_unavailable`, never a stale answer."}
STATS = Operation(
    "operate",
    "Connections and counters of this instance (and, with `scope=cluster`, of the cluster)",
    {"anyOf": [ref("Stats"), ref("ClusterStats")]},
    access="admin",
    errors={400: "Invalid `limit`, `scope`, `channel` or `after`.", **ADMIN_ERRORS, **BROKER_DOWN},
    parameters=(
        parameter(
            "limit", "query", "List at most this many clients (1000 at most).", {"type": "integer", "minimum": 0}
        ),
        parameter(
            "scope", "query", "`cluster` adds every instance.", {"enum": ["local", "cluster"], "default": "local"}
        ),
        parameter("channel", "query", "List only the clients of this channel.", ref("ChannelName")),
        AFTER,
    ),
)
CHANNEL_PRESENCE = Operation(
    "operate",
    "Who holds a channel, on every live instance of the cluster",
    ref("ChannelPresence"),
    access="admin",
    errors={400: "Invalid channel name, `clients`, `limit` or `after`.", **ADMIN_ERRORS, **BROKER_DOWN},
    parameters=(
        CHANNEL_IN_PATH,
        parameter("clients", "query", "`1`: list the clients, a page at a time.", {"enum": ["0", "1"]}),
        parameter(
            "limit",
            "query",
            "With `clients=1`: at most this many clients (1000 at most).",
            {"type": "integer", "minimum": 0, "default": 100},
        ),
        AFTER,
    ),
    description="A channel nobody holds answers `subscribers: 0`. Counts are as of each instance's last "
    "directory write; a client's `messages_sent` as of its instance's last refresh (docs/api.md, Presence).",
)
CLIENT_PRESENCE = Operation(
    "operate",
    "Where a client is connected, in the whole cluster",
    ref("ClientPresence"),
    access="admin",
    errors={404: "No live instance holds it (`unknown_client`).", **ADMIN_ERRORS, **BROKER_DOWN},
    parameters=(parameter("client_id", "path", "The client.", TEXT, required=True),),
)
DISCONNECT = Operation(
    "operate",
    "Disconnect one client",
    ref("ClientDisconnected"),
    access="admin",
    errors={404: "No such client.", **ADMIN_ERRORS},
    parameters=(parameter("client_id", "path", "The client.", TEXT, required=True),),
)
METRICS = Operation("operate", "Prometheus metrics", TEXT, access="admin", errors=ADMIN_ERRORS, media="text/plain")
HEALTH = Operation("operate", "The process is up", ref("Health"))
READY = Operation(
    "operate",
    "The broker is usable",
    ref("Readiness"),
    errors={503: "Not ready."},
    error_body=ref("Readiness"),
    retry_after=frozenset(),
)
TICKETS = Operation(
    "subscribe",
    "A one-time ticket for `?ticket=`",
    ref("Ticket"),
    access="tickets",
    request=ref("TicketRequest"),
    status=201,
    errors={
        **BODY_ERRORS,
        **ADMIN_ERRORS,
        404: "Subscriber auth is off: no tickets.",
        503: "The broker cannot store the ticket (Redis down, or `limits.max_tickets` outstanding).",
    },
)
DOCUMENT = Operation("docs", "This document", {"type": "object"})
BROWSER_CLIENT = Operation("docs", "The browser helper (an ES module)", TEXT, media="text/javascript")
DEMO_PAGE = Operation("docs", "The demo page", TEXT, media="text/html")
DASHBOARD_READER_ERRORS = {
    401: "No admin token nor dashboard session (the body is the sign-in page for `GET /dashboard`).",
    403: "The token is not an admin token, or the session cookie expired.",
}
DASHBOARD = Operation(
    "operate",
    "The live dashboard (HTML)",
    TEXT,
    access="admin",
    media="text/html",
    description="Admin token in the header, or the `sse_hub_dashboard` cookie from `POST /dashboard/session`. "
    "Without either, 401 with the sign-in page (HTML) as its body (docs/api.md, Dashboard).",
    errors=DASHBOARD_READER_ERRORS,
)
DASHBOARD_ASSET = Operation(
    "operate",
    "The dashboard's script, style and chart library",
    TEXT,
    access="admin",
    media="text/javascript",
    parameters=(
        parameter(
            "name",
            "path",
            "One of the page's files.",
            {"enum": ["dashboard.js", "dashboard.css", "uPlot.iife.min.js", "uPlot.min.css"]},
            required=True,
        ),
    ),
    errors={**DASHBOARD_READER_ERRORS, 404: "No such asset."},
)
DASHBOARD_SIGN_IN = Operation(
    "operate",
    "Trade the admin token for the dashboard's session cookie",
    {"type": "null"},
    access="admin",
    status=204,
    description="Sets `sse_hub_dashboard` (HttpOnly, SameSite=Strict, for the dashboard's path, 8 hours): "
    "it lets a browser load `/dashboard` and its stream, which cannot send headers. It reads only; "
    "`/stats` and `DELETE /clients/{id}` still need the token in the header. No cookie when no "
    "`auth.admin_tokens` is set.",
    errors=ADMIN_ERRORS,
)
DASHBOARD_SIGN_OUT = Operation(
    "operate", "Drop the dashboard's session cookie", {"type": "null"}, status=204, description="Always 204."
)
DASHBOARD_STREAM = Operation(
    "operate",
    "The dashboard's live stats: a stream of `event: stats`, one a second",
    TEXT,
    access="admin",
    media="text/event-stream",
    description="Each event's data is one JSON frame: this instance's counters (`total_clients`, "
    "`messages_published`, `messages_delivered`, `slow_disconnects`, `disconnects` by reason), the broker's "
    "state, the cluster's clients, the 10 busiest channels and a row per instance (docs/api.md, Dashboard). "
    "Not a hub subscriber: it is not counted in `/stats`.",
    errors={**DASHBOARD_READER_ERRORS, 503: "Over 16 dashboard streams on this instance."},
    example='retry: 2000\n\nevent: stats\ndata: {"at":"2026-11-23T17:38:48.123Z","total_clients":3,...}\n\n',
)
