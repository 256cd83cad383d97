"""An async client for sse-hub: publish over HTTP, subscribe to event streams.

    async with Publisher("http://127.0.0.1:8080", token="...") as hub:
        receipt = await hub.publish({"price": 182.3}, channels=["stocks"], event="tick")

    async with subscribe("http://127.0.0.1:8080", ["stocks"]) as events:
        async for event in events:
            print(event.id, event.event, event.data)

This is the package's public face; what it does not re-export is internal. One module
per job:

    subscription   ``Subscription`` (``subscribe``): reconnecting event streams
    publisher      ``Publisher``: ``POST /broadcast``, one message or a batch
    batcher        ``Batcher``: concurrent ``publish`` calls as one request, each its answer
    publish_stream ``PublishStream`` (``Publisher.stream``): messages as NDJSON lines
    sse_parser     ``SseParser``: event-stream bytes to ``Event``s (WHATWG HTML 9.2.6)
    errors         the exception hierarchy below
    cli            ``sse-hub publish`` and ``sse-hub tail``, built on the above

Invariants:

- The client is the other side of the wire from the server: it depends on aiohttp and
  yarl, never on a server module of ``sse_hub`` (nor the server on it), so it can be
  read, tested and shipped on its own. ``tests/test_boundaries.py`` checks both ways.
- Every network wait has a timeout.
- A publish is never retried (it is not idempotent); a subscription reconnects by
  itself and resends ``Last-Event-ID``, so the hub replays with no gap and no duplicate.

Errors:

    HubClientError
    ├── HubConnectionError   the hub could not be reached, or did not answer in time
    └── HubResponseError     the hub answered with an error status (``status``, ``body``)
        ├── PublishError     ``POST /broadcast`` refused (4xx/5xx)
        └── SubscribeError   the stream was refused with a status not worth retrying
"""

from __future__ import annotations

from sse_hub.client.errors import (
    HubClientError,
    HubConnectionError,
    HubResponseError,
    PublishError,
    SubscribeError,
)
from sse_hub.client.json_value import JsonValue
from sse_hub.client.publish_stream import PublishStream, PublishSummary
from sse_hub.client.publisher import Publication, Publisher, Receipt
from sse_hub.client.sse_parser import Event, SseParser
from sse_hub.client.subscription import Subscription, subscribe

__all__ = [
    "Event",
    "HubClientError",
    "HubConnectionError",
    "HubResponseError",
    "JsonValue",
    "Publication",
    "PublishError",
    "PublishStream",
    "PublishSummary",
    "Publisher",
    "Receipt",
    "SseParser",
    "SubscribeError",
    "Subscription",
    "subscribe",
]
