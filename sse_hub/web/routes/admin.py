"""Operations: ``/stats`` (paged by ``?after=``, filtered by ``?channel=``), ``/metrics``,
``DELETE /clients/{id}``, ``/healthz``, ``/readyz``.

Every JSON answer here is built as its ``schemas`` TypedDict (``Stats``, ``Health``,
``Readiness``, ``ClientDisconnected``), the types ``/openapi.json`` declares. Everything
but the two probes needs the admin token when ``auth.admin_tokens`` is set.
"""

from __future__ import annotations

from typing import cast

from aiohttp import web

from sse_hub.errors import BadRequest, InvalidChannel
from sse_hub.messages.message import is_valid_channel
from sse_hub.web.bodies import json_answer
from sse_hub.web.metrics import CONTENT_TYPE
from sse_hub.web.openapi.schemas import (
    CLUSTER_STATS,
    STATS,
    ClientDisconnected,
    ClusterStats,
    Health,
    InstanceSummary,
    Readiness,
)
from sse_hub.web.state import AUTH, HUB, METRICS
from sse_hub.web.stats import cluster_totals, hub_summary, local_stats

# The longest client id (``messages.message.ClientId``).
MAX_CLIENT_ID_LENGTH = 128


def client_limit(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return None
    # isascii: str.isdigit() also accepts "²", which int() then refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadRequest("limit must be a non-negative integer", {"limit": raw[:50]})
    return int(raw)


def page_after(request: web.Request) -> str | None:
    """``?after=``: the client id a page of clients starts after (a ``next`` cursor)."""
    raw = request.query.get("after")
    if raw is None:
        return None
    if not 0 < len(raw) <= MAX_CLIENT_ID_LENGTH or not raw.isprintable():
        raise BadRequest("after must be a client id (a `next` cursor)", {"after": raw[:50]})
    return raw


def query_channel(request: web.Request) -> str | None:
    name = request.query.get("channel")
    if name is not None and not is_valid_channel(name):
        raise InvalidChannel("invalid channel name", {"channel": name[:200]})
    return name


async def stats(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    hub = request.app[HUB]
    scope = request.query.get("scope", "local")
    if scope not in ("local", "cluster"):
        raise BadRequest("scope is local or cluster", {"scope": scope[:50]})
    document = local_stats(hub, client_limit(request), query_channel(request), page_after(request))
    if scope == "local":
        return json_answer(STATS.dump_json(document))
    # The broker validates every summary it reads (broker.redis.scripts.InstanceSummary).
    summaries = cast("list[InstanceSummary] | None", await hub.directory.cluster_summaries())
    instances = summaries if summaries is not None else [hub_summary(hub)]
    cluster = ClusterStats(**document, instances=instances, cluster=cluster_totals(instances))
    return json_answer(CLUSTER_STATS.dump_json(cluster))


async def delete_client(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    client_id = request.match_info["client_id"]
    await request.app[HUB].kick(client_id)
    answer: ClientDisconnected = {"id": client_id, "disconnected": True}
    return web.json_response(answer)


async def metrics(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    body = await request.app[METRICS].scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    answer: Health = {"status": "ok"}
    return web.json_response(answer)


def readiness(ready: bool, detail: str) -> web.Response:
    answer: Readiness = {"status": "ready"} if ready else {"status": "unavailable", "detail": detail}
    return web.json_response(answer, status=200 if ready else 503)


async def readyz(request: web.Request) -> web.Response:
    """200 when this instance should get new streams: not while it drains (from the first
    moment of a shutdown), not while its broker is unusable."""
    hub = request.app[HUB]
    if hub.draining:
        return readiness(False, "draining: shutting down")
    return readiness(hub.connected, "broker not connected")
