"""Request bodies and JSON answers, shared by the routes and the fast publish path
(``web/front.py``): reading a JSON body (``read_json_body``: media type, size and time
limits), the 400 for an invalid one, ``json_answer`` for a body a ``schemas`` TypeAdapter
serialised (the same Content-Type as ``web.json_response``), and the publish body's items
and receipts.

A batch is all or nothing: every item is validated before any is published. The answer
is one ``schemas.Receipt`` per message, serialised by its TypeAdapter in one call (no
validation of our own output).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from aiohttp import web
from pydantic import ValidationError

from sse_hub.core.ids import IdScheme
from sse_hub.errors import BadRequest, PayloadTooLarge, RequestTimeout, UnsupportedMediaType
from sse_hub.messages.message import PUBLISH_BATCH, Message, PublishItem
from sse_hub.web.openapi.schemas import RECEIPT, RECEIPTS, Receipt
from sse_hub.web.state import SETTINGS

MAX_ERRORS_SHOWN = 20


async def read_json_body(request: web.Request, max_bytes: int) -> bytes:
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise UnsupportedMediaType("send Content-Type: application/json", {"content_type": content_type})
    return await read_body(request, max_bytes)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, at most ``max_bytes`` (else 413), within
    ``server.request_header_timeout`` (else 408)."""
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"the body is over {max_bytes} bytes")
    content = request.content
    if content.is_eof():
        # The parser holds the whole body already (the common small POST): take it as it
        # is, without arming the body timer below (a timer handle per request, measured).
        body = content.read_nowait()
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"the body is over {max_bytes} bytes")
        return body
    return await _read_body_in_time(request, max_bytes)


async def _read_body_in_time(request: web.Request, max_bytes: int) -> bytes:
    body = bytearray()
    # A body that never arrives would hold the connection forever (slowloris on the body).
    try:
        async with asyncio.timeout(request.app[SETTINGS].server.request_header_timeout):
            while chunk := await request.content.readany():
                body += chunk
                if len(body) > max_bytes:
                    raise PayloadTooLarge(f"the body is over {max_bytes} bytes")
    except TimeoutError as exc:
        raise RequestTimeout("the request body did not arrive in time") from exc
    return bytes(body)


def json_answer(body: bytes, status: int = 200) -> web.Response:
    return web.Response(body=body, status=status, content_type="application/json", charset="utf-8")


def invalid_body(message: str, exc: ValidationError) -> BadRequest:
    """A 400 listing where the body is wrong (no input echoed, at most MAX_ERRORS_SHOWN)."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return BadRequest(message, errors[:MAX_ERRORS_SHOWN])


def parse_items(body: bytes, max_batch: int) -> tuple[list[PublishItem], bool]:
    """The body's messages and whether it was a batch; all valid or BadRequest."""
    # Validate as one message or as a list by the first byte, not as a union, so an error
    # says where it is ("data", or 3/"data") instead of naming both union branches.
    batch = body.lstrip()[:1] == b"["
    try:
        if not batch:
            return [PublishItem.model_validate_json(body)], False
        parsed = PUBLISH_BATCH.validate_json(body)
    except ValidationError as exc:
        raise invalid_body("invalid message", exc) from exc
    if not parsed:
        raise BadRequest("an empty batch publishes nothing")
    if len(parsed) > max_batch:
        raise BadRequest(f"a batch holds at most {max_batch} messages")
    return parsed, True


def receipt(message: Message, ids: IdScheme) -> Receipt:
    message_id = ids.receipt_id(message)
    if message.client_id is not None:
        return {"id": message_id, "channels": [], "client_id": message.client_id}
    if message.final:
        return {"id": message_id, "channels": list(message.channels), "final": True}
    return {"id": message_id, "channels": list(message.channels)}


def receipts_body(messages: Sequence[Message], batch: bool, ids: IdScheme) -> bytes:
    """The 202's body: the receipts of a batch, or the receipt of one message, with the
    ids of the hub's id scheme."""
    if batch:
        return RECEIPTS.dump_json([receipt(message, ids) for message in messages])
    return RECEIPT.dump_json(receipt(messages[0], ids))
