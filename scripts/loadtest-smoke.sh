#!/usr/bin/env bash
# A short run of every floodgate-loadtest scenario against the real app (seconds each): the
# scenarios' requests, checks and after-run invariants (no oversell, coupons <= cap, balance
# = ledger, no seat paid twice) must all pass. Uses its own database (floodgate_smoke, made
# anew each run) and Redis prefix, and a free port.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BASE_URL=${DATABASE_URL:-postgres://floodgate:floodgate@127.0.0.1:54329/floodgate}
export DATABASE_URL="${BASE_URL%/*}/floodgate_smoke"
export FLOODGATE_REDIS_PREFIX="smoke-$$:"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FLOODGATE_LISTEN_ADDR=127.0.0.1:$PORT
# the load generator stands in for the ingress: it sends each user's address in X-Forwarded-For
export FLOODGATE_CLIENT_IP_HEADER=x-forwarded-for FLOODGATE_TRUSTED_PROXIES=127.0.0.1/32 FLOODGATE_AUTH_LIMIT_PER_IP=1000000 FLOODGATE_AUTH_LIMIT_PER_EMAIL=1000000
# a functional smoke: logins queue for the argon2 slots rather than being refused
export FLOODGATE_PASSWORD_HASH_WAIT_MS=5000
export RUST_LOG=warn
TARGET=http://$FLOODGATE_LISTEN_ADDR

psql "${BASE_URL%/*}/postgres" -qc "drop database if exists floodgate_smoke" -qc "create database floodgate_smoke" >/dev/null
cargo build -q -p floodgate-app -p floodgate-loadtest
# the build's own binaries (CARGO_TARGET_DIR may point outside the checkout)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug
"$BIN/floodgate-app" seed >/dev/null
"$BIN/floodgate-app" serve >"$ROOT/.data/smoke-app.log" 2>&1 &
APP_PID=$!
cleanup() {
  kill "$APP_PID" 2>/dev/null || true
  redis-cli -u "${REDIS_URL:-redis://127.0.0.1:63799}" --scan --pattern "${FLOODGATE_REDIS_PREFIX}*" \
    | xargs -r redis-cli -u "${REDIS_URL:-redis://127.0.0.1:63799}" del >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 100); do curl -sf "$TARGET/readyz" >/dev/null && break; sleep 0.1; done

failed=0
run() {
  local name=$1; shift
  if "$BIN/floodgate-loadtest" run "$name" --target "$TARGET" --no-progress --param think_scale=0 "$@" \
      >"$ROOT/.data/smoke-$name.log" 2>&1; then
    echo "smoke: $name ok"
  else
    echo "smoke: $name FAILED (see .data/smoke-$name.log)"; tail -15 "$ROOT/.data/smoke-$name.log"; failed=$((failed + 1))
  fi
}
SHORT=(--executor constant-vus --vus 4 --duration 2s)
run goods-list "${SHORT[@]}"
run goods-detail "${SHORT[@]}"
run cart-insert "${SHORT[@]}"
run balance-get "${SHORT[@]}"
run balance-charge "${SHORT[@]}"
run hot-order "${SHORT[@]}"
run coupon-drop --param campaign_id=1 "${SHORT[@]}"
run token-stress "${SHORT[@]}"
run queue-flow --executor constant-vus --vus 2 --duration 3s
# P9's flow: every flow must complete (threshold checks rate > 0.99 and no seat paid twice)
run reserve-pay --executor constant-vus --vus 3 --duration 4s
echo "$((10 - failed)) passed, $failed failed"
[ "$failed" -eq 0 ]
