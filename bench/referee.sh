# bench/referee.sh - sourced by bench/run.sh and bench/profile.sh (needs HERE,
# BENCH_SRC, BENCH_WORK and the log and die functions).
#
# sync_referee: keep a working copy of the read-only referee (../shared/bench) in
# $BENCH_WORK, refreshed when the source is newer, and write the sse-hub targets
# into it (targets/sse-hub.env, targets/sse-hub-redis.env, targets/sse-hub-cluster.env),
# which start the project's hub through bench/start-hub.sh.

sync_referee() {
    [[ -f $BENCH_SRC/run.sh ]] || die "no referee at $BENCH_SRC (set BENCH_SRC)"
    local stamp=$BENCH_WORK/.synced
    if [[ ! -f $stamp || -n $(find "$BENCH_SRC" -newer "$stamp" -print -quit) ]]; then
        log "refreshing the referee's working copy $BENCH_WORK from $BENCH_SRC"
        mkdir -p "$BENCH_WORK"
        # mtimes are kept, so the referee's own "rebuild ssebench when its source is
        # newer" check keeps working; build output and installed deps stay in place.
        tar -C "$BENCH_SRC" --exclude=./ssebench --exclude=./peers/express/node_modules \
            --exclude=./peers/aiohttp-naive/.venv --exclude=./results -cf - . |
            tar -C "$BENCH_WORK" -xf - || die "cannot copy $BENCH_SRC to $BENCH_WORK"
        chmod -R u+w "$BENCH_WORK"
        touch "$stamp"
    fi
    write_target sse-hub "${SSE_HUB_BENCH_PORT:-8090}" memory
    write_target sse-hub-redis "${SSE_HUB_REDIS_BENCH_PORT:-8091}" redis
    write_target sse-hub-cluster "${SSE_HUB_CLUSTER_BENCH_PORT:-8092}" cluster
}

write_target() { # write_target NAME PORT BACKEND
    cat >"$BENCH_WORK/targets/$1.env" <<EOF
# $1: sse-hub ($3 broker), written by $HERE/referee.sh; same contract as project.env.
PORT=$2
START_CMD="'$HERE/start-hub.sh' $3"
SUB_PATH=/events/bench
PUB_PATH=/broadcast
PUB_CT=application/json
PUB_BODY='{"channels":["bench"],"event":"tick","data":{"t":{{T}},"seq":{{SEQ}},"pad":"{{PAD}}"}}'
SUB_PATH_S5='/events/{{CH}}'
PUB_PATH_S5=/broadcast
PUB_BODY_S5='{"channels":["{{CH}}"],"event":"tick","data":{"t":{{T}},"seq":{{SEQ}},"pad":"{{PAD}}"}}'
PUB_BATCH_S6=100
PUB_BODY_S6=\$PUB_BODY_S5
PUB_BATCH_OPEN_S6='['
PUB_BATCH_SEP_S6=','
PUB_BATCH_CLOSE_S6=']'
EOF
}
