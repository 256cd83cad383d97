"""One-time stream tickets in Redis, visible to every instance.

Invariants:

1. A ticket works once, on whichever instance sees it first: redeeming is ``GETDEL``.
2. The key space never shows a usable ticket: keys hold the ticket's SHA-256.
3. Bounded: at most ``limits.max_tickets`` are outstanding. ``P:tickets`` lists them by
   expiry (Redis ms); issuing drops the expired ones first, then refuses past the cap
   with ``TooManyTickets`` (503, Retry-After). Redeeming removes the ticket from the set.
"""

from __future__ import annotations

import json
import logging

from pydantic import TypeAdapter, ValidationError
from redis.asyncio import Redis

from sse_hub.broker.redis.errors import unavailable
from sse_hub.broker.redis.keyspace import Keyspace
from sse_hub.broker.redis.scripts import describe
from sse_hub.errors import TooManyTickets
from sse_hub.messages.contract import TicketStore

logger = logging.getLogger(__name__)

TICKET_PATTERNS: TypeAdapter[tuple[str, ...]] = TypeAdapter(tuple[str, ...])

# KEYS: the ticket set, the ticket. ARGV: patterns (JSON), ttl ms, max outstanding tickets.
# Returns 1 when stored, 0 when the cap is reached (after dropping expired tickets).
ISSUE_TICKET_SCRIPT = """
local clock = redis.call('TIME')
local now = clock[1] * 1000 + math.floor(clock[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[1], string.format('%d', now + ttl), KEYS[2])
if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"""

# KEYS: the ticket set, the ticket. Returns the ticket's patterns once, else nil.
REDEEM_TICKET_SCRIPT = """
redis.call('ZREM', KEYS[1], KEYS[2])
return redis.call('GETDEL', KEYS[2])
"""


class Tickets(TicketStore):
    def __init__(self, redis: Redis, keyspace: Keyspace, max_tickets: int) -> None:
        self._keys = keyspace
        self.max_tickets = max_tickets
        self._issue = redis.register_script(ISSUE_TICKET_SCRIPT)
        self._redeem = redis.register_script(REDEEM_TICKET_SCRIPT)

    async def issue(self, ticket: str, patterns: tuple[str, ...], ttl_seconds: int) -> None:
        keys = [self._keys.tickets, self._keys.ticket(ticket)]
        with unavailable("cannot store the ticket in Redis"):
            args: list[str | int] = [json.dumps(patterns), max(1, ttl_seconds) * 1000, self.max_tickets]
            stored = await self._issue(keys=keys, args=args)
        if not stored:
            raise TooManyTickets(
                f"{self.max_tickets} one-time tickets are outstanding (limits.max_tickets);"
                " retry when some are used or expire"
            )

    async def redeem(self, ticket: str) -> tuple[str, ...] | None:
        with unavailable("cannot read the ticket from Redis"):
            stored = await self._redeem(keys=[self._keys.tickets, self._keys.ticket(ticket)])
        if stored is None:
            return None
        try:
            return TICKET_PATTERNS.validate_json(stored)
        except ValidationError as exc:
            logger.warning("refusing a malformed ticket in Redis: %s", describe(exc))
            return None
