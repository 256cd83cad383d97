"""What a run saw, as plain records: the history the checker reads.

Every time is ``time.monotonic()`` in the harness process (publishers, subscribers and the
fault schedule share one clock, so "sent before" and "received before" compare).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Item:
    """One message of a publish: its unique token is its ``data``."""

    token: str
    channels: tuple[str, ...]
    event: str = "message"


@dataclass
class Publish:
    """One ``POST /broadcast`` (a single message, or a JSON array: ``batch``)."""

    publisher: str
    instance: int
    items: list[Item]
    batch: bool
    sent_at: float
    done_at: float = 0.0
    status: int | None = None  # None: no answer (connection error, timeout)
    error: str = ""
    ids: list[str] = field(default_factory=list)  # one per item, from the 202 body

    @property
    def acknowledged(self) -> bool:
        return self.status in (200, 202)


@dataclass(frozen=True)
class Event:
    """What one connection of a lineage received: a message, a ``reset`` or ``connected``."""

    at: float
    connection: int
    kind: str  # "message" (any published event), "reset", "connected"
    name: str
    event_id: str | None
    data: str


@dataclass
class Connection:
    index: int
    instance: int
    resume_id: str | None
    opened_at: float
    connected_at: float | None = None
    ended_at: float | None = None
    status: int | None = None
    end: str = ""
    probe: bool = False  # the final resume after the run (see ``workload``)


@dataclass
class LineageRecord:
    name: str
    channels: tuple[str, ...]
    connections: list[Connection] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass(frozen=True)
class HttpError:
    at: float
    who: str
    instance: int
    status: int
    body: str


@dataclass(frozen=True)
class Applied:
    """A fault as it was carried out (``note``: what happened, e.g. a failover's wait)."""

    at: float
    ended_at: float
    description: str
    note: str = ""


@dataclass
class Record:
    broker: str
    publishes: list[Publish] = field(default_factory=list)
    lineages: list[LineageRecord] = field(default_factory=list)
    http_errors: list[HttpError] = field(default_factory=list)
    faults: list[Applied] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)  # hubs that exited by themselves
    unclean_stops: list[str] = field(default_factory=list)  # hubs that failed SIGTERM at the end
    # Sharded: when acknowledged writes may be lost with a master (asynchronous
    # replication): around a master's SIGKILL, and a master's SIGSTOP past the node timeout.
    replication_windows: list[tuple[float, float]] = field(default_factory=list)
    harness_errors: list[str] = field(default_factory=list)
    publish_end: float = 0.0
