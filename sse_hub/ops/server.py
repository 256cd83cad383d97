"""Run one hub instance: the event loop (uvloop when installed), the site, the signals.

Shutdown on SIGTERM or SIGINT, in this order (deploy/README.md, "Drain"):

1. In the signal handler itself: ``Hub.begin_drain()``. From here ``/readyz`` answers
   503 and a new stream is refused with 503, on connections old and new.
2. ``Hub.close_streams()``: every open stream gets a jittered ``retry:`` and its end.
3. Close idle keep-alive connections; wait, at most ``server.shutdown_timeout``, until
   every connection has closed, live streams' included (a client that stopped reading
   holds its stream until then). The listener stays open meanwhile, so a health check
   sees the 503 rather than a refusal, and every response says ``Connection: close``.
4. ``AppRunner.cleanup()``: stop listening, close idle keep-alive connections, give the
   requests still running ``HANDLER_GRACE_SECONDS``, then cancel them; stop the broker
   (the instance leaves the cluster registry).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import math
import signal
from collections.abc import Callable
from functools import partial

from aiohttp import web

from sse_hub.config.settings import Settings
from sse_hub.core.hub import Hub
from sse_hub.errors import BrokerUnavailable
from sse_hub.ops.worker_metrics import WorkerGroup, render_group, serve_local
from sse_hub.web.access_log import AccessLogger
from sse_hub.web.app import create_app
from sse_hub.web.connections import Connections
from sse_hub.web.front import FrontSite
from sse_hub.web.state import CONNECTIONS, HUB, METRICS

logger = logging.getLogger("sse_hub")

# Allocations between young-generation collections (CPython default: 700).
GC_YOUNG_THRESHOLD = 50_000
# After the drain (step 3 above), what requests still running get before cancellation.
HANDLER_GRACE_SECONDS = 1.0
# How often the drain looks whether the last stream has ended.
DRAIN_POLL_SECONDS = 0.02


def run(settings: Settings, reuse_port: bool = False, group: WorkerGroup | None = None) -> int:
    """Serve in this process until SIGTERM or SIGINT; the exit code (1 when it cannot start).
    ``group``: this process is one worker of ``--workers N``."""
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run_server(settings, reuse_port, group))
    except BrokerUnavailable as exc:
        logger.error("cannot start: the broker is unavailable: %s", exc)
        return 1
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", settings.server.host, settings.server.port, exc.strerror or exc)
        return 1
    return 0


def tune_gc() -> None:
    """Each connection makes long-lived objects, and a full collection walks all of them
    while every stream waits (380-405 ms at 10,000 connections, measured). Freeze what
    start-up made and collect young objects less often; the soak run (bench/soak.py)
    checks memory stays flat."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, 20, 100)


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


async def run_server(settings: Settings, reuse_port: bool = False, group: WorkerGroup | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within ``server.shutdown_timeout``."""
    app = create_app(settings, group_scrape=None if group is None else partial(render_group, group))
    app.on_response_prepare.append(close_connection_while_draining)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,
        # ``drain`` spent server.shutdown_timeout already: this bounds what is left.
        shutdown_timeout=HANDLER_GRACE_SECONDS,
        # aiohttp closes a connection that waits for its (next) request longer than
        # keepalive_timeout, counted from the connection's start: this bounds how long a
        # client may take to send its request headers (slowloris). Open streams are busy,
        # not waiting, so they are not affected.
        keepalive_timeout=settings.server.request_header_timeout,
        access_log=logging.getLogger("sse_hub.access"),
        access_log_class=AccessLogger,
    )
    await runner.setup()
    metrics_socket = await serve_local(group, app[METRICS].render) if group is not None else None
    try:
        # Plain publishes are answered below aiohttp, all else by it (sse_hub/web/front.py).
        site = FrontSite(
            runner, settings.server.host, settings.server.port, reuse_port=reuse_port or None, backlog=2048
        )
        await site.start()
        tune_gc()
        logger.info(
            "listening on http://%s:%d broker=%s", settings.server.host, settings.server.port, settings.broker.backend
        )
        await wait_for_signal(app[HUB])
        await drain(runner, app[HUB], app[CONNECTIONS], settings.server.shutdown_timeout)
    finally:
        app[CONNECTIONS].close_fronts()
        await runner.cleanup()
        if metrics_socket is not None:
            metrics_socket.close()
            await metrics_socket.wait_closed()
    counters = app[HUB].counters
    logger.info(
        "stopped published=%d delivered=%d slow_disconnects=%d",
        counters.messages_published,
        counters.messages_delivered,
        counters.slow_disconnects,
    )


async def wait_for_signal(hub: Hub) -> None:
    """Return once SIGTERM or SIGINT arrived; the hub is draining from that very moment."""
    stop = asyncio.Event()

    def on_signal() -> None:
        hub.begin_drain()  # first: /readyz 503 and no new stream, before anything else runs
        stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    await stop.wait()


async def drain(runner: web.AppRunner, hub: Hub, ours: Connections, limit_seconds: float) -> None:
    """Tell every stream to reconnect, then wait (at most ``limit_seconds``) until every
    connection has closed, the listener still open."""
    logger.info("shutting down: draining streams=%d", len(hub.registry))
    await hub.close_streams()
    server = runner.server
    if server is None:
        return
    for connection in list(server.connections):
        connection.close()  # an idle keep-alive connection now, a busy one after its response
    ours.close_fronts()  # the same for the connections still answered below aiohttp
    # aiohttp signals no connection's end, so look a few times a second (bounded). A live
    # stream's connection is not aiohttp's any more (sse_hub/web/stream_protocol.py).
    for _ in range(math.ceil(limit_seconds / DRAIN_POLL_SECONDS)):
        if not server.connections and not ours:
            return
        await asyncio.sleep(DRAIN_POLL_SECONDS)
    logger.warning(
        "shutting down: %d connections still open after %gs",
        len(server.connections) + len(ours),
        limit_seconds,
    )


async def close_connection_while_draining(request: web.Request, response: web.StreamResponse) -> None:
    """During the drain every response says ``Connection: close`` (RFC 9112, 9.6), so a
    connection opened meanwhile (a health check, a proxy's pool) does not hold the drain."""
    if request.app[HUB].draining:
        response.force_close()  # aiohttp closes the connection after this response
        response.headers["Connection"] = "close"  # and the client knows (set before this hook)
