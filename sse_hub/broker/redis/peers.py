"""Which wire versions the live instances speak, and what that means for this one
(``directory`` invariant 5; the versions themselves are ``wire``'s).

Invariants: ``refusal`` is set exactly while a live instance speaks an older version that
this release does not list as compatible, and ``refused`` is called once each time it
becomes set; ``older_peers_changed`` is called only when ``older_peers`` changes; one log
line per incompatible instance that comes, and one when the refusal ends.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from sse_hub.broker.redis.wire import OURS, announced_wire
from sse_hub.errors import BrokerUnavailable

logger = logging.getLogger(__name__)


class PeerVersions:
    def __init__(
        self,
        instance_id: str,
        legacy_topic: str,
        refused: Callable[[], None],
        older_peers_changed: Callable[[bool], None] | None,
    ) -> None:
        self.instance_id = instance_id
        self._legacy_topic = legacy_topic
        self._refused = refused
        self._older_peers_changed = older_peers_changed
        #: Why this instance refuses to serve, or None.
        self.refusal: str | None = None
        #: A live instance speaks an older wire version that this one works beside.
        self.older_peers = False
        self._incompatible: dict[str, int] = {}

    def judge(self, legacy_listeners: int, heads: Sequence[bytes]) -> None:
        """Compare the wire versions of the live instances (``id, head, ...``) with ours;
        ``legacy_listeners``: connections on the pub/sub channel of wire version 0."""
        incompatible: dict[str, int] = {}
        older_peers = False
        if legacy_listeners:
            # Unnamed: that channel tells how many listen, not who.
            incompatible[f"(a release before ab801b8, listening on {self._legacy_topic})"] = 0
        for raw_id, head in zip(heads[::2], heads[1::2], strict=True):
            instance = raw_id.decode(errors="replace")
            wire = announced_wire(head)
            if head and instance != self.instance_id and not OURS.works_beside(wire):
                incompatible[instance] = wire.version
            elif head and instance != self.instance_id and wire.version < OURS.version:
                older_peers = True
        if older_peers != self.older_peers:
            self.older_peers = older_peers
            if self._older_peers_changed is not None:
                self._older_peers_changed(older_peers)
        for instance, version in incompatible.items() - self._incompatible.items():
            logger.warning(
                "redis: instance=%s speaks wire version %d, this instance %d: %s. Finish or roll back the"
                " rollout: versions %d and %d cannot share a Redis; use another broker.prefix for the new"
                " version (docs/upgrades.md)",
                instance,
                version,
                OURS.version,
                "this instance is not ready and refuses streams and publishes while that one is live"
                if version < OURS.version
                else "that instance refuses to serve while this one is live",
                min(version, OURS.version),
                max(version, OURS.version),
            )
        self._incompatible = incompatible
        older = sorted((version, instance) for instance, version in incompatible.items() if version < OURS.version)
        was_refusing, self.refusal = self.refusal is not None, None
        if older:
            version, instance = older[0]
            self.refusal = (
                f"instance {instance} speaks wire version {version}, which cannot share a Redis with {OURS.version}"
            )
            if not was_refusing:
                self._refused()
        elif was_refusing:
            logger.info("redis: no instance of an incompatible wire version is live any more; serving again")

    def refuse_if_incompatible(self) -> None:
        """Raise ``BrokerUnavailable`` while this instance refuses to serve."""
        if self.refusal is not None:
            raise BrokerUnavailable(f"refusing to serve: {self.refusal}")
