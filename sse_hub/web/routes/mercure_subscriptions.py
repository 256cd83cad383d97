"""Mercure's active subscriptions: ``GET /.well-known/mercure/subscriptions`` and below it,
in the form of the reading token's protocol (draft-07: ``/{topic}`` and
``/{topic}/{subscriber}``, JSON-LD with ``lastEventID``; 1.0: ``/{match_type}/{match}`` and
``/{match_type}/{match}/{subscriber}``, JSON with the cursor in a ``Link`` header; a path
of the other form is 404), and the subscription updates of every Mercure stream
(``SubscriptionEvents``). Only with ``mercure.enabled`` and ``mercure.subscriptions``
(``install``, ``routes``).

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
from sse_hub.mercure.protocol import Protocol
from sse_hub.mercure.subscriptions import (
    CONTEXT,
    SUBSCRIPTIONS_PATH,
    Subscription,
    authorize_reader,
    client_id_of,
    collection,
    cursor_link,
    subscription_updates,
    subscriptions_of,
    v1_collection,
)
from sse_hub.mercure.tokens import select_token
from sse_hub.messages.contract import MercureSubscriber
from sse_hub.web.openapi.mercure_subscriptions import LD_JSON, LIST, LIST_TOPIC, MAX_PAGE, ONE_V1, TWO
from sse_hub.web.openapi.spec import Route
from sse_hub.web.state import HUB, SETTINGS

logger = logging.getLogger(__name__)

WRITTEN_TIMEOUT_SECONDS = 1.0
DISCONNECT_TIMEOUT_SECONDS = 5.0


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


def routes(auth: MercureAuthorizer) -> list[Route]:
    handler = reader(auth)
    return [
        Route("GET", SUBSCRIPTIONS_PATH, handler, LIST),
        Route("GET", SUBSCRIPTIONS_PATH + "/{first}", handler, LIST_TOPIC),
        Route("GET", SUBSCRIPTIONS_PATH + "/{first}/{second}", handler, TWO),
        Route("GET", SUBSCRIPTIONS_PATH + "/{first}/{second}/{subscriber}", handler, ONE_V1),
    ]


def reader(auth: MercureAuthorizer) -> Handler:
    """The handler of every form, bound to the Mercure endpoint's authorizer."""

    async def read(request: web.Request) -> web.Response:
        names = ("first", "second", "subscriber")
        return await answer(
            request, auth, tuple(request.match_info[name] for name in names if name in request.match_info)
        )

    return read


async def answer(request: web.Request, auth: MercureAuthorizer, parts: tuple[str, ...]) -> web.Response:
    """``parts``: the path's segments after ``/subscriptions``, decoded. The token's
    protocol says how many name a selector (draft-07: the selector, 1.0: its match type
    and value), and the form of the answer."""
    path = resource_path(parts)
    token = select_token(request.headers.get("Authorization"), None, request.cookies, allow_query=False)
    # A missing token is 401 here even when anonymous subscribers are allowed.
    grant = authorize_reader(None if token is None else auth.authorize_subscriber(token), path)
    v1 = grant.protocol is Protocol.V1
    named = 2 if v1 else 1
    if len(parts) not in (0, named, named + 1):
        raise NotFound("no such resource in the form of this token's protocol")
    hub = request.app[HUB]
    last_event_id = await current_event_id(hub)  # before the list (invariant 1)
    if len(parts) == named + 1:
        found = await find(hub, parts[:named], parts[named])
        if v1:
            return v1_json(request, found.v1(), last_event_id)
        return ld_json({"@context": CONTEXT, **found.draft07(), "lastEventID": last_event_id})
    after, limit = page_query(request)
    page = await hub.directory.mercure_subscribers(after, limit)
    listed = [
        found.v1() if v1 else found.draft07()
        for described in page.subscribers.values()
        for found in subscriptions_of(described)
        if not parts or names_of(found, len(parts)) == parts
    ]
    document = v1_collection(path, listed) if v1 else collection(path, last_event_id, listed)
    if page.next_after is not None:
        document["next"] = f"{path}?{urlencode({'after': page.next_after, 'limit': limit})}"
    return v1_json(request, document, last_event_id) if v1 else ld_json(document)


def names_of(found: Subscription, named: int) -> tuple[str, ...]:
    """What names ``found``'s selector in a path: its value (draft-07), or its match type
    and value (1.0)."""
    selector = found.selector
    return (selector.value,) if named == 1 else (selector.match_type.value, selector.value)


def resource_path(parts: tuple[str, ...]) -> str:
    """The requested resource, percent-encoded as the subscription ids are."""
    return "/".join([SUBSCRIPTIONS_PATH, *(quote(part, safe="") for part in parts)])


async def current_event_id(hub: Hub) -> str:
    """The hub's last event id, as a cursor for subscribing (``earliest``: none yet), in
    the hub's id scheme (on the sharded cluster, the feed's position)."""
    return await hub.ids.last_mercure_id(hub.broker)


async def find(hub: Hub, selector: tuple[str, ...], iri: str) -> Subscription:
    client_id = client_id_of(iri)
    described = None if client_id is None else await hub.directory.find_mercure_subscriber(client_id)
    if described is not None and described.subscriber == iri:
        for found in subscriptions_of(described):
            if names_of(found, len(selector)) == selector:
                return found
    raise NotFound("no such active subscription")


def page_query(request: web.Request) -> tuple[str | None, int]:
    raw = request.query.get("limit", str(MAX_PAGE))
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 4) or not 1 <= int(raw) <= MAX_PAGE:
        raise BadRequest(f"limit is a number from 1 to {MAX_PAGE}", {"limit": raw[:50]})
    return request.query.get("after") or None, int(raw)


def ld_json(document: dict[str, object]) -> web.Response:
    return web.json_response(document, content_type=LD_JSON)


def v1_json(request: web.Request, document: dict[str, object], last_event_id: str) -> web.Response:
    """1.0: plain JSON, the cursor in the ``Link`` header (with the hub's public URL)."""
    link = cursor_link(request.app[SETTINGS].mercure.public_url, last_event_id)
    return web.json_response(document, headers={"Link": link})
