"""Command line: ``sse-hub serve | check-config | publish | tail``.

The server side is imported only for ``serve`` and ``check-config``, so ``publish`` and
``tail`` start quickly. Both of those set up logging from the loaded settings first, so
what the loader skipped (Kubernetes service links) is logged in the configured format.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sse_hub import __version__
from sse_hub.client import cli as cli_client

if TYPE_CHECKING:
    from sse_hub.config.settings import Settings

logger = logging.getLogger(__name__)

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
    from sse_hub.config.settings import ConfigError, load_settings, service_link_variables
    from sse_hub.ops.logs import configure_logging

    try:
        settings = load_settings(
            args.config,
            overrides={"server.host": getattr(args, "host", None), "server.port": getattr(args, "port", None)},
        )
    except ConfigError as exc:
        print(f"sse-hub: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log)
    links = service_link_variables()
    if links:
        logger.warning(
            "ignoring %d environment variable(s) that Kubernetes sets for a Service named sse-hub "
            "or sse-hub-*: %s (they are no settings; enableServiceLinks: false in the pod spec drops them)",
            len(links),
            ", ".join(links),
        )
    if args.command == "check-config":
        print("configuration is valid")
        return 0
    return serve(settings, args.workers)


def serve(settings: Settings, workers: int = 1) -> int:
    from sse_hub.ops.server import run

    if workers < 1:
        print("sse-hub: --workers must be at least 1", file=sys.stderr)
        return EXIT_CONFIG
    if workers > 1:
        if settings.broker.backend == "memory":
            print(
                "sse-hub: --workers > 1 needs the Redis broker (broker.backend: redis or redis-cluster, "
                "or SSE_HUB_BROKER__BACKEND=redis): each worker is a separate hub instance",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        from sse_hub.ops.workers import supervise

        return supervise(settings, workers)
    return run(settings)
