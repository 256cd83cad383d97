#!/usr/bin/env bash
# bench/profile.sh [SCENARIO] [TARGET] - one referee run with py-spy on the hub.
#
#   bench/profile.sh              S1 on sse-hub (memory broker)
#   bench/profile.sh S2 sse-hub-redis
#
# The hub is sampled by py-spy (raw collapsed stacks, PROFILE_RATE Hz, default 250)
# from one second after its start to its exit; py-spy runs detached on the client's
# core, outside the measured process tree (bench/start-hub.sh). Output goes to
# PROFILE_DIR (default bench/results/profile-<UTC time>/): the scenario's JSON line,
# the raw profile, and the text summary of bench/profile_summary.py, printed too.
# Needs py-spy in the project's venv: .venv/bin/pip install py-spy
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT="$(dirname "$HERE")"
BENCH_SRC=${BENCH_SRC:-$PROJECT/../shared/bench}
BENCH_WORK=${BENCH_WORK:-/tmp/sse-hub-bench}
SCEN=${1:-S1}
TARGET=${2:-sse-hub}

log() { echo "[bench/profile.sh] $*" >&2; }
die() { log "error: $*"; exit 1; }
# shellcheck source=bench/referee.sh
source "$HERE/referee.sh"

[[ $TARGET == sse-hub || $TARGET == sse-hub-redis || $TARGET == sse-hub-cluster ]] || die "profiles only sse-hub targets"
[[ -x $PROJECT/.venv/bin/py-spy ]] || die "py-spy missing: $PROJECT/.venv/bin/pip install py-spy"
sync_referee
DIR=${PROFILE_DIR:-$HERE/results/profile-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$DIR"
export PROFILE_OUT=$DIR/$TARGET-$SCEN.raw
rm -f "$PROFILE_OUT"

log "$TARGET $SCEN with py-spy -> $DIR"
export QUIET_GATE=${QUIET_GATE:-1}
timeout 150 "$BENCH_WORK/run.sh" "$TARGET" "$SCEN" >"$DIR/$TARGET-$SCEN.json" || die "the run failed"
# py-spy writes its file once it notices the hub has exited
for _ in $(seq 100); do
    [[ -s $PROFILE_OUT ]] && break
    sleep 0.2
done
[[ -s $PROFILE_OUT ]] || die "no profile written; py-spy said: $(cat "$PROFILE_OUT.log" 2>/dev/null)"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(", ".join(f"{k}={d[k]}" for k in ("connected","delivered","lost","deliveries_per_s","lat_p50_ms","lat_p99_ms","kb_per_conn","server_cpu_s","bg_busy_pct") if d.get(k) is not None))' "$DIR/$TARGET-$SCEN.json"
python3 "$HERE/profile_summary.py" "$PROFILE_OUT" --json "$DIR/$TARGET-$SCEN.json" | tee "$DIR/$TARGET-$SCEN.summary.txt"
