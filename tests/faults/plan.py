"""The seeded schedule of a run: which faults strike when, and the shape of the workload.

``make_plan(seed, broker, seconds)`` is a pure function: the same seed gives the same
fault schedule, the same subscriber lineages (channels, the instances they may use) and
the same random streams for every actor (``actor_random``), so a run is replayed by its
seed. Real timing varies from run to run (processes start at their own pace), so a
replay reproduces the schedule and the choices, not the exact interleaving.

Faults (``kind``, what ``target`` names, what ``seconds`` means):

==================  ===========  =====================================================
redis_pause         Redis node   SIGSTOP, SIGCONT after ``seconds``
redis_kill_empty    Redis node   SIGKILL, data wiped, started again after ``seconds``
redis_kill_aof      Redis node   SIGKILL, started again with its AOF after ``seconds``
master_failover     shard        CLUSTER FAILOVER on the shard's replica (sharded)
master_kill         shard        SIGKILL the master, wait for its replica to take over,
                                 start it again (it rejoins as replica) after ``seconds``
replica_kill        shard        SIGKILL the replica, started again after ``seconds``
hub_kill            hub          SIGKILL, started again after ``seconds``
link_stall          hub          its Redis connections hold every byte for ``seconds``
stalled_restart     hub          ``link_stall``, and meanwhile Redis killed and started
                                 again empty (single Redis): the hub sees neither
link_cut            hub          its Redis connections are cut, refused for ``seconds``
link_delay          hub          ``latency`` per chunk on its Redis connections
client_cut          hub          client connections to it cut, refused for ``seconds``
client_stall        hub          client connections to it hold every byte for ``seconds``
==================  ===========  =====================================================
"""

from __future__ import annotations

import random
from dataclasses import dataclass

HUBS = 3
SHARDS = 3
# Channel names with their share of publishes: a busy one, a quiet one, two under one
# Redis Cluster hash tag (one partition: a multi-channel message on both is one part).
CHANNELS = ("busy", "quiet", "news", "stocks", "{g}a", "{g}b")
CHANNEL_WEIGHTS = (12, 1, 3, 2, 2, 2)
LINEAGES = 8
PUBLISHERS = 3
# How often a publisher posts a message through the home hub of its first channel (each
# publisher draws one), else through a random hub: as behind a balancer that hashes on the
# channel, instances see different traffic, so their id floors differ.
HOME_SHARES = (0.5, 0.8, 0.95)

# kind: (weight, shortest, longest seconds)
SINGLE_FAULTS: dict[str, tuple[int, float, float]] = {
    "redis_pause": (2, 0.5, 3.0),
    "redis_kill_empty": (3, 0.2, 2.5),
    "redis_kill_aof": (2, 0.2, 2.5),
    "hub_kill": (2, 0.2, 3.0),
    "link_stall": (4, 1.0, 7.0),
    "stalled_restart": (2, 2.0, 6.0),
    "link_cut": (2, 0.0, 1.5),
    "link_delay": (1, 1.0, 4.0),
    "client_cut": (1, 0.0, 1.0),
    "client_stall": (1, 1.0, 5.0),
}
SHARDED_FAULTS: dict[str, tuple[int, float, float]] = {
    "redis_pause": (2, 0.3, 3.0),
    "master_failover": (2, 0.0, 0.0),
    "master_kill": (2, 0.5, 2.0),
    "replica_kill": (1, 0.5, 2.0),
    "hub_kill": (2, 0.2, 3.0),
    "link_stall": (3, 1.0, 7.0),
    "link_cut": (2, 0.0, 1.5),
    "link_delay": (1, 1.0, 4.0),
    "client_cut": (1, 0.0, 1.0),
    "client_stall": (1, 1.0, 5.0),
}
REDIS_NODE_FAULTS = ("redis_pause", "redis_kill_empty", "redis_kill_aof")
SHARD_FAULTS = ("master_failover", "master_kill", "replica_kill")


@dataclass(frozen=True)
class Fault:
    at: float
    kind: str
    target: int
    seconds: float
    latency: float = 0.0

    def describe(self) -> str:
        extra = f" latency={self.latency:.3f}s" if self.kind == "link_delay" else ""
        return f"t+{self.at:5.1f}s {self.kind:<16} target={self.target} seconds={self.seconds:.1f}{extra}"


@dataclass(frozen=True)
class Lineage:
    """One subscriber as a browser tab: its channels never change; each (re)connection
    goes to one of ``instances`` with the last id it saw."""

    name: str
    channels: tuple[str, ...]
    instances: tuple[int, ...]


@dataclass(frozen=True)
class Publisher:
    """One publisher: posts through the home hub of a message's first channel with
    probability ``home_share``, else through a random hub."""

    name: str
    home_share: float


@dataclass(frozen=True)
class Plan:
    seed: int
    broker: str
    seconds: float
    faults: tuple[Fault, ...]
    lineages: tuple[Lineage, ...]
    publishers: tuple[Publisher, ...]
    homes: tuple[tuple[str, int], ...]  # channel -> its home hub

    def home(self, channel: str) -> int:
        return dict(self.homes)[channel]

    def describe(self) -> str:
        lines = [f"seed={self.seed} broker={self.broker} seconds={self.seconds:g}"]
        lines += [
            f"  lineage {lin.name}: channels={','.join(lin.channels)} instances={lin.instances}"
            for lin in self.lineages
        ]
        lines.append("  homes: " + " ".join(f"{channel}->hub{hub}" for channel, hub in self.homes))
        lines += [f"  publisher {pub.name}: home_share={pub.home_share}" for pub in self.publishers]
        lines += [f"  {fault.describe()}" for fault in self.faults]
        return "\n".join(lines)


def actor_random(seed: int, actor: str) -> random.Random:
    """The random stream of one actor (a publisher, a lineage): independent of the others,
    so one actor's timing does not change another's choices."""
    return random.Random(f"sse-hub-faults/{seed}/{actor}")


def make_plan(seed: int, broker: str, seconds: float) -> Plan:
    if broker not in ("redis", "sharded"):
        raise ValueError(f"unknown broker {broker!r}: redis or sharded")
    rng = actor_random(seed, "plan")
    # As behind a balancer that hashes on the channel: each channel has a home hub, among
    # two of the three; the third ("spare", as a newly added instance) is home to none.
    # Instances then serve different channels (Redis routes by interest), so they see
    # different ids: the spare's id floor lags far behind the busy channel's home.
    spare = rng.randrange(HUBS)
    homes = {channel: rng.choice([hub for hub in range(HUBS) if hub != spare]) for channel in CHANNELS}
    lineages = []
    for index in range(LINEAGES):
        if index < len(CHANNELS):
            # Every channel is held by a lineage that stays on its home hub (sticky).
            first = CHANNELS[index]
            second = rng.choice([c for c in CHANNELS if c not in (first, CHANNELS[0])])
            instances: tuple[int, ...] = (homes[first],)
        else:
            # Roaming lineages: quieter channels, on random instances (the spare among them).
            first, second = rng.sample(CHANNELS[1:], 2)
            instances = tuple(sorted({spare, *rng.sample(range(HUBS), rng.randint(1, HUBS))}))
        channels = tuple(sorted({first, second} if rng.random() < 0.35 else {first}))
        lineages.append(Lineage(f"L{index}", channels, instances))
    publishers = [Publisher(f"P{index}", rng.choice(HOME_SHARES)) for index in range(PUBLISHERS)]
    table = SINGLE_FAULTS if broker == "redis" else SHARDED_FAULTS
    kinds, weights = list(table), [weight for weight, _, _ in table.values()]
    faults = []
    at = rng.uniform(1.0, 2.5)
    while at < seconds - 1.5:
        kind = rng.choices(kinds, weights)[0]
        _, shortest, longest = table[kind]
        if kind == "stalled_restart" and rng.random() < 0.7:
            target = homes[CHANNELS[0]]  # the hub that serves the busiest channel
        elif kind in REDIS_NODE_FAULTS:
            target = 0 if broker == "redis" else rng.randrange(SHARDS * 2)
        elif kind in SHARD_FAULTS:
            target = rng.randrange(SHARDS)
        else:
            target = rng.randrange(HUBS)
        latency = rng.uniform(0.02, 0.3) if kind == "link_delay" else 0.0
        faults.append(Fault(round(at, 2), kind, target, round(rng.uniform(shortest, longest), 2), round(latency, 3)))
        at += rng.uniform(0.5, 3.0)
    return Plan(seed, broker, seconds, tuple(faults), tuple(lineages), tuple(publishers), tuple(homes.items()))
