"""The Subscriber and Flusher state machines, driven directly with a fake transport.

The fake models the two buffers a real socket has: the transport's write buffer (what
``get_write_buffer_size`` reports) and the kernel's, which takes bytes only while it has
room and gets room only when the client reads. No event loop callback is left to chance:
the tests call ``Flusher.flush`` themselves instead of waiting for the loop to run it.
"""

from __future__ import annotations

import asyncio

import pytest

from sse_hub.core import flusher as flusher_module
from sse_hub.core.flusher import MAX_WRITES_PER_ROUND, MIN_WRITES_PER_ROUND, Flusher
from sse_hub.core.subscriber import REPLAY_WINDOW_BYTES, Subscriber
from sse_hub.messages import sse
from sse_hub.messages.message import Draft, Message
from tests.support.fakes import FakeTransport

PREAMBLE = sse.chunk(b"retry: 3000\n" + sse.encode_event('{"client_id":"c_test","channels":["a"]}', "connected"))


def message(message_id: int, data: str = "x", channels: tuple[str, ...] = ("a",)) -> Message:
    return Draft(event="message", data=data, channels=channels).numbered(message_id)


class Harness:
    def __init__(self, max_buffer_bytes: int = 1 << 20) -> None:
        self.flusher = Flusher()
        self.closed: list[str] = []
        self.subscriber = Subscriber(
            client_id="c_test",
            channels=("a",),
            ip="127.0.0.1",
            user_agent="test",
            flusher=self.flusher,
            max_buffer_bytes=max_buffer_bytes,
            on_close=lambda _subscriber, reason: self.closed.append(reason),
        )

    def offer(self, *messages: Message) -> None:
        for item in messages:
            self.subscriber.offer(item.id, item.chunk, item.frame_bytes)

    def flush(self) -> None:
        self.flusher.flush()


@pytest.fixture
async def harness() -> Harness:
    return Harness()


async def test_offer_after_go_live_is_written_on_the_next_flush(harness: Harness) -> None:
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE])
    harness.offer(message(1), message(2))
    assert transport.writes == 0, "offer never writes by itself"
    harness.flush()
    transport.read()
    assert transport.writes == 1, "everything pending leaves in one write"
    assert transport.ids() == [1, 2]
    assert (harness.subscriber.messages_sent, harness.subscriber.bytes_sent) == (2, 2 * message(1).frame_bytes)


async def test_messages_offered_while_holding_follow_the_replay_without_duplicates(harness: Harness) -> None:
    harness.offer(message(4), message(5), message(6))  # live, while history is read
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE], [message(3), message(4), message(5)])
    harness.flush()
    transport.read()
    assert transport.ids() == [3, 4, 5, 6]
    assert harness.subscriber.messages_sent == 4


async def test_go_live_without_replay_sends_what_was_held(harness: Harness) -> None:
    harness.offer(message(1), message(2))
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE])
    harness.offer(message(3))
    harness.flush()
    transport.read()
    assert transport.ids() == [1, 2, 3]
    assert transport.received.startswith(b"1b\r\nretry: 3000") or b"retry: 3000" in transport.received[:40]


async def test_the_floor_from_the_request_drops_held_and_live_ids_at_or_below_it(harness: Harness) -> None:
    """The client resumed after id 5 (read elsewhere); this instance's listener lags and
    delivers 3..5 only now, with an empty replay: none of them is sent."""
    harness.offer(message(3))
    harness.subscriber.resume_after(5)
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE], [])
    harness.offer(message(4), message(5), message(6))
    harness.flush()
    transport.read()
    assert transport.ids() == [6]


async def test_a_live_id_at_or_below_one_already_sent_is_dropped(harness: Harness) -> None:
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE])
    harness.offer(message(7), message(7), message(2), message(8))
    harness.flush()
    transport.read()
    assert transport.ids() == [7, 8]


async def test_close_while_holding_never_writes(harness: Harness) -> None:
    harness.offer(message(1))
    harness.subscriber.close("kicked")
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE], [message(1)])
    harness.offer(message(2))
    harness.flush()
    assert transport.writes == 0
    assert harness.closed == ["kicked"]
    assert harness.subscriber.wait_closed().result() == "kicked"


async def test_holding_more_than_the_buffer_closes_the_subscriber_as_slow() -> None:
    harness = Harness(max_buffer_bytes=1000)
    big = message(1, data="y" * 600)
    harness.offer(big, message(2, data="y" * 600))
    assert harness.closed == ["slow"]


async def test_a_replay_is_fed_as_the_client_drains_it() -> None:
    harness = Harness()
    history = [message(i, data="z" * 1000) for i in range(1, 2001)]  # ~2 MB of replay
    transport = FakeTransport(kernel_bytes=16 * 1024)
    subscriber = harness.subscriber
    subscriber.go_live(transport, [PREAMBLE], history)
    assert transport.high_water is not None and transport.high_water < REPLAY_WINDOW_BYTES
    harness.flush()
    peak = transport.get_write_buffer_size()
    rounds = 0
    while subscriber.replaying and rounds < 10_000:
        rounds += 1
        transport.read()  # the client reads what the kernel holds, then the transport drains
        subscriber.feed()
        peak = max(peak, transport.get_write_buffer_size())
    while transport.pending or transport.in_kernel:
        transport.read()
    assert not subscriber.replaying
    assert peak <= REPLAY_WINDOW_BYTES + max(len(item.chunk) for item in history), (
        "the transport never holds more than the window"
    )
    assert transport.ids() == list(range(1, 2001))
    assert harness.closed == []


async def test_live_messages_wait_until_the_replay_is_written() -> None:
    harness = Harness()
    history = [message(i, data="z" * 1000) for i in range(1, 201)]
    transport = FakeTransport(kernel_bytes=8 * 1024)
    subscriber = harness.subscriber
    subscriber.go_live(transport, [PREAMBLE], history)
    harness.flush()
    harness.offer(message(150), message(201), message(202))  # live while replaying
    rounds = 0
    while subscriber.replaying and rounds < 10_000:
        rounds += 1
        transport.read()
        subscriber.feed()
    harness.flush()
    while transport.pending or transport.in_kernel:
        transport.read()
    assert transport.ids() == list(range(1, 203))


async def test_slow_while_replaying_closes_when_the_held_messages_overflow() -> None:
    harness = Harness(max_buffer_bytes=4096)
    transport = FakeTransport(kernel_bytes=0)  # the client reads nothing
    harness.subscriber.go_live(transport, [PREAMBLE], [message(i, data="r" * 500) for i in range(1, 100)])
    harness.flush()
    assert transport.get_write_buffer_size() <= 4096, "the replay stops at the window"
    for i in range(100, 120):
        harness.offer(message(i, data="l" * 500))
    assert harness.closed == ["slow"]
    assert transport.aborted


def backlogged(harness: Harness, data_bytes: int) -> tuple[Subscriber, FakeTransport]:
    """A live stream with one message of ``data_bytes`` written into a 100-byte kernel."""
    transport = FakeTransport(kernel_bytes=100)
    subscriber = harness.subscriber
    subscriber.go_live(transport, [PREAMBLE])
    harness.offer(message(1, data="s" * data_bytes))
    harness.flush()
    return subscriber, transport


async def test_a_stream_whose_client_reads_nothing_is_closed_as_stalled(harness: Harness) -> None:
    subscriber, transport = backlogged(harness, 500)
    assert transport.get_write_buffer_size() > 0
    subscriber.tick(now=1000.0, ping_before=0, stalled_before=900.0)  # progress noted at 1000
    subscriber.tick(now=1030.0, ping_before=0, stalled_before=970.0)  # no progress, not yet stalled
    assert harness.closed == []
    subscriber.tick(now=1061.0, ping_before=0, stalled_before=1001.0)
    assert harness.closed == ["slow"]
    assert transport.aborted


async def test_a_client_that_reads_slowly_is_not_stalled(harness: Harness) -> None:
    subscriber, transport = backlogged(harness, 5000)
    for step in range(1, 10):
        transport.read(10)  # a trickle: the kernel takes a little more each time
        subscriber.tick(now=1000.0 + 61 * step, ping_before=0, stalled_before=1000.0 + 61 * step - 60)
    assert harness.closed == []


async def test_a_backlog_over_the_buffer_closes_the_live_subscriber_as_slow() -> None:
    harness = Harness(max_buffer_bytes=2000)
    transport = FakeTransport(kernel_bytes=0)
    harness.subscriber.go_live(transport, [PREAMBLE])
    harness.flush()
    harness.offer(message(1, data="b" * 1500), message(2, data="b" * 1500))
    harness.flush()
    assert harness.closed == ["slow"]


async def test_heartbeat_pings_an_idle_stream_only(harness: Harness) -> None:
    transport = FakeTransport()
    subscriber = harness.subscriber
    subscriber.go_live(transport, [PREAMBLE])
    harness.flush()
    subscriber.tick(now=subscriber.last_activity + 1, ping_before=subscriber.last_activity - 1, stalled_before=0)
    harness.flush()
    assert transport.writes == 1, "recently active: no ping"
    subscriber.tick(now=subscriber.last_activity + 20, ping_before=subscriber.last_activity + 1, stalled_before=0)
    harness.flush()
    assert transport.writes == 2
    assert transport.pending.endswith(sse.chunk(sse.HEARTBEAT)) or transport.in_kernel.endswith(
        sse.chunk(sse.HEARTBEAT)
    )


async def test_graceful_close_writes_what_is_queued_then_stops(harness: Harness) -> None:
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE])
    harness.offer(message(1))
    harness.subscriber.close("shutdown")
    harness.offer(message(2))
    harness.flush()
    transport.read()
    assert transport.ids() == [1]
    assert not transport.aborted


@pytest.mark.parametrize(
    ("subscribers", "dirty", "rounds"),
    [
        (1000, 600, [250, 250, 100]),  # a quarter of the subscribers per round
        (0, 250, [MIN_WRITES_PER_ROUND, MIN_WRITES_PER_ROUND, 50]),  # never fewer than the floor
        (20_000, 2010, [MAX_WRITES_PER_ROUND, MAX_WRITES_PER_ROUND, 10]),  # nor more than the cap
    ],
)
async def test_flusher_writes_a_round_of_sockets_per_call(subscribers: int, dirty: int, rounds: list[int]) -> None:
    flusher = Flusher(subscribers=lambda: subscribers)
    transports = []
    for index in range(dirty):
        subscriber = Subscriber(f"c_{index}", ("a",), "127.0.0.1", "", flusher, 1 << 20, lambda *_: None)
        transport = FakeTransport()
        subscriber.go_live(transport, [])
        subscriber.offer(1, message(1).chunk, message(1).frame_bytes)
        transports.append(transport)
    written = []
    while any(transport.writes == 0 for transport in transports) and len(written) < 10:
        before = sum(transport.writes for transport in transports)
        flusher.flush()
        written.append(sum(transport.writes for transport in transports) - before)
        assert [transport.writes for transport in transports] == [1] * sum(written) + [0] * (dirty - sum(written)), (
            "oldest first"
        )
    assert written == rounds, "a round at a time"
    await asyncio.sleep(0)  # let the rounds the flusher scheduled for itself run: they find nothing left
    assert sum(transport.writes for transport in transports) == len(transports)


class WriteSignal(FakeTransport):
    """A fake transport that says when it was written."""

    def __init__(self) -> None:
        super().__init__()
        self.written = asyncio.Event()

    def write(self, data: bytes) -> None:
        super().write(data)
        self.written.set()


def live_subscriber(flusher: Flusher) -> tuple[Subscriber, WriteSignal]:
    subscriber = Subscriber("c_test", ("a",), "127.0.0.1", "", flusher, 1 << 20, lambda *_: None)
    transport = WriteSignal()
    subscriber.go_live(transport, [])
    return subscriber, transport


async def goes_with_the_arrival(subscriber: Subscriber, transport: WriteSignal, arrival: asyncio.Future[None]) -> None:
    """Message 1 waits in ``subscriber``'s outbox for ``arrival``: message 2, offered
    meanwhile, goes out in the same write once it comes."""
    subscriber.offer(2, message(2).chunk, message(2).frame_bytes)
    arrival.set_result(None)
    async with asyncio.timeout(5):
        await transport.written.wait()
    transport.read()
    assert transport.writes == 1 and transport.ids() == [1, 2]


async def test_a_flush_waits_for_own_messages_on_their_way_back_and_writes_them_together() -> None:
    """Flusher invariant 4: while the broker says our own messages are on their way, the
    first write waits, and what arrives meanwhile goes out in the same write."""
    loop = asyncio.get_running_loop()
    arrival: asyncio.Future[None] = loop.create_future()
    flusher = Flusher(lambda: arrival)
    subscriber, transport = live_subscriber(flusher)
    subscriber.offer(1, message(1).chunk, message(1).frame_bytes)
    for _ in range(3):  # the loop runs the flusher's callbacks: none may write yet
        await asyncio.sleep(0)
    assert transport.writes == 0
    await goes_with_the_arrival(subscriber, transport, arrival)


async def test_a_flush_waits_for_own_messages_only_so_long() -> None:
    """Flusher invariant 4: a broker whose messages never come back (lost, or not ours
    after all) delays a flush by at most ``HOLD_SECONDS``, once."""
    loop = asyncio.get_running_loop()
    asked: list[asyncio.Future[None]] = []

    def arriving() -> asyncio.Future[None]:
        asked.append(loop.create_future())
        return asked[-1]

    flusher = Flusher(arriving)
    subscriber, transport = live_subscriber(flusher)
    subscriber.offer(1, message(1).chunk, message(1).frame_bytes)
    async with asyncio.timeout(5):
        await transport.written.wait()
    assert len(asked) == 1 and asked[0].cancelled(), "one wait, ended by its timer"
    assert flusher_module.HOLD_SECONDS <= 0.01


async def test_every_round_of_a_flush_waits_for_own_messages_on_their_way_back() -> None:
    """Flusher invariant 4, for a flush of several rounds: messages of our own on their way
    back when a later round starts reach that round's subscribers in the same write,
    instead of a second one."""
    loop = asyncio.get_running_loop()
    arrival: asyncio.Future[None] = loop.create_future()
    answers: list[asyncio.Future[None] | None] = [None, arrival]  # nothing on its way, then a publish

    def arriving() -> asyncio.Future[None] | None:
        return answers.pop(0) if answers else None

    flusher = Flusher(arriving)
    subscribers = [live_subscriber(flusher) for _ in range(MIN_WRITES_PER_ROUND + 1)]
    for subscriber, _ in subscribers:
        subscriber.offer(1, message(1).chunk, message(1).frame_bytes)
    last, last_transport = subscribers[-1]
    async with asyncio.timeout(5):
        await subscribers[0][1].written.wait()  # the first round ran; the last subscriber is in the next
    for _ in range(3):  # the loop runs the flusher's callbacks: the next round waits
        await asyncio.sleep(0)
    assert last_transport.writes == 0 and not answers
    await goes_with_the_arrival(last, last_transport, arrival)


async def test_a_flush_does_not_wait_when_nothing_is_on_its_way() -> None:
    flusher = Flusher(lambda: None)
    subscriber, transport = live_subscriber(flusher)
    subscriber.offer(1, message(1).chunk, message(1).frame_bytes)
    await asyncio.sleep(0)  # one loop iteration: the flush ran
    assert transport.writes == 1


async def test_a_replay_never_repeats_an_id_at_or_below_the_floor(harness: Harness) -> None:
    """Defensive: a broker that returned ids the client already has (at or below the id it
    resumed from) still cannot make the stream go back."""
    harness.subscriber.resume_after(5)
    transport = FakeTransport()
    harness.subscriber.go_live(transport, [PREAMBLE], [message(4), message(5), message(6)])
    harness.flush()
    transport.read()
    assert transport.ids() == [6]
