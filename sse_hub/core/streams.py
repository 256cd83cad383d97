"""What a stream writes to, how it takes messages and why it ends: the transport protocol
a ``Subscriber`` writes its socket through, the ``Placement`` a stream with per-channel
positions takes messages by, and the close reasons that metrics and logs share."""

from __future__ import annotations

from typing import Literal, Protocol, get_args

from sse_hub.core.ending import Ending
from sse_hub.messages import sse
from sse_hub.messages.message import Message

#: Why a stream ended: the client left, an admin kicked it, the hub shut down, it read too
#: slowly, its token expired, or the broker may have missed messages and it must resume
#: from history; or every one of its channels ended (a final message).
CloseReason = Literal["disconnected", "kicked", "shutdown", "slow", "token_expired", "resync", "finished"]
CLOSE_REASONS: tuple[CloseReason, ...] = get_args(CloseReason)

# What an idle stream is sent every ``sse.heartbeat_seconds``, as one HTTP chunk.
HEARTBEAT_CHUNK = sse.chunk(sse.HEARTBEAT)


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def is_closing(self) -> bool: ...
    def abort(self) -> None: ...
    def get_write_buffer_size(self) -> int: ...
    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None: ...


class Holder(Protocol):
    """What a placement may do with the stream it serves (``Subscriber``)."""

    close_reason: CloseReason | None

    @property
    def holding(self) -> bool: ...
    @property
    def ending(self) -> Ending: ...
    def hold(self, size: int) -> None: ...
    def queue(self, chunk: bytes, frame_bytes: int) -> None: ...


class Placement(Protocol):
    """How a stream whose position is not one integer takes messages (``core/positions/``): it
    decides replayed messages, and keeps the messages held before the stream is live."""

    def take_replayed(self, stream: Holder, message: Message) -> tuple[bytes, int] | None: ...
    def release(self, stream: Holder) -> None: ...
