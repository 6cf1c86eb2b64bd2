#!/usr/bin/env bash
# `make run REPLICAS=N` (called by scripts/run.sh once services, binaries and demo data are
# ready): N floodgate-app processes on the N ports after FLOODGATE_LISTEN_ADDR's, and Debian's
# nginx on FLOODGATE_LISTEN_ADDR in front of them, rendered from
# deploy/nginx/floodgate.conf.template (the same template the tests use) into .data/nginx.
# In the foreground until Ctrl-C, or until nginx or a replica exits; then everything started
# here is stopped (the replicas drain). Never touches the system's nginx service.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${1:?usage: replicas.sh N}
LISTEN=${FLOODGATE_LISTEN_ADDR:-127.0.0.1:8080}
HOST=${LISTEN%:*}
PORT=${LISTEN##*:}
DIR=$ROOT/.data/nginx
APP=${FLOODGATE_APP_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/floodgate-app}
mkdir -p "$DIR"

nginx_bin() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }; }
if ! NGINX=$(nginx_bin); then
  command -v apt-get >/dev/null || { echo "nginx not found and no apt-get: install nginx first" >&2; exit 1; }
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "[run] installing nginx from the system packages (run from .data/nginx, not as a service)" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx >/dev/null
  NGINX=$(nginx_bin)
fi

# what a previous run left behind
for f in "$DIR/nginx.pid" .data/replica-*.pid; do
  if [ -s "$f" ]; then kill "$(cat "$f")" 2>/dev/null || true; fi
done
rm -f .data/replica-*.pid

# the template with one upstream line per replica (its @ADDR@ line repeated)
ADDRS=()
for i in $(seq 1 "$N"); do ADDRS+=("$HOST:$((PORT + i))"); done
while IFS= read -r line; do
  line=${line//@DIR@/$DIR}
  line=${line//@LISTEN@/$LISTEN}
  if [[ $line == *@ADDR@* ]]; then
    for a in "${ADDRS[@]}"; do printf '%s\n' "${line//@ADDR@/$a}"; done
  else
    printf '%s\n' "$line"
  fi
done < deploy/nginx/floodgate.conf.template > "$DIR/nginx.conf"
"$NGINX" -t -q -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log"

PIDS=()
NGINX_PID=""
stop_all() {
  trap - EXIT INT TERM
  # replicas first: each drains (FLOODGATE_SHUTDOWN_DELAY_SECS) while nginx still routes
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  if [ -n "$NGINX_PID" ]; then kill -QUIT "$NGINX_PID" 2>/dev/null || true; wait "$NGINX_PID" 2>/dev/null || true; fi
  rm -f .data/replica-*.pid
}
trap stop_all EXIT INT TERM

# nginx connects from 127.0.0.1 (or the host's own address): the replicas believe its
# X-Forwarded-For, nobody else's
TRUSTED=${FLOODGATE_TRUSTED_PROXIES:-127.0.0.1/32}
# longer than the template's 2 s upstream keep-alive, so nginx has closed every idle
# connection to a draining replica before it closes its listener
DELAY=${FLOODGATE_SHUTDOWN_DELAY_SECS:-3}
[ "$DELAY" -ge 3 ] 2>/dev/null || DELAY=3
for i in $(seq 1 "$N"); do
  FLOODGATE_LISTEN_ADDR=${ADDRS[$((i - 1))]} FLOODGATE_REPLICA_ID=replica-$i \
    FLOODGATE_TRUSTED_PROXIES=$TRUSTED \
    FLOODGATE_SHUTDOWN_DELAY_SECS=$DELAY \
    "$APP" serve >".data/replica-$i.log" 2>&1 &
  PIDS+=($!)
  echo $! > ".data/replica-$i.pid"
done
# its own session, so Ctrl-C reaches only the replicas: nginx keeps routing while they drain
setsid "$NGINX" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log" &
NGINX_PID=$!

# GET /readyz answers 200 (bash's /dev/tcp: a fresh machine may have no curl)
ready() {
  (
    exec 3<>"/dev/tcp/${1%:*}/${1##*:}" || exit 1
    printf 'GET /readyz HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
    read -r line <&3 || exit 1
    [[ $line == *" 200 "* ]]
  ) 2>/dev/null
}
for a in "${ADDRS[@]}"; do
  for _ in $(seq 1 300); do ready "$a" && break; sleep 0.1; done
  ready "$a" || { echo "[run] replica at $a is not ready; see .data/replica-*.log" >&2; exit 1; }
done
echo "[run] $N replicas ready (${ADDRS[*]}) behind nginx on $LISTEN; Ctrl-C stops them" >&2
wait -n "${PIDS[@]}" "$NGINX_PID" || true
echo "[run] stopping the replicas (each drains), then nginx" >&2
