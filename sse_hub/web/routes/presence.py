"""Presence: ``GET /channels/{name}`` (who holds a channel, on which instance) and
``GET /clients/{id}`` (where a client is connected), across the cluster.

Invariants:

1. The same admin auth as ``/stats``.
2. One answer, one source: on a single instance the hub's registry; in a cluster the
   client directory (``ClientDirectory.channel_presence``/``find_client``: one store call,
   bounded), where this instance's own clients are then read fresh from the registry.
   A directory that cannot answer raises ``BrokerUnavailable`` (503): never a stale success.
3. Bounded: a page lists at most ``MAX_PAGE`` clients (``?limit=``, default
   ``DEFAULT_PAGE``), in client id order; ``next`` is the id to pass as ``?after=``.
"""

from __future__ import annotations

from aiohttp import web

from sse_hub.core.hub import Hub
from sse_hub.core.subscriber import Subscriber
from sse_hub.errors import BadRequest, InvalidChannel, UnknownClient
from sse_hub.messages.contract import ChannelPresence, ClientRecord
from sse_hub.messages.message import is_valid_channel
from sse_hub.web.bodies import json_answer
from sse_hub.web.openapi.schemas import CHANNEL_PRESENCE, CLIENT_PRESENCE, ClientPresence, PresenceClient
from sse_hub.web.openapi.schemas import ChannelPresence as ChannelAnswer
from sse_hub.web.routes.admin import client_limit, page_after
from sse_hub.web.state import AUTH, HUB
from sse_hub.web.stats import iso, page_of

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def record_of(subscriber: Subscriber, instance: str) -> ClientRecord:
    """A local client as the cluster would see it, read now."""
    return ClientRecord(
        subscriber.client_id,
        instance,
        subscriber.ip,
        subscriber.channels,
        subscriber.connected_at,
        subscriber.last_activity,
        subscriber.messages_sent,
        subscriber.bytes_sent,
    )


def local_presence(hub: Hub, channel: str, after: str | None, limit: int) -> ChannelPresence:
    """A single instance's answer, from its registry."""
    holders = hub.registry.on_channel(channel)
    page, next_after = page_of(holders, after, limit)
    records = [record_of(subscriber, hub.instance_id) for subscriber in page]
    return ChannelPresence({hub.instance_id: len(holders)}, records, next_after)


def freshen(hub: Hub, record: ClientRecord) -> ClientRecord:
    """This instance's own clients as they are now, not as last written to the directory."""
    if record.instance != hub.instance_id:
        return record
    subscriber = hub.registry.get(record.client_id)
    return record if subscriber is None else record_of(subscriber, hub.instance_id)


def wants_clients(request: web.Request) -> bool:
    raw = request.query.get("clients", "0")
    if raw not in ("0", "1"):
        raise BadRequest("clients is 0 or 1", {"clients": raw[:50]})
    return raw == "1"


def presence_client(record: ClientRecord) -> PresenceClient:
    return {
        "id": record.client_id,
        "instance": record.instance,
        "ip": record.ip,
        "channels": list(record.channels),
        "connected_at": iso(record.connected_at),
        "messages_sent": record.messages_sent,
    }


async def channel(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    name = request.match_info["channel"]
    if not is_valid_channel(name):
        raise InvalidChannel("invalid channel name", {"channel": name[:200]})
    listed = wants_clients(request)
    asked = client_limit(request)
    limit = min(DEFAULT_PAGE if asked is None else asked, MAX_PAGE) if listed else 0
    after = page_after(request)
    hub = request.app[HUB]
    presence = await hub.directory.channel_presence(name, after, limit)
    if presence is None:
        presence = local_presence(hub, name, after, limit)
    answer: ChannelAnswer = {
        "channel": name,
        "subscribers": sum(presence.instances.values()),
        "instances": dict(presence.instances),
    }
    if listed:
        answer["clients"] = [presence_client(freshen(hub, record)) for record in presence.clients]
        answer["next"] = presence.next_after
    return json_answer(CHANNEL_PRESENCE.dump_json(answer))


async def client(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    client_id = request.match_info["client_id"]
    hub = request.app[HUB]
    subscriber = hub.registry.get(client_id)
    found = record_of(subscriber, hub.instance_id) if subscriber is not None else None
    if found is None:
        found = await hub.directory.find_client(client_id)
    if found is None:
        raise UnknownClient(f"no client {client_id!r} is connected", {"client_id": client_id[:200]})
    answer: ClientPresence = {
        "id": found.client_id,
        "instance": found.instance,
        "ip": found.ip,
        "channels": list(found.channels),
        "connected_at": iso(found.connected_at),
        "last_activity": iso(found.last_activity),
        "messages_sent": found.messages_sent,
        "bytes_sent": found.bytes_sent,
    }
    return json_answer(CLIENT_PRESENCE.dump_json(answer))
