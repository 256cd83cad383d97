#!/usr/bin/env bash
# bench/redis_stats.sh OUT [SECONDS] - Redis's own accounting of one sse-hub-redis run.
#
# Start it just before a referee run of the sse-hub-redis target, e.g.
#
#   bench/redis_stats.sh /tmp/s5-redis.txt & /tmp/sse-hub-bench/run.sh sse-hub-redis S5
#
# It waits for the private redis-server that bench/start-hub.sh starts, then keeps
# its latest `INFO cpu` and `INFO commandstats` in OUT, read once a second until the
# server goes away with the hub (at most SECONDS, default 300). Redis's CPU is in the
# referee's server_cpu_s (it shares the hub's core); this says how much of it is
# Redis's, and how many publishes each script call carried. The poll runs on CPU 1,
# the client's core, and costs one INFO a second.
set -uo pipefail

out=${1:?usage: bench/redis_stats.sh OUT [SECONDS]}
limit=${2:-300}
: >"$out"
seen=0
for _ in $(seq "$limit"); do
    pid=$(pgrep -f -n "redis-server 127.0.0.1:" || true)
    if [[ -z $pid ]]; then
        ((seen)) && exit 0 # the run is over: OUT holds the last reading
        sleep 1
        continue
    fi
    seen=1
    port=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p')
    if stats=$(taskset -c 1 redis-cli -p "$port" info everything 2>/dev/null |
        grep -E '^(used_cpu_(sys|user)|cmdstat_(evalsha|publish|spublish|subscribe|ssubscribe)):'); then
        printf '%s\n' "$stats" >"$out"
    fi
    sleep 1
done
