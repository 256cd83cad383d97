#!/usr/bin/env bash
# bench/start-hub.sh [memory|redis] - run sse-hub in the foreground for the referee.
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
unset SSE_HUB_BENCH_PORT SSE_HUB_REDIS_BENCH_PORT
export SSE_HUB_LOG__LEVEL=${SSE_HUB_LOG__LEVEL:-warning}
export SSE_HUB_LIMITS__MAX_CONNECTIONS=${SSE_HUB_LIMITS__MAX_CONNECTIONS:-20000}
# every bench client connects from 127.0.0.1
export SSE_HUB_LIMITS__MAX_CONNECTIONS_PER_IP=${SSE_HUB_LIMITS__MAX_CONNECTIONS_PER_IP:-20000}
export SSE_HUB_BROKER__BACKEND=$backend

case $backend in
memory) ;;
redis)
    command -v redis-server >/dev/null || { echo "redis-server not installed (apt-get install redis-server)" >&2; exit 1; }
    rport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    rdir=$(mktemp -d /tmp/sse-hub-bench-redis.XXXXXX)
    pin=()
    [[ -n ${REDIS_CPU:-} ]] && pin=(taskset -c "$REDIS_CPU")
    "${pin[@]}" redis-server --bind 127.0.0.1 --port "$rport" --save '' --appendonly no --dir "$rdir" \
        --logfile "$rdir/redis.log" --daemonize no &
    for _ in $(seq 50); do
        redis-cli -p "$rport" ping >/dev/null 2>&1 && break
        sleep 0.1
    done
    redis-cli -p "$rport" ping >/dev/null 2>&1 || { echo "redis-server did not start on $rport" >&2; exit 1; }
    export SSE_HUB_BROKER__REDIS_URL="redis://127.0.0.1:$rport/0"
    ;;
*) echo "usage: start-hub.sh [memory|redis]" >&2; exit 2 ;;
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
