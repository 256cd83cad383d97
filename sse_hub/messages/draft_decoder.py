"""A publish body decoded straight into drafts: the fast way, for bodies the model accepts.

``PublishItem`` (``messages/message.py``) is the definition of a valid publish, and its
errors are the API's. Validating through it costs a pydantic model per message and then
a ``Draft`` built from the model: about 5.6 us per message of a batch of 100, a sixth of
the hub's whole cost per message in S6 (docs/performance.md, "S6, the batched publish").
``decode_drafts`` decodes the body with msgspec into slotted structs carrying the same
constraints (about 1.2 us per message) and builds each ``Draft`` from them.

Invariant: ``decode_drafts`` either returns exactly the drafts that
``PublishItem`` -> ``to_draft`` would build from the same body, or None. None says nothing
about the body: the caller then validates it with the model, which answers as it always
did (the drafts, or its own error). So the fast way may refuse more than the model (a
``NaN``, a big integer out of msgspec's range, a field rule it does not check), never
less, and never with other values. ``tests/unit/test_draft_decoder.py`` checks this
against the model on generated bodies.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import msgspec
from pydantic_core import to_json

from sse_hub.config.settings import CHANNEL_PATTERN
from sse_hub.messages.message import GLOBAL_CHANNEL, MAX_CHANNELS_PER_MESSAGE, MAX_RETRY_MS, Draft

# The model's constraints, with Python's ``re`` (msgspec searches): ``\Z`` and not ``$``,
# which would also match before a final newline where the model's (Rust) ``$`` does not.
_Channel = Annotated[str, msgspec.Meta(pattern=rf"^{CHANNEL_PATTERN.pattern}\Z")]
_Event = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=r"^[^\r\n\x00]+\Z")]
_ClientId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
_Retry = Annotated[int, msgspec.Meta(ge=0, le=MAX_RETRY_MS)]
_Channels = Annotated[list[_Channel], msgspec.Meta(min_length=1, max_length=MAX_CHANNELS_PER_MESSAGE)]


class _Item(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """``PublishItem``'s fields and constraints; its cross-field rules are in ``_targets``."""

    data: Any
    event: _Event = "message"
    channels: _Channels | None = None
    channel: _Channel | None = None
    retry: _Retry | None = None
    exclude_client_id: _ClientId | None = None
    client_id: _ClientId | None = None
    final: bool = False


_ONE = msgspec.json.Decoder(_Item)
_BATCH = msgspec.json.Decoder(list[_Item])


def decode_drafts(body: bytes, batch: bool, published_at: float | None = None) -> list[Draft] | None:
    """The body's drafts (a JSON array when ``batch``, else one object), or None when
    the model must decide (module docstring). ``published_at`` as ``to_draft`` takes it."""
    try:
        items = _BATCH.decode(body) if batch else [_ONE.decode(body)]
    except msgspec.MsgspecError:
        return None
    if not items:
        return None  # the model's error: an empty batch publishes nothing
    # msgspec refuses a lone surrogate (``"\ud800"``, or its UTF-8 bytes) anywhere in the
    # body, so no string here needs the model's ``_check_utf8``.
    when = time.time() if published_at is None else published_at
    drafts = []
    for item in items:
        targets = _targets(item)
        data = item.data
        if data.__class__ is not str:
            data = _json(data)
        if targets is None or data is None:
            return None
        drafts.append(
            Draft(
                item.event,
                data,
                targets,
                item.retry,
                item.client_id,
                item.exclude_client_id,
                False,
                when,
                None,
                item.final,
            )
        )
    return drafts


def _targets(item: _Item) -> tuple[str, ...] | None:
    """``PublishItem.targets``, or None where ``PublishItem._one_target`` refuses."""
    channel, channels = item.channel, item.channels
    if item.client_id is not None:
        return None if channel is not None or channels is not None or item.final else ()
    if channel is not None:
        return None if channels is not None else (channel,)
    if channels is not None:
        return (channels[0],) if len(channels) == 1 else tuple(dict.fromkeys(channels))
    return None if item.final else (GLOBAL_CHANNEL,)


def _json(data: object) -> str | None:
    """``to_draft``'s data when not a string: compact JSON; None for a number JSON cannot
    carry, which the model's path checks further."""
    try:
        encoded = to_json(data)
    except ValueError:
        return None
    if b"NaN" in encoded or b"Infinity" in encoded:
        return None
    return encoded.decode()
