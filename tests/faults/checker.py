"""The history checker: what every run must show, whatever faults struck.

Terms (every time is the harness's monotonic clock, see ``history``):

- A **lineage** is one subscriber over its whole life: fixed channels ``C``, a sequence of
  connections (one at a time, on any instance), each after the first resuming with the
  last id the lineage saw (``Last-Event-ID``), and finally one probe connection after the
  run. Its events are taken in the order they were received, across connections.
- A message is **acknowledged** when its ``POST /broadcast`` answered 200/202 with its id.
  A message that got no answer, or a 503, may or may not have been applied: it may be
  delivered or not (but at most once, like any other).
- The **origin** of a lineage is the moment its latest connection that was opened
  *without* a ``Last-Event-ID`` received its ``connected`` event (the first connection,
  unless the lineage had to start over without an id). A stream is attached to its
  channels before ``connected`` is sent, and every later connection resumes, so:
- A message is **owed** to a lineage when it was acknowledged, one of its channels is in
  ``C``, and its request was sent at or after the lineage's origin.
- A ``reset`` event (``event: reset``, data with a reason) received by the lineage at time
  ``t`` **excuses** every message owed to it whose request was sent before ``t`` and that
  it did not receive: the hub told the client it may have missed messages up to then. It
  excuses nothing sent after ``t``, and never a duplicate.
- On a sharded Redis Cluster, a message acknowledged at most ``REPLICATION_WINDOW_SECONDS``
  before a master was SIGKILLed may be lost with it (asynchronous replication, Redis's
  own window, documented in docs/scaling.md); so may one acknowledged while a master was
  SIGSTOPped past the node timeout, or within that window after its SIGCONT (it runs what
  it had queued before it learns that its replica took over). Such a loss is counted
  apart (``replication_window``), not failed. What follows from it later (a position reused
  on the new master, then skipped by a stream) is not excused.

Rules (each failure is listed with its evidence):

1. **No duplicates**: no token (message) and no event id twice in one lineage.
2. **Integrity**: every message received is one we published, on a channel the lineage
   holds, with its event name.
3. **Order**: ``redis`` mode: ids (integers) strictly increase along a lineage. Both modes:
   per channel, a message acknowledged before another one's request was sent is received
   first, and items of one batch on one channel arrive in array order (sharded: only for
   messages within one partition, the documented exception set aside); sharded: a
   lineage's position in each channel (from its ids) never moves back within an epoch, and a
   lineage on one channel sees its position move by one per message until a ``reset`` (a
   jump is a gap: messages skipped, acknowledged or not).
4. **No silent loss**: every message owed to a lineage is received by it, or excused.
5. **HTTP**: no 5xx answer other than 503.
6. **Processes**: no hub exited by itself (a crash), and each stopped cleanly on SIGTERM
   at the end.

Reported but not failed: acknowledged messages that share an id (``redis``: the contract
says ids are never reused, but an instance cut off from Redis while Redis comes back
empty cannot be consulted; what clients can observe of a reuse, loss or duplicates, is
what rules 1 and 4 fail).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from tests.faults.history import Item, LineageRecord, Publish, Record

REPLICATION_WINDOW_SECONDS = 1.0
MAX_LISTED = 12
_TAG = re.compile(r"\{([^}]*)\}")


@dataclass
class Report:
    seed: int
    broker: str
    faults: int = 0
    publishes: int = 0
    acknowledged: int = 0  # messages (items) acknowledged
    unacknowledged: int = 0  # items of publishes without a 2xx
    answered_503: int = 0
    delivered: int = 0  # message events received, all lineages
    owed: int = 0
    excused: int = 0
    replication_window: int = 0
    resets: int = 0
    duplicates: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    order: list[str] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)
    http: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)
    harness: list[str] = field(default_factory=list)
    reused_ids: list[str] = field(default_factory=list)
    load: str = ""  # the 1-minute load average before -> after the run

    @property
    def ok(self) -> bool:
        return (
            not (self.duplicates or self.integrity or self.order or self.losses or self.http or self.processes)
            and not self.harness
        )

    def summary(self) -> str:
        verdict = "PASS" if self.ok else "FAIL"
        return (
            f"{verdict} seed={self.seed} broker={self.broker} faults={self.faults} publishes={self.publishes}"
            f" acknowledged={self.acknowledged} unacknowledged={self.unacknowledged} (503: {self.answered_503})"
            f" delivered={self.delivered} owed={self.owed} excused_by_reset={self.excused}"
            f" replication_window={self.replication_window} resets={self.resets}"
            f" duplicates={len(self.duplicates)} unexcused_losses={len(self.losses)} order={len(self.order)}"
            f" integrity={len(self.integrity)} http_5xx={len(self.http)} processes={len(self.processes)}"
            f" reused_ids={len(self.reused_ids)} load={self.load}"
        )

    def text(self) -> str:
        lines = [self.summary()]
        sections = (
            ("unexcused losses (acknowledged, owed, never received, no reset after the publish)", self.losses),
            ("duplicates", self.duplicates),
            ("order", self.order),
            ("integrity", self.integrity),
            ("HTTP 5xx other than 503", self.http),
            ("processes", self.processes),
            ("harness", self.harness),
            ("acknowledged messages sharing an id (reported, not failed)", self.reused_ids),
        )
        for title, items in sections:
            if items:
                lines.append(f"  {title}: {len(items)}")
                lines += [f"    {item}" for item in items[:MAX_LISTED]]
                if len(items) > MAX_LISTED:
                    lines.append(f"    ... and {len(items) - MAX_LISTED} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class _Sent:
    publish: Publish
    item: Item
    index: int
    message_id: str | None  # None when not acknowledged


def _sent_items(record: Record) -> dict[str, _Sent]:
    sent: dict[str, _Sent] = {}
    for publish in record.publishes:
        acknowledged = publish.acknowledged and len(publish.ids) == len(publish.items)
        for index, item in enumerate(publish.items):
            sent[item.token] = _Sent(publish, item, index, publish.ids[index] if acknowledged else None)
    return sent


def origin(lineage: LineageRecord) -> float | None:
    """See the module docstring: None when the lineage never got ``connected``."""
    starts = [c.connected_at for c in lineage.connections if c.resume_id is None and c.connected_at is not None]
    return starts[-1] if starts else None


def _owed(lineage: LineageRecord, sent: dict[str, _Sent]) -> list[_Sent]:
    start = origin(lineage)
    if start is None:
        return []
    channels = set(lineage.channels)
    return [
        s
        for s in sent.values()
        if s.message_id is not None and s.publish.sent_at >= start and channels.intersection(s.item.channels)
    ]


def outstanding(record: Record) -> int:
    """Messages owed and neither received nor excused yet (to wait for a drain)."""
    sent = _sent_items(record)
    total = 0
    for lineage in record.lineages:
        received = {e.data for e in lineage.events if e.kind == "message"}
        last_reset = max((e.at for e in lineage.events if e.kind == "reset"), default=float("-inf"))
        owed = _owed(lineage, sent)
        total += sum(
            1
            for s in owed
            if s.item.token not in received
            and s.publish.sent_at >= last_reset
            and not _in_window(record, s.publish.done_at)
        )
    return total


def check(record: Record, seed: int, t0: float) -> Report:
    report = Report(seed, record.broker, faults=len(record.faults), publishes=len(record.publishes))
    sent = _sent_items(record)
    for s in sent.values():
        if s.message_id is not None:
            report.acknowledged += 1
        else:
            report.unacknowledged += 1
    report.answered_503 = sum(1 for p in record.publishes if p.status == 503)
    reused = _check_reuse(report, sent, record.broker)
    for lineage in record.lineages:
        _check_lineage(report, record, lineage, sent, t0, reused)
    report.http = [
        f"t+{e.at - t0:.1f}s {e.who} on hub{e.instance}: {e.status} {e.body[:160]!r}"
        for e in record.http_errors
        if e.status >= 500 and e.status != 503
    ]
    report.processes = [*record.crashes, *record.unclean_stops]
    report.harness = list(record.harness_errors)
    return report


def _check_lineage(
    report: Report, record: Record, lineage: LineageRecord, sent: dict[str, _Sent], t0: float, reused: set[str]
) -> None:
    name = f"{lineage.name}({','.join(lineage.channels)})"
    messages = [e for e in lineage.events if e.kind == "message"]
    resets = [e for e in lineage.events if e.kind == "reset"]
    report.delivered += len(messages)
    report.resets += len(resets)
    for token, count in Counter(e.data for e in messages).items():
        if count > 1:
            report.duplicates.append(f"{name} received {token} {count} times")
    for event_id, count in Counter(e.event_id for e in messages if e.event_id is not None).items():
        if count > 1:
            report.duplicates.append(f"{name} received id {event_id} {count} times")
    channels = set(lineage.channels)
    for event in messages:
        s = sent.get(event.data)
        if s is None:
            report.integrity.append(f"{name} received {event.data[:60]!r}, which nobody published")
        elif not channels.intersection(s.item.channels) or event.name != s.item.event:
            report.integrity.append(f"{name} received {event.data} ({event.name}) of {s.item.channels}")
    _check_order(report, name, lineage, sent, record.broker)
    if origin(lineage) is None:
        report.harness.append(f"{name} never connected")
    received = {e.data for e in messages}
    for s in _owed(lineage, sent):
        report.owed += 1
        if s.item.token in received:
            continue
        if any(reset.at > s.publish.sent_at for reset in resets):
            report.excused += 1
        elif _in_window(record, s.publish.done_at):
            report.replication_window += 1
        else:
            report.losses.append(_describe_loss(name, lineage, s, t0, reused))


def _in_window(record: Record, acknowledged_at: float) -> bool:
    """Acknowledged where a sharded master may lose it with asynchronous replication."""
    return record.broker == "sharded" and any(
        start <= acknowledged_at <= end for start, end in record.replication_windows
    )


def _describe_loss(name: str, lineage: LineageRecord, s: _Sent, t0: float, reused: set[str]) -> str:
    p = s.publish
    open_then = [
        f"#{c.index}@hub{c.instance}"
        for c in lineage.connections
        if c.opened_at <= p.done_at and (c.ended_at is None or c.ended_at >= p.sent_at)
    ]
    return (
        f"{name} never got id {s.message_id} {s.item.token} on {','.join(s.item.channels)}:"
        f" sent via hub{p.instance} t+{p.sent_at - t0:.2f}s, acknowledged t+{p.done_at - t0:.2f}s;"
        f" streams open then: {' '.join(open_then) or 'none'}; connections {len(lineage.connections)}"
        + (" [its id was acknowledged for another message too]" if s.item.token in reused else "")
    )


def _one_partition(channels: tuple[str, ...]) -> bool:
    tags = {match.group(1) if (match := _TAG.search(c)) else c for c in channels}
    return len(tags) == 1


def _check_order(report: Report, name: str, lineage: LineageRecord, sent: dict[str, _Sent], broker: str) -> None:
    messages = [e for e in lineage.events if e.kind == "message" and e.data in sent]
    if broker == "redis":
        highest: int | None = None
        for event in messages:
            try:
                value = int(event.event_id or "")
            except ValueError:
                report.integrity.append(f"{name} got a non-integer id {event.event_id!r}")
                continue
            if highest is not None and value <= highest:
                report.order.append(f"{name} got id {value} after id {highest} ({event.data})")
            highest = max(value, highest or value)
    else:
        _check_positions(report, name, lineage)
    # Real-time order per channel: O(n) with the latest request sent among those received.
    latest_sent: dict[str, tuple[float, str]] = {}
    batch_index: dict[tuple[int, str], int] = {}
    for event in messages:
        s = sent[event.data]
        if broker == "sharded" and not _one_partition(s.item.channels):
            continue
        for channel in set(s.item.channels).intersection(lineage.channels):
            before = latest_sent.get(channel)
            if before is not None and s.message_id is not None and s.publish.done_at < before[0]:
                report.order.append(f"{name} on {channel}: {s.item.token} after {before[1]}, sent after it was acked")
            if before is None or s.publish.sent_at > before[0]:
                latest_sent[channel] = (s.publish.sent_at, s.item.token)
            key = (id(s.publish), channel)
            if key in batch_index and batch_index[key] > s.index:
                report.order.append(f"{name} on {channel}: batch items out of array order ({s.item.token})")
            batch_index[key] = s.index


def _check_positions(report: Report, name: str, lineage: LineageRecord) -> None:
    """Sharded ids: ``<list>.<c_1>...<c_n>.<g>``, ``c_i`` ``0`` or base36 seq + 4-char epoch.
    A position never goes back within an epoch. A lineage on one channel receives every
    message of it, so its position there moves by exactly one per message until a ``reset``:
    a jump is a gap (messages skipped, acknowledged or not)."""
    positions: dict[int, tuple[str, int]] = {}
    single = len(lineage.channels) == 1
    for event in lineage.events:
        if event.kind == "reset":
            positions.clear()
        if event.kind != "message" or event.event_id is None:
            continue
        parts = event.event_id.split(".")
        if len(parts) != len(lineage.channels) + 2:
            report.integrity.append(f"{name} got id {event.event_id!r}, not one position per channel")
            continue
        for index, part in enumerate(parts[1:-1]):
            if part == "0":
                continue
            seq, epoch = int(part[:-4], 36), part[-4:]
            before = positions.get(index)
            if before is not None and before[0] == epoch and seq < before[1]:
                report.order.append(f"{name} position in {lineage.channels[index]} went back: {event.event_id}")
            elif single and before is not None and before[0] == epoch and seq > before[1] + 1:
                report.order.append(
                    f"{name} position in {lineage.channels[index]} jumped {before[1]} -> {seq} (epoch {epoch})"
                    f" without a reset: {seq - before[1] - 1} message(s) skipped ({event.data})"
                )
            positions[index] = (epoch, seq)


def _check_reuse(report: Report, sent: dict[str, _Sent], broker: str) -> set[str]:
    """Lists acknowledged messages that share an id; returns their tokens."""
    by_id: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for s in sent.values():
        if s.message_id is None:
            continue
        key = (s.message_id,) if broker == "redis" else (*s.item.channels, s.message_id)
        by_id[key].append(s.item.token)
    reused: set[str] = set()
    for key, tokens in sorted(by_id.items()):
        if len(tokens) > 1:
            report.reused_ids.append(f"id {key[-1]} ({','.join(key[:-1]) or 'all'}) acknowledged for {tokens}")
            reused.update(tokens)
    return reused
