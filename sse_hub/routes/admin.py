"""Operations: ``/stats``, ``/metrics``, ``DELETE /clients/{id}``, ``/healthz``, ``/readyz``."""

from __future__ import annotations

from aiohttp import web

from sse_hub.errors import BadRequest
from sse_hub.keys import AUTH, HUB, METRICS
from sse_hub.metrics import CONTENT_TYPE
from sse_hub.stats import cluster_totals, instance_summary, local_stats


def client_limit(request: web.Request) -> int | None:
    raw = request.query.get("limit")
    if raw is None:
        return None
    # isascii: str.isdigit() also accepts "²", which int() then refuses.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise BadRequest("limit must be a non-negative integer", {"limit": raw[:50]})
    return int(raw)


async def stats(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    hub = request.app[HUB]
    scope = request.query.get("scope", "local")
    if scope not in ("local", "cluster"):
        raise BadRequest("scope is local or cluster", {"scope": scope[:50]})
    document = local_stats(hub, client_limit(request))
    if scope == "cluster":
        instances = await hub.broker.cluster_summaries()
        if instances is None:
            instances = [instance_summary(hub)]
        document["instances"] = instances
        document["cluster"] = cluster_totals(instances)
    return web.json_response(document)


async def delete_client(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    client_id = request.match_info["client_id"]
    await request.app[HUB].kick(client_id)
    return web.json_response({"id": client_id, "disconnected": True})


async def metrics(request: web.Request) -> web.Response:
    request.app[AUTH].require_admin(request.headers.get("Authorization"))
    body = await request.app[METRICS].scrape()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when this instance should get new streams: not while it drains (from the first
    moment of a shutdown), not while its broker is unusable."""
    hub = request.app[HUB]
    if hub.draining:
        return web.json_response({"status": "unavailable", "detail": "draining: shutting down"}, status=503)
    if hub.broker.connected:
        return web.json_response({"status": "ready"})
    return web.json_response({"status": "unavailable", "detail": "broker not connected"}, status=503)
