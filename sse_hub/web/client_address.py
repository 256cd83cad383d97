"""Client addresses behind proxies (``server.trusted_proxies``).

When the peer is a trusted proxy the client is the right-most ``X-Forwarded-For`` entry
that is not itself trusted (the left-most when all are trusted), else ``X-Real-IP``,
else the peer. Entries a client wrote itself sit left of the ones our proxies appended,
so reading from the right means a client cannot choose its own address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from sse_hub.config.checks import parse_networks


class ClientAddress:
    def __init__(self, trusted: Iterable[str]) -> None:
        self._trusted = parse_networks(trusted)

    def is_trusted(self, address: str) -> bool:
        if not self._trusted:
            return False
        try:
            ip = ipaddress.ip_address(address.strip())
        except ValueError:
            return False
        # A dual-stack listener (host "::") sees IPv4 peers as ::ffff:a.b.c.d; compare
        # them with the IPv4 entries the operator wrote.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self._trusted)

    def resolve(self, peer: str | None, forwarded_for: str | None, real_ip: str | None) -> str:
        peer = peer or "unknown"
        if not self.is_trusted(peer):
            return peer
        if forwarded_for:
            hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
            for hop in reversed(hops):
                if not self.is_trusted(hop):
                    return hop
            if hops:
                return hops[0]
        if real_ip and real_ip.strip():
            return real_ip.strip()
        return peer
