"""The service-link variables a kubelet sets in a pod's environment: names that look like
``SSE_HUB_*`` settings and are not (``enableServiceLinks``)."""

from __future__ import annotations

# What the kubelet sets (pkg/kubelet/envvars/envvars.go) for a Service "sse-hub", ClusterIP
# 10.96.12.34, first port 8080 named "http".
KUBELET_SSE_HUB = {
    "SSE_HUB_SERVICE_HOST": "10.96.12.34",
    "SSE_HUB_SERVICE_PORT": "8080",
    "SSE_HUB_SERVICE_PORT_HTTP": "8080",
    "SSE_HUB_PORT": "tcp://10.96.12.34:8080",
    "SSE_HUB_PORT_8080_TCP": "tcp://10.96.12.34:8080",
    "SSE_HUB_PORT_8080_TCP_PROTO": "tcp",
    "SSE_HUB_PORT_8080_TCP_PORT": "8080",
    "SSE_HUB_PORT_8080_TCP_ADDR": "10.96.12.34",
}
# Service "sse-hub-redis" (6379 "redis", then 26379 "sentinel"), and "sse-hub-metrics" on
# IPv6 with UDP 9125 "statsd" and SCTP 9000 "sctp-feed" (newer kubelets bracket IPv6 in URLs).
KUBELET_NEIGHBOURS = {
    "SSE_HUB_REDIS_SERVICE_HOST": "10.96.0.7",
    "SSE_HUB_REDIS_SERVICE_PORT": "6379",
    "SSE_HUB_REDIS_SERVICE_PORT_REDIS": "6379",
    "SSE_HUB_REDIS_SERVICE_PORT_SENTINEL": "26379",
    "SSE_HUB_REDIS_PORT": "tcp://10.96.0.7:6379",
    "SSE_HUB_REDIS_PORT_6379_TCP": "tcp://10.96.0.7:6379",
    "SSE_HUB_REDIS_PORT_6379_TCP_PROTO": "tcp",
    "SSE_HUB_REDIS_PORT_6379_TCP_PORT": "6379",
    "SSE_HUB_REDIS_PORT_6379_TCP_ADDR": "10.96.0.7",
    "SSE_HUB_REDIS_PORT_26379_TCP": "tcp://10.96.0.7:26379",
    "SSE_HUB_REDIS_PORT_26379_TCP_PROTO": "tcp",
    "SSE_HUB_REDIS_PORT_26379_TCP_PORT": "26379",
    "SSE_HUB_REDIS_PORT_26379_TCP_ADDR": "10.96.0.7",
    "SSE_HUB_METRICS_SERVICE_HOST": "fd00:10:96::a",
    "SSE_HUB_METRICS_SERVICE_PORT": "9125",
    "SSE_HUB_METRICS_SERVICE_PORT_STATSD": "9125",
    "SSE_HUB_METRICS_SERVICE_PORT_SCTP_FEED": "9000",
    "SSE_HUB_METRICS_PORT": "udp://[fd00:10:96::a]:9125",
    "SSE_HUB_METRICS_PORT_9125_UDP": "udp://[fd00:10:96::a]:9125",
    "SSE_HUB_METRICS_PORT_9125_UDP_PROTO": "udp",
    "SSE_HUB_METRICS_PORT_9125_UDP_PORT": "9125",
    "SSE_HUB_METRICS_PORT_9125_UDP_ADDR": "fd00:10:96::a",
    "SSE_HUB_METRICS_PORT_9000_SCTP": "sctp://fd00:10:96::a:9000",
    "SSE_HUB_METRICS_PORT_9000_SCTP_PROTO": "sctp",
    "SSE_HUB_METRICS_PORT_9000_SCTP_PORT": "9000",
    "SSE_HUB_METRICS_PORT_9000_SCTP_ADDR": "fd00:10:96::a",
}
KUBELET = KUBELET_SSE_HUB | KUBELET_NEIGHBOURS
