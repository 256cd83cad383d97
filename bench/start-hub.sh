#!/usr/bin/env bash
# bench/start-hub.sh [memory|redis|cluster] - run sse-hub in the foreground for the referee.
#
# The referee (../shared/bench/run.sh, through a targets/sse-hub*.env file that
# bench/run.sh writes into its working copy) exec's this under taskset and
# measures and stops that PID and its children. $PORT is exported by the referee.
#
#   memory  the in-process broker (default)
#   redis   a private redis-server on a free loopback port, started here as a
#           child of this PID, so it runs on the same core as the hub, its CPU and
#           memory count as the server's, and the referee kills it with the hub.
#           REDIS_CPU=N moves it to core N (still measured and stopped with the
#           hub): with N=1 it shares the client's core instead, as Redis on a
#           machine of its own would leave the hub's core to the hub.
#   cluster a private 3-master Redis Cluster (three redis-server --cluster-enabled
#           yes, redis-cli --cluster create), children of this PID as the single
#           Redis is (same core, measured and stopped with the hub; REDIS_CPU too),
#           and the hub with broker.backend redis-cluster, cluster_mode sharded.
#
# Optional: PROFILE_OUT=FILE records a py-spy profile (raw collapsed stacks) of the
# hub from its start to its exit; py-spy runs detached (not in the measured tree)
# on CPU $PROFILE_CPU (default 1, the client's core: the server's core stays clean).
# It samples with --nonblocking (the hub runs on, but a stack read while it changes
# comes out torn); PROFILE_BLOCKING=1 pauses the hub for each sample instead: whole
# stacks, at the price of a slower run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
project="$(dirname "$here")"
backend=${1:-memory}
: "${PORT:?PORT is exported by the referee run.sh}"

# 10k+ subscribers: one file descriptor each (no CAP_SYS_RESOURCE: soft -> hard).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

unset SSE_HUB_CONFIG
# bench/referee.sh's own knobs, not settings of the hub (which refuses unknown SSE_HUB_* keys)
unset SSE_HUB_BENCH_PORT SSE_HUB_REDIS_BENCH_PORT SSE_HUB_CLUSTER_BENCH_PORT
export SSE_HUB_LOG__LEVEL=${SSE_HUB_LOG__LEVEL:-warning}
export SSE_HUB_LIMITS__MAX_CONNECTIONS=${SSE_HUB_LIMITS__MAX_CONNECTIONS:-20000}
# every bench client connects from 127.0.0.1
export SSE_HUB_LIMITS__MAX_CONNECTIONS_PER_IP=${SSE_HUB_LIMITS__MAX_CONNECTIONS_PER_IP:-20000}
export SSE_HUB_BROKER__BACKEND=$backend

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

start_redis() { # start_redis DIR PORT [redis-server options...]: a child of this PID, answering PING
    local dir=$1 port=$2 pin=()
    shift 2
    [[ -n ${REDIS_CPU:-} ]] && pin=(taskset -c "$REDIS_CPU")
    "${pin[@]}" redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no --dir "$dir" \
        --logfile "$dir/redis-$port.log" --daemonize no "$@" &
    for _ in $(seq 50); do
        redis-cli -p "$port" ping >/dev/null 2>&1 && return
        sleep 0.1
    done
    echo "redis-server did not start on $port" >&2
    exit 1
}

case $backend in
memory) ;;
redis | cluster)
    command -v redis-server >/dev/null || { echo "redis-server not installed (apt-get install redis-server)" >&2; exit 1; }
    rdir=$(mktemp -d /tmp/sse-hub-bench-redis.XXXXXX)
    ;;&
redis)
    rport=$(free_port)
    start_redis "$rdir" "$rport"
    export SSE_HUB_BROKER__REDIS_URL="redis://127.0.0.1:$rport/0"
    ;;
cluster)
    addresses=()
    for _ in 1 2 3; do
        rport=$(free_port)
        # The bus port is named: the default, port + 10000, may not exist for a high port.
        start_redis "$rdir" "$rport" --cluster-enabled yes --cluster-port "$(free_port)" \
            --cluster-config-file "nodes-$rport.conf"
        addresses+=("127.0.0.1:$rport")
    done
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >"$rdir/create.log" 2>&1 ||
        { echo "redis-cli --cluster create failed (see $rdir/create.log)" >&2; exit 1; }
    for _ in $(seq 100); do
        ok=0
        for address in "${addresses[@]}"; do
            redis-cli -p "${address#*:}" cluster info 2>/dev/null | grep -q '^cluster_state:ok' && ok=$((ok + 1))
        done
        ((ok == ${#addresses[@]})) && break
        sleep 0.1
    done
    ((ok == ${#addresses[@]})) || { echo "the Redis Cluster did not become ok" >&2; exit 1; }
    export SSE_HUB_BROKER__BACKEND=redis-cluster SSE_HUB_BROKER__CLUSTER_MODE=sharded
    export SSE_HUB_BROKER__REDIS_URL="redis://${addresses[0]}"
    ;;
*) echo "usage: start-hub.sh [memory|redis|cluster]" >&2; exit 2 ;;
esac

if [[ -n ${PROFILE_OUT:-} ]]; then
    pyspy="$project/.venv/bin/py-spy"
    [[ -x $pyspy ]] || { echo "py-spy missing: $project/.venv/bin/pip install py-spy" >&2; exit 1; }
    # $$ is the PID the hub gets by the exec below; py-spy attaches once Python runs
    # there. The subshell exits at once, so py-spy is re-parented away from the
    # measured process tree; it writes its file when the hub exits.
    blocking=--nonblocking
    [[ ${PROFILE_BLOCKING:-0} == 1 ]] && blocking=
    (setsid bash -c 'sleep "$1"; exec taskset -c "$2" "$3" record --pid "$4" --rate "$5" --format raw \
        --output "$6" $7' profile "${PROFILE_DELAY:-1}" "${PROFILE_CPU:-1}" "$pyspy" $$ \
        "${PROFILE_RATE:-250}" "$PROFILE_OUT" "$blocking" >"$PROFILE_OUT.log" 2>&1 </dev/null &)
fi

exec "$project/.venv/bin/sse-hub" serve --host 127.0.0.1 --port "$PORT"
