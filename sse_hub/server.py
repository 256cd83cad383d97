"""Run one hub instance: the event loop (uvloop when installed), the site, the signals."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
from collections.abc import Callable

from aiohttp import web

from sse_hub.access_log import AccessLogger
from sse_hub.app import create_app
from sse_hub.config import Settings
from sse_hub.errors import BrokerUnavailable
from sse_hub.keys import HUB

logger = logging.getLogger("sse_hub")

# Allocations between young-generation collections (CPython default: 700).
GC_YOUNG_THRESHOLD = 50_000


def run(settings: Settings, reuse_port: bool = False) -> int:
    """Serve in this process until SIGTERM or SIGINT; the exit code (1 when it cannot start)."""
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(run_server(settings, reuse_port))
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


async def run_server(settings: Settings, reuse_port: bool = False) -> None:
    """Serve until SIGTERM or SIGINT, then shut down within ``server.shutdown_timeout``."""
    app = create_app(settings)
    runner = web.AppRunner(
        app,
        handle_signals=False,
        handler_cancellation=True,
        shutdown_timeout=settings.server.shutdown_timeout,
        # aiohttp closes a connection that waits for its (next) request longer than
        # keepalive_timeout, counted from the connection's start: this bounds how long a
        # client may take to send its request headers (slowloris). Open streams are busy,
        # not waiting, so they are not affected.
        keepalive_timeout=settings.server.request_header_timeout,
        access_log=logging.getLogger("sse_hub.access"),
        access_log_class=AccessLogger,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.server.host, settings.server.port, reuse_port=reuse_port or None, backlog=2048
        )
        await site.start()
        tune_gc()
        logger.info(
            "listening on http://%s:%d broker=%s", settings.server.host, settings.server.port, settings.broker.backend
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        logger.info("shutting down")
    finally:
        await runner.cleanup()
    counters = app[HUB].counters
    logger.info(
        "stopped published=%d delivered=%d slow_disconnects=%d",
        counters.messages_published,
        counters.messages_delivered,
        counters.slow_disconnects,
    )
