"""``POST /broadcast`` (alias ``POST /api/broadcast``): one message or a batch, all or
nothing (``web/bodies.py`` reads it and writes the receipts); an NDJSON body is a publish
stream instead (``routes/publish_stream.py``)."""

from __future__ import annotations

import time

from aiohttp import web

from sse_hub.errors import BadRequest
from sse_hub.web.bodies import json_answer, parse_items, read_json_body, receipts_body
from sse_hub.web.routes.publish_stream import NDJSON, publish_stream
from sse_hub.web.state import AUTH, HUB, SETTINGS


async def broadcast(request: web.Request) -> web.Response:
    app = request.app  # a property that walks the match info: read once
    app[AUTH].require_publisher(request.headers.get("Authorization"))
    if request.content_type == NDJSON:
        return await publish_stream(request)
    limits = app[SETTINGS].limits
    body = await read_json_body(request, limits.max_message_bytes)
    items, batch = parse_items(body, limits.max_batch)
    try:
        published_at = time.time()  # one acceptance time for the whole batch
        drafts = [item.to_draft(published_at) for item in items]
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    hub = app[HUB]
    messages = await hub.publish(drafts)
    return json_answer(receipts_body(messages, batch, hub.ids), 202)
