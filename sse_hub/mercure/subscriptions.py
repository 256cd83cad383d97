"""Mercure's active subscriptions (draft-07, "Active Subscriptions"): the subscription
updates a hub publishes when a subscriber connects and disconnects, the JSON-LD documents
of the subscriptions API, and who may read them.

- A subscriber (one Mercure stream) gets the IRI ``urn:sse-hub:client:{client id}``
  (``subscriber_iri``): unique in the cluster as the client id is, and it names the stream
  without a lookup table (the API's ``{subscriber}`` form reads it back, ``client_id_of``).
- Each of its topic selectors is one subscription, whose id is the topic
  ``/.well-known/mercure/subscriptions/{topic}/{subscriber}``, both percent-encoded once
  (RFC 3986: everything but the unreserved characters), so the spec's URI template
  ``/.well-known/mercure/subscriptions{/topic}{/subscriber}`` matches it. Relative, as the
  spec writes it and the reference hub sends it.
- An update per subscription, private (the spec: MUST), ``active`` true at connect and
  false at disconnect, data a JSON-LD ``Subscription`` with the token's
  ``mercure.payload`` when there is one. They are ordinary updates on the feed: numbered,
  kept in history, replayed.
- Reading the API needs a token (401 without one, even when anonymous subscribers are
  allowed) whose ``subscribe`` selectors match the requested path as sent, percent-encoded
  (the reference hub matches ``RequestURI``; the query is not part of it here), else 403.

Pure: no aiohttp, no hub; the route and the subscribe path use it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Literal, TypedDict
from urllib.parse import quote

from sse_hub.mercure.errors import MercureForbidden, MercureUnauthorized
from sse_hub.mercure.grants import MercureGrant
from sse_hub.mercure.protocol import HUB_PATH
from sse_hub.messages.contract import MercureSubscriber
from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta
from sse_hub.messages.message import Draft

SUBSCRIPTIONS_PATH = f"{HUB_PATH}/subscriptions"
# The selector that receives every subscription update (the spec's recommendation).
SUBSCRIPTIONS_TEMPLATE = SUBSCRIPTIONS_PATH + "{/topic}{/subscriber}"
CONTEXT = "https://mercure.rocks/"
SUBSCRIBER_PREFIX = "urn:sse-hub:client:"


class Subscription(TypedDict, total=False):
    """One subscription as JSON-LD (``@context`` only when it stands alone)."""

    id: str
    type: Literal["Subscription"]
    topic: str
    subscriber: str
    active: bool
    payload: object


def subscriber_iri(client_id: str) -> str:
    return SUBSCRIBER_PREFIX + client_id


def client_id_of(iri: str) -> str | None:
    """The client id an IRI of ``subscriber_iri`` names, or None for any other IRI."""
    client_id = iri.removeprefix(SUBSCRIBER_PREFIX)
    return client_id if client_id != iri and client_id else None


def describe_subscriber(client_id: str, topics: Iterable[str], grant: MercureGrant | None) -> MercureSubscriber:
    """What the directory keeps of a new Mercure stream (its selectors as sent)."""
    payload = None if grant is None or grant.payload is None else json.dumps(grant.payload, separators=(",", ":"))
    return MercureSubscriber(subscriber_iri(client_id), tuple(topics), payload)


def subscription_id(topic: str, subscriber: str) -> str:
    return f"{SUBSCRIPTIONS_PATH}/{quote(topic, safe='')}/{quote(subscriber, safe='')}"


def subscription(topic: str, subscriber: MercureSubscriber, *, active: bool = True) -> Subscription:
    document: Subscription = {
        "id": subscription_id(topic, subscriber.subscriber),
        "type": "Subscription",
        "topic": topic,
        "subscriber": subscriber.subscriber,
        "active": active,
    }
    if subscriber.payload is not None:
        document["payload"] = json.loads(subscriber.payload)
    return document


def subscription_updates(subscriber: MercureSubscriber, *, active: bool) -> list[Draft]:
    """One private update per subscription of ``subscriber``, on the feed."""
    drafts = []
    for topic in subscriber.topics:
        document = {"@context": CONTEXT, **subscription(topic, subscriber, active=active)}
        drafts.append(
            Draft(
                event="message",
                data=json.dumps(document, separators=(",", ":")),
                channels=(FEED_CHANNEL,),
                published_at=time.time(),
                mercure=MercureMeta((str(document["id"]),), private=True),
            )
        )
    return drafts


def collection(path: str, last_event_id: str, subscriptions: list[Subscription]) -> dict[str, object]:
    """The ``Subscriptions`` document of the API (``path``: the requested one)."""
    return {
        "@context": CONTEXT,
        "id": path,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": subscriptions,
    }


def authorize_reader(grant: MercureGrant | None, path: str) -> None:
    """Raise 401 without a token, 403 when its ``subscribe`` selectors miss ``path``."""
    if grant is None:
        raise MercureUnauthorized("reading subscriptions needs a token", error=None)
    if not grant.subscribe.matches(path):
        raise MercureForbidden("the token does not allow reading these subscriptions")
