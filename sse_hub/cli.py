"""Command line: ``sse-hub serve | check-config``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Callable, Sequence

from aiohttp import web

from sse_hub import __version__, cli_client
from sse_hub.app import create_app
from sse_hub.config import ConfigError, Settings, load_settings
from sse_hub.keys import HUB
from sse_hub.logs import configure_logging

logger = logging.getLogger("sse_hub")

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sse-hub", description="Server-Sent Events broadcast hub.")
    parser.add_argument("--version", action="version", version=f"sse-hub {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the hub")
    serve.add_argument("--config", help="YAML config file (default: $SSE_HUB_CONFIG)")
    serve.add_argument("--host", help="listen address (server.host)")
    serve.add_argument("--port", type=int, help="listen port (server.port)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes sharing the port (Redis broker)")

    check = commands.add_parser("check-config", help="validate the configuration and exit")
    check.add_argument("--config", help="YAML config file (default: $SSE_HUB_CONFIG)")

    cli_client.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command not in ("serve", "check-config"):
        return cli_client.run(args)
    try:
        settings = load_settings(
            args.config,
            overrides={"server.host": getattr(args, "host", None), "server.port": getattr(args, "port", None)},
        )
    except ConfigError as exc:
        print(f"sse-hub: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check-config":
        print("configuration is valid")
        return 0
    return serve(settings, args.workers)


def serve(settings: Settings, workers: int = 1) -> int:
    configure_logging(settings.log)
    if workers < 1:
        print("sse-hub: --workers must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    if workers > 1:
        print("sse-hub: --workers > 1 needs the Redis broker (broker.backend: redis)", file=sys.stderr)
        return EXIT_CONFIG
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(run_server(settings))
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
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
        access_log=None,
    )
    await runner.setup()
    try:
        site = web.TCPSite(
            runner, settings.server.host, settings.server.port, reuse_port=reuse_port or None, backlog=2048
        )
        await site.start()
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
