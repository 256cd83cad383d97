"""Whether a stream's client still reads: the stall rule of ``Subscriber.tick``.

The hub cannot see a client read; it sees the kernel take bytes from the transport's
buffer, which happens only when the client reads. A stream makes progress when its
transport's buffer is empty or shrank below what was written; one that made none since
``stalled_before`` while bytes wait is stalled (closed as ``slow``, ``limits.stall_seconds``).

Invariant: nothing here writes or closes; the ``Subscriber`` decides what a stall means.
"""

from __future__ import annotations


class Progress:
    """Bytes written to one stream's transport, and when the kernel last took some."""

    __slots__ = ("_at", "_taken", "_written")

    def __init__(self, now: float) -> None:
        self._written = 0
        self._taken = 0
        self._at = now

    def wrote(self, size: int) -> None:
        self._written += size

    def restart(self, now: float) -> None:
        """The stream starts writing now (it goes live): no stall before this."""
        self._at = now

    def stalled(self, waiting: int, now: float, stalled_before: float) -> bool:
        """Whether the client took none of the ``waiting`` bytes since ``stalled_before``."""
        # Bytes the kernel took from us: it takes more only when the client reads.
        taken = self._written - waiting
        if waiting == 0 or taken != self._taken:
            self._taken = taken
            self._at = now
            return False
        return self._at < stalled_before
