"""``GET`` and ``POST /.well-known/mercure``: the Mercure protocol (draft-07 and 1.0).

Thin: every rule lives in ``sse_hub.mercure`` (query, form, tokens, grants, ids) and in
the hub (``open_mercure``, ``prepare_mercure_replay``, the Mercure fan-out). The routes
exist only when ``mercure.enabled`` (``routes``), each bound to one ``MercureAuthorizer``
built from the settings.

Subscribe: query -> token (header, then the ``authorization`` query parameter for
draft-07, then the cookies) -> grant (anonymous, 401) -> capacity -> registered and the
feed attached -> replay read and the cursor response header known -> headers -> the
stream, handed over as the channels' streams are (``stream_protocol``); the token's
``exp`` closes it. With ``mercure.subscriptions`` the stream's connect update is
published before its headers, its disconnect update when it closes
(``mercure_subscriptions.SubscriptionEvents``). Publish: form media type (415) -> body within
``limits.max_message_bytes`` (413) -> form (400) -> token must grant every topic
(401/403) -> one hub message on the feed channel -> ``200 text/plain`` with its id.

Invariants: the subscriber is registered (live messages held) before the replay is read
and before the response headers go out, so an update published once the client saw the
headers is delivered; a subscriber that was opened is released exactly once (here when
the stream ends before its handover, else by the stream protocol).
"""

from __future__ import annotations

import time

from aiohttp import web
from aiohttp.typedefs import Handler

from sse_hub.config.settings import Settings
from sse_hub.errors import (
    UnsupportedMediaType,
)
from sse_hub.mercure.auth import AccessTokenPolicy, JwtKey, MercureAuthorizer
from sse_hub.mercure.protocol import HUB_PATH, Protocol
from sse_hub.mercure.publish_form import parse_publish_form
from sse_hub.mercure.subscribe_query import parse_subscribe_query
from sse_hub.mercure.subscriptions import describe_subscriber
from sse_hub.mercure.tokens import select_token
from sse_hub.messages.mercure import FEED_CHANNEL
from sse_hub.messages.message import Draft
from sse_hub.web.bodies import read_body
from sse_hub.web.openapi.spec import JsonObject, Operation, ref
from sse_hub.web.routes.mercure_subscriptions import EVENTS
from sse_hub.web.routes.stream import (
    SSE_HEADERS,
    Opening,
    client_ip,
    head_only,
    require_http11,
    run_stream,
    user_agent,
)
from sse_hub.web.state import HUB, SETTINGS

FORM = "application/x-www-form-urlencoded"
MERCURE_SSE_HEADERS = {
    **SSE_HEADERS,
    # As the reference hub: no cache, shared or private, keeps a stream.
    "Cache-Control": "private, no-cache, no-store, must-revalidate, max-age=0, no-transform",
    "Access-Control-Expose-Headers": "Last-Event-ID, Mercure-Last-Event-ID",
}
TEXT: JsonObject = {"type": "string"}


def _parameter(name: str, where: str, description: str) -> JsonObject:
    return {"name": name, "in": where, "description": description, "schema": TEXT}


SUBSCRIBE_PARAMETERS = (
    _parameter("topic", "query", "draft-07 selector (repeatable): `*`, an exact topic or an RFC 6570 URI template."),
    _parameter("match", "query", "1.0 exact selector (repeatable), or `*`."),
    _parameter("match_urlpattern", "query", "1.0 WHATWG URL Pattern selector (repeatable)."),
    _parameter("Last-Event-ID", "header", "Resume after this id (wins over the query forms); `earliest`: all."),
    _parameter("lastEventID", "query", "draft-07 form of the cursor."),
    _parameter("last_event_id", "query", "1.0 form of the cursor."),
    _parameter("authorization", "query", "draft-07 only: the subscriber's JWT."),
)
SUBSCRIBE = Operation(
    "subscribe",
    "Mercure: subscribe to topics (docs/mercure.md)",
    TEXT,
    media="text/event-stream",
    parameters=SUBSCRIBE_PARAMETERS,
    errors={400: "Bad selectors or cursor.", 401: "A token is needed, or the token is not valid."},
    error_body=ref("ErrorBody"),
)
PUBLISH = Operation(
    "publish",
    "Mercure: publish an update (form-encoded; docs/mercure.md)",
    TEXT,
    media="text/plain",
    errors={
        400: "Bad form fields.",
        401: "No token, or the token is not valid.",
        403: "The token does not grant every topic.",
        413: "The body is over `limits.max_message_bytes`, or too many fields.",
        415: "The body is not `application/x-www-form-urlencoded`.",
    },
)


def authorizer(settings: Settings) -> MercureAuthorizer:
    config = settings.mercure
    publisher_key = JwtKey.from_config(config.publisher_jwt)
    if publisher_key is None:  # config.settings.MercureConfig refuses this at load time
        raise ValueError("mercure.enabled needs mercure.publisher_jwt")
    subscriber_key = JwtKey.from_config(config.subscriber_jwt) if config.subscriber_jwt else None
    return MercureAuthorizer(
        publisher_key=publisher_key,
        subscriber_key=subscriber_key,
        policy=AccessTokenPolicy(frozenset({config.public_url, *config.audiences}), frozenset(config.issuers)),
        base_url=config.public_url,
        anonymous=config.anonymous,
        accept_legacy_tokens=config.accept_legacy_tokens,
    )


def handlers(auth: MercureAuthorizer) -> tuple[Handler, Handler]:
    """The subscribe and publish handlers, bound to one authorizer (``authorizer``, which
    the subscriptions API shares)."""

    async def subscribe_handler(request: web.Request) -> web.StreamResponse:
        return await subscribe(request, auth)

    async def publish_handler(request: web.Request) -> web.Response:
        return await publish(request, auth)

    return subscribe_handler, publish_handler


async def subscribe(request: web.Request, auth: MercureAuthorizer) -> web.StreamResponse:
    hub_url = request.app[SETTINGS].mercure.public_url
    query = parse_subscribe_query(request.query.items(), request.headers.get("Last-Event-ID"), hub_url)
    require_http11(request)
    token = select_token(
        request.headers.get("Authorization"),
        query.query_token,
        request.cookies,
        allow_query=query.protocol is Protocol.DRAFT_07,
    )
    grant = auth.authorize_subscriber(token)
    hub = request.app[HUB]
    ip = client_ip(request)
    hub.check_capacity(ip)
    if request.method == "HEAD":
        return await head_only(request, MERCURE_SSE_HEADERS)
    subscriber = hub.open_mercure(query.subscription, grant, ip, user_agent(request))
    events = request.app.get(EVENTS)

    async def start() -> Opening:
        preamble, replay, cursor_header = await hub.prepare_mercure_replay(subscriber, query.cursor)
        if events is not None:  # mercure.subscriptions: live now, so announce it
            described = describe_subscriber(subscriber.client_id, query.selectors, grant)
            await events.connected(subscriber, described)
        headers = dict(MERCURE_SSE_HEADERS)
        if cursor_header is not None:
            headers[query.cursor_response_header] = cursor_header
        return Opening(preamble, replay, headers)

    return await run_stream(request, hub, subscriber, grant.expires_at if grant is not None else None, start)


async def publish(request: web.Request, auth: MercureAuthorizer) -> web.Response:
    settings = request.app[SETTINGS]
    if request.content_type != FORM:
        raise UnsupportedMediaType(f"send Content-Type: {FORM}", {"content_type": request.content_type})
    body = await read_body(request, settings.limits.max_message_bytes)
    form = parse_publish_form(body, settings.mercure.public_url)
    token = select_token(request.headers.get("Authorization"), None, request.cookies, allow_query=False)
    auth.authorize_publish(token, form.topics)
    meta = form.meta()
    draft = Draft(
        event=form.event_type or "message",
        data=form.data,
        channels=(FEED_CHANNEL,),
        retry_ms=form.retry_ms,
        published_at=time.time(),
        mercure=meta,
    )
    [message] = await request.app[HUB].publish([draft])
    return web.Response(text=meta.sse_id(message.id, message.pos), content_type="text/plain", charset="utf-8")


__all__ = ["HUB_PATH", "PUBLISH", "SUBSCRIBE", "handlers"]
