"""Mercure's active subscriptions: ``GET /.well-known/mercure/subscriptions``,
``.../subscriptions/{topic}`` and ``.../subscriptions/{topic}/{subscriber}``, and the
subscription updates of every Mercure stream (``SubscriptionEvents``). Only with
``mercure.enabled`` and ``mercure.subscriptions`` (``install``, ``ROUTES``).

The documents and the rules are ``sse_hub.mercure.subscriptions``; who is subscribed is
the client directory's (``ClientDirectory.mercure_subscribers``): this instance's on
memory, every live instance's on Redis.

Invariants:

1. Order, so that "list, then subscribe from ``lastEventID``" misses nothing: a stream is
   stored in the directory (``written``) before its connect update is published, and
   removed from it before its disconnect update; the API reads the last event id before
   the list. So every update up to ``lastEventID`` is reflected in the list, and the
   later ones follow on the stream (some may repeat what the list shows: a connect of a
   listed subscriber, harmless to apply twice).
2. A disconnect update is owed once the connect's publish began (if that publish failed,
   an unmatched disconnect may follow: a consumer applies ``active: false`` to a
   subscriber it never saw). It is published by a task this object owns, bounded by
   ``DISCONNECT_TIMEOUT_SECONDS`` and logged when it fails; ``close`` (app cleanup, before
   the hub stops) waits for the ones on their way, as long again at most.
3. Bounded answers: a call reads at most ``MAX_PAGE`` subscribers (``?limit=``), in
   client id order; ``next`` (a URL with ``?after=``) is there when more may follow.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from urllib.parse import quote, urlencode

from aiohttp import web
from aiohttp.typedefs import Handler

from sse_hub.core.hub import Hub
from sse_hub.core.subscriber import Subscriber
from sse_hub.errors import BadRequest, BrokerUnavailable, NotFound
from sse_hub.mercure.auth import MercureAuthorizer
from sse_hub.mercure.subscriptions import (
    CONTEXT,
    SUBSCRIPTIONS_PATH,
    Subscription,
    authorize_reader,
    client_id_of,
    collection,
    subscription,
    subscription_updates,
)
from sse_hub.mercure.tokens import select_token
from sse_hub.messages.contract import MercureSubscriber
from sse_hub.web.openapi.spec import JsonObject, Operation, Route
from sse_hub.web.state import HUB

logger = logging.getLogger(__name__)

MAX_PAGE = 1000  # the roster's (broker/redis/roster.py): one script call per answer
WRITTEN_TIMEOUT_SECONDS = 1.0
DISCONNECT_TIMEOUT_SECONDS = 5.0
LD_JSON = "application/ld+json"


class SubscriptionEvents:
    """Publishes every Mercure stream's connect and disconnect updates (invariants 1, 2)."""

    def __init__(self, hub: Hub) -> None:
        self._hub = hub
        self._tasks: set[asyncio.Task[None]] = set()

    async def connected(self, subscriber: Subscriber, described: MercureSubscriber) -> None:
        """The stream is registered and its feed attached: store it, then announce it."""
        directory = self._hub.directory
        directory.mercure_subscribed(subscriber.client_id, described)
        await self._written(described)
        subscriber.wait_closed().add_done_callback(lambda _: self._closed(subscriber.client_id, described))
        await self._hub.publish(subscription_updates(described, active=True))

    def _closed(self, client_id: str, described: MercureSubscriber) -> None:
        self._hub.directory.mercure_subscribed(client_id, None)
        task = asyncio.create_task(self._disconnected(described), name="sse-hub-mercure-disconnect")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _disconnected(self, described: MercureSubscriber) -> None:
        try:
            async with asyncio.timeout(DISCONNECT_TIMEOUT_SECONDS):
                await self._written(described)
                await self._hub.publish(subscription_updates(described, active=False))
        except (BrokerUnavailable, TimeoutError) as exc:
            logger.warning("mercure: no disconnect update for subscriber=%s: %r", described.subscriber, exc)
        except Exception:  # task boundary
            logger.exception("mercure: the disconnect update of subscriber=%s failed", described.subscriber)

    async def _written(self, described: MercureSubscriber) -> None:
        try:
            async with asyncio.timeout(WRITTEN_TIMEOUT_SECONDS):
                await self._hub.directory.written()
        except TimeoutError:
            logger.warning("mercure: directory not written in time, subscriber=%s", described.subscriber)

    async def close(self) -> None:
        """Wait for the disconnect updates on their way (bounded), then cancel the rest."""
        await asyncio.sleep(0)  # let close callbacks of streams ended just now start theirs
        tasks = set(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=DISCONNECT_TIMEOUT_SECONDS)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


EVENTS = web.AppKey("mercure_subscription_events", SubscriptionEvents)


def install(app: web.Application) -> None:
    """Subscription updates on: the events object, stopped before the hub."""
    app[EVENTS] = events = SubscriptionEvents(app[HUB])

    async def run(_: web.Application) -> AsyncIterator[None]:
        yield
        await events.close()

    app.cleanup_ctx.append(run)


TEXT: JsonObject = {"type": "string"}
SUBSCRIPTION: JsonObject = {
    "type": "object",
    "properties": {
        "@context": TEXT,
        "id": TEXT,
        "type": {"const": "Subscription"},
        "topic": TEXT,
        "subscriber": TEXT,
        "active": {"type": "boolean"},
        "payload": {},
        "lastEventID": TEXT,
    },
    "required": ["id", "type", "topic", "subscriber", "active"],
}
SUBSCRIPTIONS: JsonObject = {
    "type": "object",
    "properties": {
        "@context": TEXT,
        "id": TEXT,
        "type": {"const": "Subscriptions"},
        "lastEventID": TEXT,
        "subscriptions": {"type": "array", "items": SUBSCRIPTION},
        "next": TEXT,
    },
    "required": ["@context", "id", "type", "lastEventID", "subscriptions"],
}
PAGE_PARAMETERS: tuple[JsonObject, ...] = (
    {"name": "limit", "in": "query", "description": f"Subscribers read, 1 to {MAX_PAGE}.", "schema": TEXT},
    {"name": "after", "in": "query", "description": "The cursor of `next`.", "schema": TEXT},
)
TOPIC: JsonObject = {"name": "topic", "in": "path", "required": True, "description": "A selector.", "schema": TEXT}
SUBSCRIBER: JsonObject = {"name": "subscriber", "in": "path", "required": True, "schema": TEXT}
ERRORS = {
    400: "Bad `limit`.",
    401: "No token, or the token is not valid.",
    403: "The token's subscribe selectors do not match this resource.",
}


def _operation(summary: str, answer: JsonObject, parameters: tuple[JsonObject, ...], **more: str) -> Operation:
    errors = {**ERRORS, **{int(status[1:]): text for status, text in more.items()}}
    return Operation("subscribe", summary, answer, media=LD_JSON, parameters=parameters, errors=errors)


LIST = _operation("Mercure: active subscriptions (docs/mercure.md#subscriptions)", SUBSCRIPTIONS, PAGE_PARAMETERS)
LIST_TOPIC = _operation("Mercure: active subscriptions to a selector", SUBSCRIPTIONS, (TOPIC, *PAGE_PARAMETERS))
ONE = _operation("Mercure: one active subscription", SUBSCRIPTION, (TOPIC, SUBSCRIBER), s404="Not active.")


def routes(auth: MercureAuthorizer) -> list[Route]:
    every, for_topic, one = handlers(auth)
    return [
        Route("GET", SUBSCRIPTIONS_PATH, every, LIST),
        Route("GET", SUBSCRIPTIONS_PATH + "/{topic}", for_topic, LIST_TOPIC),
        Route("GET", SUBSCRIPTIONS_PATH + "/{topic}/{subscriber}", one, ONE),
    ]


def handlers(auth: MercureAuthorizer) -> tuple[Handler, Handler, Handler]:
    """The handlers of the three forms, bound to the Mercure endpoint's authorizer."""

    async def every(request: web.Request) -> web.Response:
        return await answer(request, auth, None, None)

    async def for_topic(request: web.Request) -> web.Response:
        return await answer(request, auth, request.match_info["topic"], None)

    async def one(request: web.Request) -> web.Response:
        return await answer(request, auth, request.match_info["topic"], request.match_info["subscriber"])

    return every, for_topic, one


async def answer(
    request: web.Request, auth: MercureAuthorizer, topic: str | None, subscriber: str | None
) -> web.Response:
    path = resource_path(topic, subscriber)
    token = select_token(request.headers.get("Authorization"), None, request.cookies, allow_query=False)
    # A missing token is 401 here even when anonymous subscribers are allowed.
    authorize_reader(None if token is None else auth.authorize_subscriber(token), path)
    hub = request.app[HUB]
    last_event_id = await current_event_id(hub)  # before the list (invariant 1)
    if subscriber is not None and topic is not None:
        found = await find(hub, topic, subscriber)  # its id is ``path``
        return ld_json({"@context": CONTEXT, **found, "lastEventID": last_event_id})
    after, limit = page_query(request)
    page = await hub.directory.mercure_subscribers(after, limit)
    listed: list[Subscription] = [
        subscription(selector, described)
        for described in page.subscribers.values()
        for selector in described.topics
        if topic is None or selector == topic
    ]
    document = collection(path, last_event_id, listed)
    if page.next_after is not None:
        document["next"] = f"{path}?{urlencode({'after': page.next_after, 'limit': limit})}"
    return ld_json(document)


def resource_path(topic: str | None, subscriber: str | None) -> str:
    """The requested resource, percent-encoded as the subscription ids are."""
    parts = [SUBSCRIPTIONS_PATH, *(quote(part, safe="") for part in (topic, subscriber) if part is not None)]
    return "/".join(parts)


async def current_event_id(hub: Hub) -> str:
    """The hub's last event id, as a cursor for subscribing (``earliest``: none yet), in
    the hub's id scheme (on the sharded cluster, the feed's position)."""
    return await hub.ids.last_mercure_id(hub.broker)


async def find(hub: Hub, topic: str, iri: str) -> Subscription:
    client_id = client_id_of(iri)
    described = None if client_id is None else await hub.directory.find_mercure_subscriber(client_id)
    if described is None or described.subscriber != iri or topic not in described.topics:
        raise NotFound("no such active subscription")
    return subscription(topic, described)


def page_query(request: web.Request) -> tuple[str | None, int]:
    raw = request.query.get("limit", str(MAX_PAGE))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"limit is a number from 1 to {MAX_PAGE}", {"limit": raw[:50]})
    return request.query.get("after") or None, int(raw)


def ld_json(document: dict[str, object]) -> web.Response:
    return web.json_response(document, content_type=LD_JSON)
