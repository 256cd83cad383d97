"""Stand-ins with no I/O: a socket's transport with a kernel buffer the client drains
(``FakeTransport``), the body of a chunked reply (``unchunk``), a clock that moves only
when a test says so (``FakeClock``)."""

from __future__ import annotations

from tests.support.sse_client import parse


class FakeTransport:
    """A socket whose kernel buffer holds ``kernel_bytes`` until the client reads."""

    def __init__(self, kernel_bytes: int = 1 << 30) -> None:
        self.kernel_room = kernel_bytes
        self.pending = bytearray()  # the transport's buffer: not yet taken by the kernel
        self.in_kernel = bytearray()  # taken by the kernel, not yet read by the client
        self.received = bytearray()  # read by the client
        self.writes = 0
        self.closing = False
        self.aborted = False
        self.high_water: int | None = None

    def write(self, data: bytes) -> None:
        assert not self.closing, "write after close"
        self.writes += 1
        self.pending += data
        self._move()

    def read(self, size: int | None = None) -> None:
        """The client reads up to ``size`` bytes (all that the kernel holds by default)."""
        size = len(self.in_kernel) if size is None else size
        self.received += self.in_kernel[:size]
        del self.in_kernel[:size]
        self.kernel_room += size
        self._move()

    def _move(self) -> None:
        taken = min(self.kernel_room, len(self.pending))
        self.in_kernel += self.pending[:taken]
        del self.pending[:taken]
        self.kernel_room -= taken

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_write_buffer_size(self) -> int:
        return len(self.pending)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.high_water = high

    def ids(self) -> list[int]:
        """The ids of the events the client has read, in order."""
        return [int(event.id) for event in parse(unchunk(bytes(self.received)).decode()) if event.id]


def unchunk(data: bytes) -> bytes:
    """The payload of an HTTP/1.1 chunked body (the hub frames each write once)."""
    body = bytearray()
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line, 16)
        body += rest[:size]
        data = rest[size + 2 :]
    return bytes(body)


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
