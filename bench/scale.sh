#!/usr/bin/env bash
# bench/scale.sh subs|size [TARGETS] - how cost grows: S1 and S2 at several sizes.
#
#   bench/scale.sh subs     subscribers 1000, 5000, 10000, 15000 (S1_SUBS/S2_SUBS); S1
#                           publishes 2000 x 1000 / subs messages, so every point
#                           delivers 2,000,000 events and stays within the referee's caps
#   bench/scale.sh size     event data ~100 B, ~1 KB, ~16 KB (PAD_LEN 55, 1000, 16000);
#                           S1 with 2000, 1000 and 250 messages
#
# TARGETS defaults to "sse-hub nchan"; REPS (default 1) rounds per point. Each point is
# one bench/run.sh call (alternating targets, quiet gate) writing
# bench/results/scale-<kind>-<UTC time>/<point>.jsonl; the table at the end is
# bench/summary.py --points over those files.
set -uo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KIND=${1:?usage: bench/scale.sh subs|size [TARGETS]}
TARGETS=${2:-sse-hub nchan}
REPS=${REPS:-1}
DIR=${SCALE_DIR:-$HERE/results/scale-$KIND-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$DIR"

point() { # point LABEL VAR=VALUE...
    local label=$1
    shift
    echo "== $label: $*" >&2
    env "$@" "$HERE/run.sh" --reps "$REPS" --scenarios "S1 S2" --targets "$TARGETS" --no-redis \
        --out "$DIR/$label.jsonl" >/dev/null || echo "   point $label failed" >&2
}

case $KIND in
subs)
    for n in 1000 5000 10000 15000; do
        point "subs-$n" S1_SUBS=$n S1_MSGS=$((2000 * 1000 / n)) S2_SUBS=$n
    done
    ;;
size)
    point pad-55 PAD_LEN=55 S1_MSGS=2000
    point pad-1000 PAD_LEN=1000 S1_MSGS=1000
    point pad-16000 PAD_LEN=16000 S1_MSGS=250
    ;;
*) echo "usage: bench/scale.sh subs|size [TARGETS]" >&2; exit 2 ;;
esac
# points in numeric order (subs-5000 before subs-10000)
mapfile -t files < <(cd "$DIR" && ls -- *.jsonl | sort -t- -k2,2n)
python3 "$HERE/summary.py" --points "${files[@]/#/$DIR/}"
