"""Which environment variables under our prefix are Kubernetes service links, not settings.

The kubelet gives every container one set of variables per Service of its namespace
(``pkg/kubelet/envvars/envvars.go``: ``FromServices``, ``makeLinkVariables``; the Service
name upper-cased, ``-`` turned into ``_``). A Service named ``sse-hub`` with ClusterIP
10.96.12.34 and a first port 8080 named ``http`` gives::

    SSE_HUB_SERVICE_HOST=10.96.12.34        SSE_HUB_SERVICE_PORT=8080
    SSE_HUB_SERVICE_PORT_HTTP=8080          SSE_HUB_PORT=tcp://10.96.12.34:8080
    SSE_HUB_PORT_8080_TCP=tcp://10.96.12.34:8080
    SSE_HUB_PORT_8080_TCP_PROTO=tcp         SSE_HUB_PORT_8080_TCP_PORT=8080
    SSE_HUB_PORT_8080_TCP_ADDR=10.96.12.34

and a Service ``sse-hub-redis`` the same under ``SSE_HUB_REDIS_``.

Invariants:

1. A variable is a link only if its name AND its value have the kubelet's shape (or the
   value is empty: blanking a link in the pod spec is the usual workaround). So
   ``SSE_HUB_SERVER_PORT=9000``, a typo of ``SSE_HUB_SERVER__PORT``, is not a link and
   stays an unknown key.
2. A name holding ``__`` is never a link: the kubelet never writes one for a Service
   named ``sse-hub...``, and every nested setting's name has one.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

# The Service name's rest after "sse-hub-", as the kubelet spells it, then the link's own part.
_SERVICE = r"(?:[A-Z0-9_]+_)?"
_HOST = re.compile(_SERVICE + "SERVICE_HOST")
_SERVICE_PORT = re.compile(_SERVICE + "SERVICE_PORT(?:_[A-Z0-9_]+)?")  # first port, then each named one
_FIRST_PORT = re.compile(_SERVICE + "PORT")
_PORT = re.compile(_SERVICE + r"PORT_(?P<port>[0-9]+)_(?P<proto>TCP|UDP|SCTP)(?:_(?P<part>PROTO|PORT|ADDR))?")
_NAMES = (_HOST, _SERVICE_PORT, _FIRST_PORT, _PORT)
_URL = re.compile(r"(?P<proto>tcp|udp|sctp)://(?P<host>.+):(?P<port>[0-9]{1,5})")
_NUMBER = re.compile(r"[0-9]{1,5}")


def service_link_names(environ: Mapping[str, str], prefix: str) -> list[str]:
    """The names in ``environ`` under ``prefix`` that are service links, sorted."""
    return sorted(name for name, value in environ.items() if is_service_link(name, value, prefix))


def is_service_link(name: str, value: str, prefix: str) -> bool:
    if not name.startswith(prefix) or "__" in name:
        return False
    rest = name[len(prefix) :]
    if not any(pattern.fullmatch(rest) for pattern in _NAMES):
        return False
    if value == "":
        return True
    if _HOST.fullmatch(rest) and _is_ip(value):
        return True
    if _SERVICE_PORT.fullmatch(rest) and _NUMBER.fullmatch(value):
        return True
    if _FIRST_PORT.fullmatch(rest) and _link_url(value) is not None:
        return True
    port = _PORT.fullmatch(rest)
    return port is not None and _is_port_link(port, value)


def _is_port_link(name: re.Match[str], value: str) -> bool:
    """``<SERVICE>_PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]`` against its value."""
    proto, port, part = name["proto"].lower(), name["port"], name["part"]
    if part == "PROTO":
        return value == proto
    if part == "PORT":
        return value == port
    if part == "ADDR":
        return _is_ip(value)
    url = _link_url(value)
    return url is not None and (url["proto"], url["port"]) == (proto, port)


def _link_url(value: str) -> re.Match[str] | None:
    """``tcp://10.0.0.1:80``, or ``tcp://[fd00::1]:80`` (newer kubelets bracket IPv6)."""
    url = _URL.fullmatch(value)
    if url is None:
        return None
    host = url["host"]
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return url if _is_ip(host) else None


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True
