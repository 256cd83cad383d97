"""``POST /tickets``: one-time stream tickets, so a page can open a native EventSource
without putting a long-lived token in a URL.

A ticket stands in for a subscriber JWT, so with subscriber auth off (no
``auth.subscriber_jwt`` secret or public key) the route answers 404: every stream is open
and a ticket would only be state to store. The 404 comes after the issuer's token check
(a caller without a valid token learns nothing about the config) and after the body is
read within its limits (413, 415, 408 hold for every POST, and a keep-alive connection
is left at a request boundary), but before the body is validated. Past ``limits.max_tickets`` outstanding tickets
the ticket store refuses (503 ``too_many_tickets``, Retry-After). The request and the answer are
``schemas.TicketRequest`` and ``schemas.Ticket``."""

from __future__ import annotations

import secrets
import time

from aiohttp import web
from pydantic import ValidationError

from sse_hub.errors import NotFound
from sse_hub.web.bodies import invalid_body, json_answer, read_json_body
from sse_hub.web.openapi.schemas import TICKET, TicketRequest
from sse_hub.web.state import AUTH, SETTINGS, TICKETS
from sse_hub.web.stats import iso


async def issue(request: web.Request) -> web.Response:
    auth = request.app[AUTH]
    auth.require_ticket_issuer(request.headers.get("Authorization"))
    body = await read_json_body(request, request.app[SETTINGS].limits.max_message_bytes)
    if not auth.subscribers_need_credentials:
        raise NotFound("tickets are not used: subscriber auth is off (no auth.subscriber_jwt), every stream is open")
    try:
        wanted = TicketRequest.model_validate_json(body)
    except ValidationError as exc:
        raise invalid_body("invalid ticket request", exc) from exc
    ticket = secrets.token_urlsafe(32)
    await request.app[TICKETS].issue(ticket, tuple(wanted.channels), wanted.ttl_seconds)
    expires_at = iso(time.time() + wanted.ttl_seconds)
    answer = TICKET.dump_json({"ticket": ticket, "expires_at": expires_at, "channels": wanted.channels})
    return json_answer(answer, 201)
