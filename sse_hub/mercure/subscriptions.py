"""Mercure's active subscriptions in both protocols' forms: the subscription updates a hub
publishes when a subscriber connects and disconnects, the documents of the subscriptions
API, and who may read them (docs/mercure.md, "Subscriptions").

- A subscriber (one Mercure stream) gets the IRI ``urn:sse-hub:client:{client id}``
  (``subscriber_iri``): unique in the cluster as the client id is, and it names the stream
  without a lookup table (the API's single form reads it back, ``client_id_of``).
- Each of its selectors is one subscription: one ``Subscription`` value, the one source
  of truth, rendered in two forms (``draft07``, ``v1``):

  - draft-07: id and topic ``/.well-known/mercure/subscriptions/{topic}/{subscriber}``,
    JSON-LD ``{"@context", "id", "type": "Subscription", "topic", "subscriber", "active",
    "payload"?}``, SSE event ``message``;
  - 1.0: id and topic ``/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}``,
    JSON ``{"id", "type": "subscription", "match_type", "match", "subscriber", "active",
    "payload"?}``, SSE event ``mercure``. A draft-07 selector's ``match_type`` is ``topic``
    (neither 1.0 matcher says what it does: exact or URI template).

  Each variable is percent-encoded once (RFC 3986: everything but the unreserved
  characters), so no part holds a ``/``: the two forms' ids never collide (2 and 3
  segments), the draft-07 template ``/.well-known/mercure/subscriptions{/topic}{/subscriber}``
  matches only the first and the URL Pattern
  ``/.well-known/mercure/subscriptions/:match_type/:match/:subscriber`` only the second.
  Relative, as both specs write them.
- Both forms are published for every subscription, each a private update (the spec: MUST),
  ``active`` true at connect and false at disconnect: a watcher picks its form by its
  selector, whatever the protocol of the subscriber it watches. They are ordinary updates
  on the feed: numbered, kept in history, replayed.
- Reading the API needs a token (401 without one, even when anonymous subscribers are
  allowed) whose ``subscribe`` selectors match the requested path as sent, percent-encoded
  (the reference hub matches ``RequestURI``; the query is not part of it here), else 403.
  The token's kind chooses the form of the answer (``MercureGrant.protocol``).

Pure: no aiohttp, no hub; the route and the subscribe path use it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote

from sse_hub.mercure.errors import MercureForbidden, MercureUnauthorized
from sse_hub.mercure.grants import MercureGrant
from sse_hub.mercure.protocol import HUB_PATH
from sse_hub.mercure.selectors import MatchType, Selector
from sse_hub.messages.contract import MercureSubscriber
from sse_hub.messages.mercure import FEED_CHANNEL, MercureMeta
from sse_hub.messages.message import Draft

SUBSCRIPTIONS_PATH = f"{HUB_PATH}/subscriptions"
# The selectors that receive every subscription update of one form (the specs' recommendation).
SUBSCRIPTIONS_TEMPLATE = SUBSCRIPTIONS_PATH + "{/topic}{/subscriber}"
SUBSCRIPTIONS_URLPATTERN = SUBSCRIPTIONS_PATH + "/:match_type/:match/:subscriber"
CONTEXT = "https://mercure.rocks/"
SUBSCRIBER_PREFIX = "urn:sse-hub:client:"
V1_EVENT = "mercure"  # the SSE event type of 1.0 subscription updates

Document = dict[str, object]


def _encoded(*parts: str) -> str:
    return "/".join([SUBSCRIPTIONS_PATH, *(quote(part, safe="") for part in parts)])


@dataclass(frozen=True, slots=True)
class Subscription:
    """One selector of one subscriber; ``payload``: the token's, as JSON text (None: none)."""

    selector: Selector
    subscriber: str
    active: bool = True
    payload: str | None = None

    @property
    def draft07_id(self) -> str:
        return _encoded(self.selector.value, self.subscriber)

    @property
    def v1_id(self) -> str:
        return _encoded(self.selector.match_type.value, self.selector.value, self.subscriber)

    def draft07(self) -> Document:
        """The JSON-LD ``Subscription`` (without ``@context``: a collection holds it)."""
        document: Document = {
            "id": self.draft07_id,
            "type": "Subscription",
            "topic": self.selector.value,
            "subscriber": self.subscriber,
            "active": self.active,
        }
        return self._with_payload(document)

    def v1(self) -> Document:
        document: Document = {
            "id": self.v1_id,
            "type": "subscription",
            "match_type": self.selector.match_type.value,
            "match": self.selector.value,
            "subscriber": self.subscriber,
            "active": self.active,
        }
        return self._with_payload(document)

    def _with_payload(self, document: Document) -> Document:
        if self.payload is not None:
            document["payload"] = json.loads(self.payload)
        return document


def subscriber_iri(client_id: str) -> str:
    return SUBSCRIBER_PREFIX + client_id


def client_id_of(iri: str) -> str | None:
    """The client id an IRI of ``subscriber_iri`` names, or None for any other IRI."""
    client_id = iri.removeprefix(SUBSCRIBER_PREFIX)
    return client_id if client_id != iri and client_id else None


def describe_subscriber(client_id: str, selectors: Iterable[Selector], grant: MercureGrant | None) -> MercureSubscriber:
    """What the directory keeps of a new Mercure stream (its selectors as sent)."""
    payload = None if grant is None or grant.payload is None else json.dumps(grant.payload, separators=(",", ":"))
    chosen = tuple(selectors)
    return MercureSubscriber(
        subscriber_iri(client_id),
        tuple(selector.value for selector in chosen),
        payload,
        tuple(selector.match_type.value for selector in chosen),
    )


def subscriptions_of(subscriber: MercureSubscriber, *, active: bool = True) -> list[Subscription]:
    """Its subscriptions, one per selector (``match_types`` empty: draft-07 topics)."""
    kinds = subscriber.match_types or (MatchType.TOPIC.value,) * len(subscriber.topics)
    return [
        Subscription(Selector(MatchType(kind), value), subscriber.subscriber, active, subscriber.payload)
        for kind, value in zip(kinds, subscriber.topics, strict=True)
    ]


def _update(topic: str, document: Document, event: str) -> Draft:
    return Draft(
        event=event,
        data=json.dumps(document, separators=(",", ":")),
        channels=(FEED_CHANNEL,),
        published_at=time.time(),
        mercure=MercureMeta((topic,), private=True),
    )


def subscription_updates(subscriber: MercureSubscriber, *, active: bool) -> list[Draft]:
    """Two private updates per subscription of ``subscriber`` (draft-07, then 1.0), on the feed."""
    drafts = []
    for found in subscriptions_of(subscriber, active=active):
        drafts.append(_update(found.draft07_id, {"@context": CONTEXT, **found.draft07()}, "message"))
        drafts.append(_update(found.v1_id, found.v1(), V1_EVENT))
    return drafts


def collection(path: str, last_event_id: str, subscriptions: list[Document]) -> Document:
    """The draft-07 ``Subscriptions`` document of the API (``path``: the requested one)."""
    return {
        "@context": CONTEXT,
        "id": path,
        "type": "Subscriptions",
        "lastEventID": last_event_id,
        "subscriptions": subscriptions,
    }


def v1_collection(path: str, subscriptions: list[Document]) -> Document:
    """The 1.0 collection: plain JSON, its cursor goes in the ``Link`` header."""
    return {"id": path, "type": "Subscriptions", "subscriptions": subscriptions}


def cursor_link(hub_url: str, last_event_id: str) -> str:
    """The 1.0 API's ``Link`` header: the hub, with the last event id as the cursor."""
    return f'<{hub_url}>; rel="mercure"; last-event-id="{last_event_id}"'


def authorize_reader(grant: MercureGrant | None, path: str) -> MercureGrant:
    """Raise 401 without a token, 403 when its ``subscribe`` selectors miss ``path``."""
    if grant is None:
        raise MercureUnauthorized("reading subscriptions needs a token", error=None)
    if not grant.subscribe.matches(path):
        raise MercureForbidden("the token does not allow reading these subscriptions")
    return grant
