#!/usr/bin/env bash
# The deploy/ cluster on loopback, without Docker: a redis-server, two `sse-hub serve`
# processes (this checkout's .venv) on the Redis broker, and nginx running
# deploy/nginx.conf with only its addresses and paths rewritten for loopback.
# Ctrl-C stops everything.
#
# Usage:
#   deploy/local.sh                     start; prints the URL (default http://127.0.0.1:8800)
#   deploy/local.sh render-nginx-conf DIR LISTEN_PORT TLS_PORT HUB_PORT...
#                                       print deploy/nginx.conf rewritten for loopback
#                                       (TLS_PORT 0 drops the TLS listener); the test
#                                       tests/test_nginx.py runs nginx on this output
# Settings (environment): NGINX_PORT=8800 HUB_PORTS="8801 8802" REDIS_PORT=6380
#   TLS_PORT=8443 (used only when CERT_DIR, default deploy/certs, holds fullchain.pem
#   and privkey.pem) NGINX=/usr/sbin/nginx REDIS_SERVER=redis-server
# Needs: redis-server, nginx (apt-get install -y redis-server nginx-light), a .venv
# with sse-hub installed (scripts/test makes one).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
CERT_DIR=${CERT_DIR:-$here/certs}

# Rewrite deploy/nginx.conf for loopback. Only these lines change; everything that
# matters to streaming (buffering, timeouts, headers) is tested as shipped.
render_nginx_conf() {
  local dir=$1 listen_port=$2 tls_port=$3
  shift 3
  local servers="" port user_rule tls_rules
  for port in "$@"; do
    servers+="\\n        server 127.0.0.1:$port max_fails=3 fail_timeout=10s;"
  done
  # As root, nginx would run its workers as www-data, which cannot reach a private
  # temp dir; as another user the directive is ignored, so drop it.
  if [ "$(id -u)" = 0 ]; then user_rule="s|^user .*|user root;|"; else user_rule="/^user /d"; fi
  if [ "$tls_port" = 0 ]; then
    tls_rules=("-e" "/# BEGIN tls/,/# END tls/d")
  else
    tls_rules=(
      "-e" "s|listen 443 ssl http2;|listen 127.0.0.1:$tls_port ssl http2;|"
      "-e" "s|/etc/nginx/certs/|$CERT_DIR/|"
    )
  fi
  sed -E \
    -e "1i pid $dir/nginx.pid;" \
    -e "$user_rule" \
    -e "/^worker_rlimit_nofile /d" \
    -e "s|^http \\{|&\\n    client_body_temp_path $dir/client_body;\\n    proxy_temp_path $dir/proxy;\\n    fastcgi_temp_path $dir/fastcgi;\\n    uwsgi_temp_path $dir/uwsgi;\\n    scgi_temp_path $dir/scgi;|" \
    -e "s|access_log /var/log/nginx/access.log|access_log $dir/access.log|" \
    -e "/^ *server hub[0-9]+:8080/d" \
    -e "s|^( *upstream sse_hub \\{)|\\1$servers|" \
    -e "s|listen 80;|listen 127.0.0.1:$listen_port;|" \
    "${tls_rules[@]}" \
    "$here/nginx.conf"
}

if [ "${1:-}" = render-nginx-conf ]; then
  shift
  [ $# -ge 4 ] || { echo "usage: $0 render-nginx-conf DIR LISTEN_PORT TLS_PORT HUB_PORT..." >&2; exit 2; }
  render_nginx_conf "$@"
  exit 0
fi

NGINX_PORT=${NGINX_PORT:-8800}
read -r -a HUB_PORTS <<<"${HUB_PORTS:-8801 8802}"
REDIS_PORT=${REDIS_PORT:-6380}
TLS_PORT=${TLS_PORT:-8443}
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
SSE_HUB=$root/.venv/bin/sse-hub

die() { echo "local.sh: $*" >&2; exit 1; }
[ -x "$NGINX" ] || die "nginx not found: apt-get install -y nginx-light"
[ -x "$REDIS_SERVER" ] || die "redis-server not found: apt-get install -y redis-server"
[ -x "$SSE_HUB" ] || die "$SSE_HUB not found: run scripts/test once (or python3 -m venv .venv && .venv/bin/pip install -e .)"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # PORT PID NAME LOG
  for _ in $(seq 1 100); do
    port_open "$1" && return 0
    kill -0 "$2" 2>/dev/null || { [ -f "$4" ] && tail -n 20 "$4" >&2; die "$3 exited before listening on $1"; }
    sleep 0.1
  done
  die "$3 is not listening on $1 after 10 s"
}

tls_port=0
[ -f "$CERT_DIR/fullchain.pem" ] && [ -f "$CERT_DIR/privkey.pem" ] && tls_port=$TLS_PORT
for port in "$NGINX_PORT" "${HUB_PORTS[@]}" "$REDIS_PORT" $([ "$tls_port" = 0 ] || echo "$tls_port"); do
  ! port_open "$port" || die "port $port is in use (set NGINX_PORT, HUB_PORTS, REDIS_PORT or TLS_PORT)"
done

work=$(mktemp -d -t sse-hub-local.XXXXXX)
pids=()
stop_all() {
  trap - INT TERM EXIT
  echo
  echo "stopping"
  # Started in the background of a script, the children ignore SIGINT: signal each one.
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap stop_all EXIT
trap 'stop_all; exit 0' INT TERM

"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port "$REDIS_PORT" $! redis-server "$work/redis.log"

for port in "${HUB_PORTS[@]}"; do
  SSE_HUB_BROKER__BACKEND=redis \
  SSE_HUB_BROKER__REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" \
  SSE_HUB_SERVER__TRUSTED_PROXIES="[127.0.0.1]" \
    "$SSE_HUB" serve --host 127.0.0.1 --port "$port" >"$work/hub-$port.log" 2>&1 &
  pids+=($!)
  wait_port "$port" $! "sse-hub on $port" "$work/hub-$port.log"
done

render_nginx_conf "$work" "$NGINX_PORT" "$tls_port" "${HUB_PORTS[@]}" >"$work/nginx.conf"
"$NGINX" -t -q -p "$work/" -c "$work/nginx.conf" || die "nginx rejected $work/nginx.conf"
"$NGINX" -p "$work/" -c "$work/nginx.conf" -g "daemon off;" &
pids+=($!)
wait_port "$NGINX_PORT" $! nginx ""

url=http://127.0.0.1:$NGINX_PORT
cat <<EOF

sse-hub cluster on loopback: redis :$REDIS_PORT, hubs :${HUB_PORTS[*]}, nginx :$NGINX_PORT
  $url$([ "$tls_port" = 0 ] || echo "   and https://127.0.0.1:$tls_port (HTTP/2)")

Subscribe through nginx:
  curl -N $url/events/demo
Publish to either hub (or through nginx):
  curl -X POST http://127.0.0.1:${HUB_PORTS[0]}/broadcast -H 'Content-Type: application/json' -d '{"channel":"demo","data":"hello"}'
Logs: $work (removed on exit). Ctrl-C stops everything.
EOF

# Wait until Ctrl-C, or until one of the processes dies on its own.
wait -n "${pids[@]}" || true
echo "local.sh: a process exited; see the logs above" >&2
for log in "$work"/*.log; do echo "== $log"; tail -n 5 "$log"; done >&2
exit 1
