"""The aiohttp application factory: wires settings, broker, hub, routes and lifecycle.

Invariants: ``routes`` is the one route table: every route is added from it with its
OpenAPI ``Operation``, so ``/openapi.json`` cannot miss one. The hub (and so the broker)
is started and stopped by ``cleanup_ctx``: setup before ``yield``, teardown after, also
when start-up failed half-way.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable
from functools import partial
from pathlib import Path

from aiohttp import web

from sse_hub.broker.local import LocalDirectory, MemoryTickets
from sse_hub.broker.memory import MemoryBroker
from sse_hub.config.settings import Settings
from sse_hub.core.hub import Hub
from sse_hub.core.ids import SEQUENCE_IDS, IdScheme
from sse_hub.core.registry import Registry
from sse_hub.errors import TooManyDashboards, TooManyPublishStreams
from sse_hub.messages.contract import Backend, Summary
from sse_hub.web.auth import Authenticator
from sse_hub.web.client_address import ClientAddress
from sse_hub.web.connections import Connections
from sse_hub.web.cors import Cors
from sse_hub.web.dashboard_frame import DashboardFeed
from sse_hub.web.metrics import GroupScrape, Metrics
from sse_hub.web.middleware import json_errors
from sse_hub.web.openapi import operations as spec
from sse_hub.web.openapi.spec import Route, build_openapi
from sse_hub.web.routes import admin, dashboard, presence, publish, stream, tickets
from sse_hub.web.slots import Slots
from sse_hub.web.state import (
    AUTH,
    CLIENT_ADDRESS,
    CONNECTIONS,
    CORS,
    DASHBOARD_FEED,
    DASHBOARD_STREAMS,
    HUB,
    METRICS,
    PUBLISH_STREAMS,
    SETTINGS,
    TICKETS,
)
from sse_hub.web.stats import describe

STATIC = Path(__file__).parent.parent / "static"


def default_instance_id() -> str:
    """Unique per process and readable in /stats: host, pid and a random suffix."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


def create_backend(
    settings: Settings, instance_id: str, describe: Callable[[], Summary] | None = None
) -> tuple[Backend, IdScheme]:
    """The configured broker with its client directory and ticket store, and the id scheme
    that goes with it (``core/ids.py``); ``describe``: this instance, for the cluster."""
    if settings.broker.backend == "redis":
        from sse_hub.broker.redis import RedisBroker

        redis = RedisBroker(settings, instance_id, describe=describe)
        return Backend(redis, redis.directory, redis.tickets), SEQUENCE_IDS
    if settings.sharded:
        from sse_hub.broker.sharded import ShardedClusterBroker
        from sse_hub.core.positions.replay import PositionIds

        sharded = ShardedClusterBroker(settings, instance_id, describe=describe)
        return Backend(sharded, sharded.directory, sharded.tickets), PositionIds(sharded)
    if settings.broker.backend == "redis-cluster":
        from sse_hub.broker.redis.one_slot import RedisClusterBroker

        one_slot = RedisClusterBroker(settings, instance_id, describe=describe)
        return Backend(one_slot, one_slot.directory, one_slot.tickets), SEQUENCE_IDS
    tickets = MemoryTickets(settings.limits.max_tickets)
    return Backend(MemoryBroker.from_settings(settings), LocalDirectory(), tickets), SEQUENCE_IDS


def create_app(
    settings: Settings | None = None, instance_id: str | None = None, group_scrape: GroupScrape | None = None
) -> web.Application:
    """The app of one hub instance; ``group_scrape``: with ``--workers N``, how ``/metrics``
    shows the whole process group (the server hands it in)."""
    settings = settings or Settings()
    instance_id = instance_id or default_instance_id()
    registry, started_at = Registry(), time.time()
    backend, ids = create_backend(settings, instance_id, partial(describe, instance_id, started_at, registry))
    metrics = Metrics(group_scrape)
    hub = Hub(
        settings,
        backend,
        instance_id,
        ids,
        registry=registry,
        started_at=started_at,
        observe_fanout=metrics.fanout_latency.observe,
    )
    metrics.collect_from(hub)
    cors = Cors(settings.server.cors_origins)

    app = web.Application(middlewares=[json_errors])
    app[SETTINGS] = settings
    app[HUB] = hub
    app[TICKETS] = backend.tickets
    app[CLIENT_ADDRESS] = ClientAddress(settings.server.trusted_proxies)
    app[CORS] = cors
    app[AUTH] = Authenticator(settings.auth)
    app[METRICS] = metrics
    app[CONNECTIONS] = Connections()
    app[PUBLISH_STREAMS] = Slots(settings.limits.max_publish_streams, TooManyPublishStreams)
    app[DASHBOARD_STREAMS] = Slots(dashboard.MAX_DASHBOARD_STREAMS, TooManyDashboards)
    app[DASHBOARD_FEED] = DashboardFeed(hub)
    app.cleanup_ctx.append(_run_hub)
    if settings.mercure.enabled and settings.mercure.subscriptions:
        from sse_hub.web.routes import mercure_subscriptions

        mercure_subscriptions.install(app)  # after _run_hub: stops before the hub
    app.on_shutdown.append(_close_streams)
    app.on_response_prepare.append(cors.on_response_prepare)

    for route in routes(settings):
        if route.method == "GET":
            app.router.add_get(route.pattern, route.handler)  # and HEAD
        else:
            app.router.add_route(route.method, route.pattern, route.handler)
    return app


def routes(settings: Settings) -> list[Route]:
    """Every route of the app with its OpenAPI operation: registered and documented from here."""
    table = [
        Route("GET", "/events/{channel}", stream.stream_path, spec.STREAM_ONE),
        Route("GET", "/events", stream.stream_query, spec.STREAM_MANY),
        *(
            Route("GET", alias.path, stream.alias(alias.channels), spec.stream_alias(alias.channels))
            for alias in settings.streams
        ),
        Route("POST", "/broadcast", publish.broadcast, spec.publish(alias=False)),
        Route("POST", "/api/broadcast", publish.broadcast, spec.publish(alias=True)),
        Route("POST", "/tickets", tickets.issue, spec.TICKETS),
        Route("GET", "/stats", admin.stats, spec.STATS),
        Route("GET", "/metrics", admin.metrics, spec.METRICS),
        Route("DELETE", "/clients/{client_id}", admin.delete_client, spec.DISCONNECT),
        Route("GET", "/clients/{client_id}", presence.client, spec.CLIENT_PRESENCE),
        Route("GET", "/channels/{channel}", presence.channel, spec.CHANNEL_PRESENCE),
        Route("GET", "/healthz", admin.healthz, spec.HEALTH),
        Route("GET", "/readyz", admin.readyz, spec.READY),
        Route("GET", "/openapi.json", _openapi, spec.DOCUMENT),
        Route("GET", "/sse-hub.js", _browser_client, spec.BROWSER_CLIENT),
        Route("GET", "/dashboard", dashboard.page, spec.DASHBOARD),
        Route("GET", "/dashboard/assets/{name}", dashboard.asset, spec.DASHBOARD_ASSET),
        Route("POST", "/dashboard/session", dashboard.sign_in, spec.DASHBOARD_SIGN_IN),
        Route("DELETE", "/dashboard/session", dashboard.sign_out, spec.DASHBOARD_SIGN_OUT),
        Route("GET", "/dashboard/stream", dashboard.stream, spec.DASHBOARD_STREAM),
    ]
    if settings.demo_page:
        table.append(Route("GET", "/", _demo_page, spec.DEMO_PAGE))
    if settings.mercure.enabled:
        # Only a hub with Mercure on loads it (and the selector engines it needs).
        from sse_hub.web.routes import mercure

        auth = mercure.authorizer(settings)
        subscribe, publish_update = mercure.handlers(auth)
        table.append(Route("GET", mercure.HUB_PATH, subscribe, mercure.SUBSCRIBE))
        table.append(Route("POST", mercure.HUB_PATH, publish_update, mercure.PUBLISH))
        if settings.mercure.subscriptions:
            from sse_hub.web.routes import mercure_subscriptions

            table.extend(mercure_subscriptions.routes(auth))
    return table


async def _run_hub(app: web.Application) -> AsyncIterator[None]:
    hub = app[HUB]
    try:
        await hub.start()
        yield
    finally:
        await hub.stop()


async def _close_streams(app: web.Application) -> None:
    await app[HUB].close_streams()


async def _demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html")


async def _browser_client(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "sse-hub.js", headers={"Content-Type": "text/javascript; charset=utf-8"})


async def _openapi(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    return web.json_response(build_openapi(settings, routes(settings)))
