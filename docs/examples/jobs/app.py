"""A job that streams its output through sse-hub: the worked example of docs/jobs.md.

    python docs/examples/jobs/app.py --hub http://127.0.0.1:8080 --port 8000

``GET /`` serves the page (index.html, told the hub's URL); ``POST /jobs`` starts a job
and answers its channel, ``job-<id>``, at once. The job's worker publishes one token at a
time to that channel with ``POST /broadcast`` on the hub, the last with ``"final": true``;
the page reads the channel from the start (``?from=start``) with sse-hub.js.

Invariants:

- The app never talks to the page about tokens: the hub is the only way they travel, so
  a page that loses its stream, or opens late, gets them from the hub's history, each
  once, in order (``Last-Event-ID``), and the hub tells it when the job is over (``end``).
- Each job publishes exactly ``tokens`` messages and only the last is final: after it the
  hub refuses the channel (409), so a job cannot be extended by mistake.
- Every worker task is owned by the app: cancelled and awaited on shutdown.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
from aiohttp import web

logger = logging.getLogger("jobs")

PAGE = Path(__file__).with_name("index.html")
# The fake model's output, one word per token, repeated as far as a job needs.
WORDS = (
    "Server-sent events carry a job's output to the page as it is made; when the stream "
    "drops, the browser comes back with the last id it saw and the hub replays the rest "
    "from its history, so every token arrives once and in order, and a final message "
    "tells the page that the job is done."
).split()

SETTINGS = web.AppKey("settings", argparse.Namespace)
SESSION = web.AppKey("session", aiohttp.ClientSession)
WORKERS = web.AppKey("workers", set[asyncio.Task[None]])


def fake_tokens(count: int) -> list[str]:
    """The job's output: ``count`` words, always the same ones."""
    return [WORDS[n % len(WORDS)] for n in range(count)]


async def page(request: web.Request) -> web.Response:
    settings = request.app[SETTINGS]
    html = PAGE.read_text().replace("__HUB_URL__", settings.hub.rstrip("/"))
    return web.Response(text=html, content_type="text/html")


async def start_job(request: web.Request) -> web.Response:
    channel = f"job-{secrets.token_hex(4)}"
    worker = asyncio.create_task(run_job(request.app, channel))
    workers = request.app[WORKERS]
    workers.add(worker)
    worker.add_done_callback(workers.discard)
    return web.json_response({"channel": channel}, status=201)


async def run_job(app: web.Application, channel: str) -> None:
    """Publish the job's tokens one by one, the last one final."""
    settings = app[SETTINGS]
    tokens = fake_tokens(settings.tokens)
    try:
        for n, text in enumerate(tokens):
            await asyncio.sleep(settings.delay)  # the work that makes the next token
            await publish(app, {"channel": channel, "data": {"n": n, "text": text}, "final": n == len(tokens) - 1})
    except Exception:
        # The task's boundary: nobody awaits a job, so its failure is told here.
        logger.exception("job failed channel=%s", channel)
        return
    logger.info("job done channel=%s tokens=%d", channel, len(tokens))


async def publish(app: web.Application, item: dict[str, object]) -> None:
    settings = app[SETTINGS]
    headers = {"Authorization": f"Bearer {settings.token}"} if settings.token else {}
    async with app[SESSION].post(f"{settings.hub.rstrip('/')}/broadcast", json=item, headers=headers) as response:
        if response.status != 202:
            raise RuntimeError(f"the hub refused a token: {response.status} {await response.text()}")


async def resources(app: web.Application) -> AsyncIterator[None]:
    app[WORKERS] = set()
    app[SESSION] = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
    yield
    workers = app[WORKERS].copy()
    for worker in workers:
        worker.cancel()
    await asyncio.gather(*workers, return_exceptions=True)
    await app[SESSION].close()


def create_app(settings: argparse.Namespace) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app.cleanup_ctx.append(resources)
    app.router.add_get("/", page)
    app.router.add_post("/jobs", start_job)
    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hub", default="http://127.0.0.1:8080", help="the hub's base URL")
    parser.add_argument("--token", default="", help="a publisher token, if the hub wants one")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--tokens", type=int, default=40, help="tokens per job")
    parser.add_argument("--delay", type=float, default=0.15, help="seconds of 'work' before each token")
    return parser.parse_args(argv)


def main() -> None:
    settings = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)


if __name__ == "__main__":
    main()
