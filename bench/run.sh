#!/usr/bin/env bash
# bench/run.sh - sse-hub against nchan and Express with the shared referee, one command.
#
#   bench/run.sh                 S1-S4, 3 rounds: sse-hub, nchan, express (+ sse-hub-redis on S1)
#   bench/run.sh --quick         1 round of S1 and S2: sse-hub and nchan (about 3 minutes)
#   bench/run.sh --table FILE..  print the tables again from saved results
#
# Options (or the environment variable in brackets):
#   --reps N            rounds [REPS, default 3; --quick: 1]
#   --scenarios "S1 S2" scenarios [SCENARIOS, default "S1 S2 S3 S4"; --quick: "S1 S2"]
#   --targets "a b"     targets [TARGETS, default "sse-hub nchan express"; --quick: "sse-hub nchan"]
#   --redis / --no-redis  also run sse-hub-redis (a private redis-server), on
#                       REDIS_SCENARIOS (default "S1") [REDIS=1/0, default 1; --quick: 0]
#                       The target sse-hub-cluster (a private 3-master Redis Cluster, the
#                       sharded broker) runs only when named in --targets, on
#                       REDIS_SCENARIOS too.
#   --out FILE          results (JSON lines) [OUT, default bench/results/run-<UTC time>.jsonl]
# Referee knobs pass through the environment: PAD_LEN (event size), S1_SUBS, S1_MSGS,
# S2_RATE, S3_SUBS, S4_SUBS, ..., QUIET_GATE (default 1 here), QUIET_BUSY, QUIET_MAX_WAIT.
#
# The referee lives in ../shared/bench (BENCH_SRC) and is read-only: it builds its load
# client and installs its peers' dependencies inside its own folder. So it runs from a
# working copy, BENCH_WORK (default /tmp/sse-hub-bench), refreshed whenever the source
# is newer; the sse-hub targets are written into that copy as targets/sse-hub*.env and
# start the project's hub through bench/start-hub.sh. Nothing of the referee is copied
# into the project.
#
# Rounds alternate: in each round every scenario runs once per target, the targets in a
# rotating order, so background load drifts spread over all of them. Every run is one
# call of the referee's run.sh (fresh server pinned to CPU 0, client on CPU 1, bounded).
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(dirname "$HERE")"
BENCH_SRC=${BENCH_SRC:-$PROJECT/../shared/bench}
BENCH_WORK=${BENCH_WORK:-/tmp/sse-hub-bench}

log() { echo "[bench/run.sh] $*" >&2; }
die() { log "error: $*"; exit 1; }

REPS=${REPS:-} SCENARIOS=${SCENARIOS:-} TARGETS=${TARGETS:-} REDIS=${REDIS:-}
REDIS_SCENARIOS=${REDIS_SCENARIOS:-S1}
OUT=${OUT:-}
QUICK=0 TABLE_ONLY=0
while (($#)); do
    case $1 in
    --quick) QUICK=1 ;;
    --reps) REPS=${2:?}; shift ;;
    --scenarios) SCENARIOS=${2:?}; shift ;;
    --targets) TARGETS=${2:?}; shift ;;
    --redis) REDIS=1 ;;
    --no-redis) REDIS=0 ;;
    --out) OUT=${2:?}; shift ;;
    --table) TABLE_ONLY=1; shift; break ;;
    -h | --help) sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
    esac
    shift
done

# shellcheck source=bench/referee.sh
source "$HERE/referee.sh" # sync_referee: the working copy and the sse-hub targets

if ((TABLE_ONLY)); then
    (($#)) || die "--table needs result files"
    sync_referee
    python3 "$BENCH_WORK/report.py" table "$@"
    python3 "$HERE/summary.py" "$@"
    exit
fi

if ((QUICK)); then
    REPS=${REPS:-1} SCENARIOS=${SCENARIOS:-S1 S2} TARGETS=${TARGETS:-sse-hub nchan} REDIS=${REDIS:-0}
fi
REPS=${REPS:-3}
SCENARIOS=${SCENARIOS:-S1 S2 S3 S4}
TARGETS=${TARGETS:-sse-hub nchan express}
REDIS=${REDIS:-1}
read -r -a scenarios <<<"$SCENARIOS"
read -r -a targets <<<"$TARGETS"
((REDIS)) && [[ " ${targets[*]} " != *" sse-hub-redis "* ]] && targets+=(sse-hub-redis)
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps must be a positive integer"

# --- prerequisites ------------------------------------------------------------------
[[ -x $PROJECT/.venv/bin/sse-hub ]] || die "no $PROJECT/.venv/bin/sse-hub (pip install -e '.[fast]' into .venv)"
command -v gcc >/dev/null || die "gcc is needed to build the load client"
for t in "${targets[@]}"; do
    case $t in
    nchan) [[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ]] || die "nchan: apt-get install -y libnginx-mod-nchan" ;;
    express) command -v node >/dev/null || die "express: node/npm are needed" ;;
    sse-hub-redis | sse-hub-cluster) command -v redis-server >/dev/null || die "$t: apt-get install -y redis-server" ;;
    esac
done
sync_referee
gcc -O2 -o "$BENCH_WORK/ssebench" "$BENCH_WORK/ssebench.c" || die "cannot build ssebench"
for t in "${targets[@]}"; do
    [[ -f $BENCH_WORK/targets/$t.env ]] || die "unknown target $t (no $BENCH_WORK/targets/$t.env)"
done

OUT=${OUT:-$HERE/results/run-$(date -u +%Y%m%dT%H%M%SZ).jsonl}
mkdir -p "$(dirname "$OUT")"
export QUIET_GATE=${QUIET_GATE:-1}
log "results: $OUT  (reps=$REPS scenarios='${scenarios[*]}' targets='${targets[*]}')"

takes_part() { # takes_part TARGET SCENARIO: the Redis variants run REDIS_SCENARIOS only
    [[ $1 != sse-hub-redis && $1 != sse-hub-cluster ]] || [[ " $REDIS_SCENARIOS " == *" $2 "* ]]
}

failed=0
n=${#targets[@]}
for rep in $(seq "$REPS"); do
    for s in "${scenarios[@]}"; do
        for i in $(seq 0 $((n - 1))); do
            t=${targets[$(((i + rep - 1) % n))]} # rotate who goes first each round
            takes_part "$t" "$s" || continue
            log "round $rep/$REPS: $t $s ($(date -u +%H:%M:%S))"
            if line=$(timeout 150 "$BENCH_WORK/run.sh" "$t" "$s"); then
                echo "$line" >>"$OUT"
                python3 -c 'import json,sys; d=json.loads(sys.argv[1]); print("   " + ", ".join(f"{k}={d[k]}" for k in ("connected","delivered","lost","deliveries_per_s","lat_p50_ms","lat_p99_ms","kb_per_conn","bg_busy_pct") if d.get(k) is not None))' "$line" >&2
            else
                log "   run failed (rc=$?)"
                failed=$((failed + 1))
            fi
            sleep 1
        done
    done
done

[[ -s $OUT ]] || die "no run produced a result"
echo
echo "Results: $OUT ($failed failed run(s))"
python3 "$BENCH_WORK/report.py" table "$OUT"
python3 "$HERE/summary.py" "$OUT"
