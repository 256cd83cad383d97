"""Per-channel positions and their SSE ids (sse_hub/core/positions/event_ids.py), and the subscriber that
keeps them (sse_hub/core/positions/subscriber.py), driven with the fake transport of
tests/unit/test_subscriber.py. No Redis: messages are built as the sharded broker delivers
them, with ``pos`` and ``prior``."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sse_hub.core.flusher import Flusher
from sse_hub.core.positions.event_ids import (
    StreamPosition,
    base36,
    component,
    list_checksum,
    parse_component,
    receipt_id,
)
from sse_hub.core.positions.subscriber import ChannelPlacement
from sse_hub.core.subscriber import Subscriber
from sse_hub.messages.message import Message, message_from_payload
from tests.support.fakes import FakeTransport, unchunk
from tests.support.sse_client import parse

EPOCH = "k2x9"


def placed(client_id: str, channels: tuple[str, ...], flusher: Flusher) -> tuple[Subscriber, ChannelPlacement]:
    """A subscriber with per-channel positions, as ``PositionIds.new_subscriber`` makes it."""
    placement = ChannelPlacement(channels)
    subscriber = Subscriber(client_id, channels, "127.0.0.1", "test", flusher, 1 << 20, lambda *_: None, placement)
    return subscriber, placement


def part(
    channels: tuple[str, ...], seqs: tuple[int, ...], prior: tuple[tuple[str, int], ...] = (), data: str = ""
) -> Message:
    return Message(
        event="message",
        data=data or f"{channels}:{seqs}",
        channels=channels,
        id=seqs[0],
        pos=tuple((channel, seq, EPOCH) for channel, seq in zip(channels, seqs, strict=True)),
        prior=tuple((channel, seq, EPOCH) for channel, seq in prior),
    )


# -- ids ------------------------------------------------------------------------------


@given(
    st.integers(min_value=1, max_value=36**12 - 1),
    st.text("0123456789abcdefghijklmnopqrstuvwxyz", min_size=4, max_size=4),
)
def test_a_component_round_trips(seq: int, epoch: str) -> None:
    assert parse_component(component((seq, epoch))) == (seq, epoch)


@pytest.mark.parametrize("text", ["", "00", "1", "1k2x", "-1k2x9", "1_0k2x9", "1AK2X9", "0000k2x9", "1ak2x9\n"])
def test_a_malformed_component_is_refused(text: str) -> None:
    assert parse_component(text) is None


def test_an_id_round_trips_through_parse() -> None:
    positions = StreamPosition(("b", "a"), {"a": (46, EPOCH), "*": (3, "zzzz")})
    assert positions.event_id == f"{list_checksum(('a', 'b'))}.1a{EPOCH}.0.3zzzz"
    assert positions.parse(positions.event_id, {}) == {"a": (46, EPOCH), "b": (0, ""), "*": (3, "zzzz")}


@pytest.mark.parametrize(
    "value",
    [
        "garbage",
        "17",
        "",
        f"{list_checksum(('a',))}.1{EPOCH}",
        f"{list_checksum(('a', 'b'))}.1{EPOCH}.0.0.0",
        "it38.x.0.0",
    ],
)
def test_an_id_of_other_channels_or_garbage_is_not_a_position(value: str) -> None:
    assert StreamPosition(("a", "b"), {}).parse(value, {}) is None


def test_an_id_without_the_global_component_resumes_global_messages_from_now() -> None:
    positions = StreamPosition(("a",), {})
    short = f"{list_checksum(('a',))}.5{EPOCH}"
    assert positions.parse(short, {"*": (9, "gggg")}) == {"a": (5, EPOCH), "*": (9, "gggg")}


def test_a_receipt_is_the_id_a_stream_on_exactly_its_channels_shows_without_the_global_part() -> None:
    message = part(("b", "a"), (7, 2))
    positions = StreamPosition(("a", "b"), {})
    assert positions.take(message)
    assert positions.event_id.startswith(receipt_id(message) + ".")
    assert base36(7) == "7" and base36(36) == "10"


# -- take -----------------------------------------------------------------------------


def test_take_sends_each_seq_once_and_moves_only_forward() -> None:
    positions = StreamPosition(("a",), {"a": (2, EPOCH)})
    assert [positions.take(part(("a",), (seq,))) for seq in (1, 2, 3, 3, 4)] == [False, False, True, False, True]


def test_a_new_epoch_starts_the_channel_again() -> None:
    positions = StreamPosition(("a",), {"a": (9, EPOCH)})
    restarted = Message(event="message", data="x", channels=("a",), id=1, pos=(("a", 1, "new0"),))
    assert positions.take(restarted)
    assert not positions.take(restarted)


def test_a_message_on_two_partitions_is_taken_once_in_either_order() -> None:
    first = part(("a",), (5,))
    second = part(("b",), (9,), prior=(("a", 5),))
    for order in itertools.permutations((first, second)):
        positions = StreamPosition(("a", "b"), {"a": (4, EPOCH), "b": (8, EPOCH)})
        assert sum(positions.take(message) for message in order) == 1
        assert positions.snapshot() == {"a": (5, EPOCH), "b": (9, EPOCH), "*": (0, "")}


def test_a_later_part_reaches_a_stream_that_holds_none_of_the_earlier_ones() -> None:
    positions = StreamPosition(("b",), {})
    assert positions.take(part(("b",), (9,), prior=(("a", 5),)))


def test_a_part_on_channels_the_stream_does_not_hold_is_not_taken() -> None:
    assert not StreamPosition(("a",), {}).take(part(("c",), (1,)))


# -- the subscriber ---------------------------------------------------------------------


async def test_the_subscriber_holds_replays_then_goes_live_each_part_once() -> None:
    flusher = Flusher()
    subscriber, placement = placed("c_1", ("a", "b"), flusher)
    placement.start_at(StreamPosition(("a", "b"), {"a": (1, EPOCH)}))
    # Held while the replay is read: a duplicate of the replay, and two new parts.
    for message in (part(("a",), (3,)), part(("b",), (1,)), part(("a",), (4,))):
        placement.offer(subscriber, message, {})
    transport = FakeTransport()
    replay = [part(("a",), (2,)), part(("a",), (3,))]
    subscriber.go_live(transport, [], replay, complete=True)
    flusher.flush()
    placement.offer(subscriber, part(("a",), (4,)), {})  # live duplicate of a held one
    placement.offer(subscriber, part(("b",), (2,), prior=(("a", 5),)), {})  # a later part of a5
    placement.offer(subscriber, part(("a",), (5,)), {})
    flusher.flush()
    transport.read()
    events = parse(unchunk(bytes(transport.received)).decode())
    assert [event.data for event in events] == [
        "('a',):(2,)",
        "('a',):(3,)",
        "('b',):(1,)",
        "('a',):(4,)",
        "('a',):(5,)",
    ]
    last = StreamPosition(("a", "b"), {}).parse(events[-1].id or "", {})
    assert last == {"a": (5, EPOCH), "b": (2, EPOCH), "*": (0, "")}
    assert subscriber.messages_sent == 5


async def test_streams_that_show_the_same_id_share_one_encoding() -> None:
    flusher = Flusher()
    encoded: dict[str, tuple[bytes, int]] = {}
    streams = []
    for number in range(3):
        subscriber, placement = placed(f"c_{number}", ("a",), flusher)
        placement.start_at(StreamPosition(("a",), {}))
        subscriber.go_live(FakeTransport(), [])
        streams.append((subscriber, placement))
    message = part(("a",), (1,))
    for subscriber, placement in streams:
        placement.offer(subscriber, message, encoded)
    assert len(encoded) == 1
    assert {subscriber.bytes_sent for subscriber, _ in streams} == {encoded[streams[0][1].positions.event_id][1]}


def test_the_broker_payload_carries_positions() -> None:
    payload = b'{"id":3,"pos":[["a",3,"k2x9"]],"prior":[["b",1,"zzzz"]],"event":"message","data":"x","channels":["a"]}'
    message = message_from_payload(payload)
    assert message.pos == (("a", 3, "k2x9"),) and message.prior == (("b", 1, "zzzz"),)


async def test_parts_held_before_the_stream_knows_where_it_starts_are_kept() -> None:
    """A part can reach the instance after the stream's channels were attached but before
    the read of where they are returns; it is held, and kept when the positions arrive."""
    flusher = Flusher()
    subscriber, placement = placed("c_1", ("a",), flusher)
    placement.offer(subscriber, part(("a",), (3,)), {})  # published just after the read below
    placement.start_at(StreamPosition(("a",), {"a": (2, EPOCH)}))
    transport = FakeTransport()
    subscriber.go_live(transport, [])
    flusher.flush()
    transport.read()
    assert [event.data for event in parse(unchunk(bytes(transport.received)).decode())] == ["('a',):(3,)"]


async def test_a_final_part_held_for_a_stream_it_excludes_ends_the_stream_without_being_sent() -> None:
    """``exclude_client_id`` on a final message: the excluded stream still gets its ``end``,
    also when the part arrived while the stream was held (``PositionIds.dispatcher``)."""
    flusher = Flusher()
    subscriber, placement = placed("c_1", ("a",), flusher)
    placement.start_at(StreamPosition(("a",), {}))
    placement.offer(subscriber, part(("a",), (1,)), {})
    placement.offer(subscriber, dataclasses.replace(part(("a",), (2,), data="done"), final=True), {}, excluded=True)
    transport = FakeTransport()
    subscriber.go_live(transport, [])
    flusher.flush()
    transport.read()
    events = parse(unchunk(bytes(transport.received)).decode())
    assert [(event.event, event.data) for event in events] == [("message", "('a',):(1,)"), ("end", '{"channel":"a"}')]
    assert subscriber.close_reason == "finished"
