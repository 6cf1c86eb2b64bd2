#!/usr/bin/env bash
# End to end without a cluster: the real app + the operator in `run --manifests` mode + real
# Redis (and the app's PostgreSQL). Asserts that
#   1. a QueueConfig file edit is applied by the app within 2 s (its config:applied entry),
#   2. real queue joins raise the waiting count the operator observes, and the reported
#      desired replicas follow ceil(waiting / waitingPerReplica) within min/max and the step,
#   3. p95 is read from the real app's /metrics.
#
# Prerequisites: cargo, redis-server reachable at REDIS_URL (default redis://127.0.0.1:63799),
# PostgreSQL at DATABASE_URL (the app's default), curl, jq, redis-cli, python3.
# Everything runs under a unique Redis prefix and free ports, and is removed afterwards.
# USERS (default 60) real users sign up and join the queue.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:63799}
USERS=${USERS:-60}
PREFIX="fge2e-$$:"
WORK=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
APP_PORT=$(free_port)
OP_PORT=$(free_port)
APP="http://127.0.0.1:$APP_PORT"
PIDS=()

cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  redis-cli -u "$REDIS_URL" --scan --pattern "${PREFIX}*" | while read -r k; do redis-cli -u "$REDIS_URL" del "$k" >/dev/null; done
  [[ "${KEEP:-0}" == 1 ]] && echo "kept $WORK" || rm -rf "$WORK"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; echo "--- operator log" >&2; tail -20 "$WORK/operator.log" >&2; exit 1; }
applied() { redis-cli -u "$REDIS_URL" hget "${PREFIX}config:applied" e2e-1; }
status_field() { grep -m1 "^    $1:" "$WORK/status/campaign-default-xmas-tickets.yaml" 2>/dev/null | awk '{print $2}'; }

cd "$ROOT"
cargo build -q -p floodgate-app -p floodgate-operator
# the build's own binaries (CARGO_TARGET_DIR may point outside the checkout)
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/debug

echo "== app on $APP (prefix $PREFIX)"
FLOODGATE_LISTEN_ADDR="127.0.0.1:$APP_PORT" FLOODGATE_REDIS_PREFIX="$PREFIX" FLOODGATE_REPLICA_ID=e2e-1 \
  FLOODGATE_AUTH_LIMIT_PER_IP=100000 "$BIN/floodgate-app" serve >"$WORK/app.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "$APP/readyz" >/dev/null && break; sleep 0.2; done
curl -sf "$APP/readyz" >/dev/null || fail "app not ready"

echo "== manifests"
mkdir -p "$WORK/m"
# Admit one user at a time, so everyone else waits.
sed -e '/opensAt\|closesAt/d' -e 's/maxActiveUsers: 500/maxActiveUsers: 1/' -e 's/admitPerMinute: 600/admitPerMinute: 1/' \
  crds/examples/queueconfig.yaml >"$WORK/m/queueconfig.yaml"
START=$(date -u -d '-5 minutes' +%Y-%m-%dT%H:%M:%SZ)
END=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
# Memory settings are global to a Redis; leave the shared one alone. Short KPA windows (as in
# the cluster lifecycle test): the default 60 s stable window would average the ramp of joins,
# and this script checks that each read recommends ceil(waiting / waitingPerReplica).
sed -e "s/2026-12-24T10:00:00Z/$START/" -e "s/2026-12-24T12:00:00Z/$END/" -e '/maxmemory/d' \
    -e 's/waitingPerReplica: 2000/waitingPerReplica: 10/' \
    -e 's/panic: { window: 6s, threshold: 2.0 }/panic: { window: 1s, stableWindow: 2s, threshold: 10 }/' \
  crds/examples/campaign.yaml >"$WORK/m/campaign.yaml"

echo "== operator"
"$BIN/floodgate-operator" run --manifests "$WORK/m" --status-dir "$WORK/status" \
  --redis-prefix "$PREFIX" --app-metrics-url "$APP/metrics" --listen "127.0.0.1:$OP_PORT" \
  --initial-replicas 2 >"$WORK/operator.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 50); do [[ "$(applied)" -ge 1 ]] 2>/dev/null && break; sleep 0.2; done
V1=$(applied); [[ "$V1" -ge 1 ]] 2>/dev/null || fail "the app never applied the operator's runtime config"
echo "app runs runtime config version $V1"

echo "== 1. a file edit reaches the app within 2 s"
sed -i 's/maxActiveUsers: 1$/maxActiveUsers: 2/' "$WORK/m/queueconfig.yaml"
T0=$(date +%s%N)
until [[ "$(applied)" -gt "$V1" ]]; do
  (( ($(date +%s%N) - T0) / 1000000 < 2000 )) || fail "edit not applied within 2 s"
  sleep 0.05
done
echo "applied in $(( ($(date +%s%N) - T0) / 1000000 )) ms"
curl -sf "$APP/api/v1/queues/concert-42" | jq -e '.max_active == 2' >/dev/null || fail "queue does not report max_active 2"

echo "== 2. $USERS real joins"
join() {
  local email="e2e-$$-$1@example.com" token
  curl -sf -o /dev/null -H 'content-type: application/json' "$APP/api/v1/auth/signup" \
    -d "{\"email\":\"$email\",\"password\":\"e2e-password-123\",\"name\":\"E2E $1\"}"
  token=$(curl -sf -H 'content-type: application/json' "$APP/api/v1/auth/login" \
    -d "{\"email\":\"$email\",\"password\":\"e2e-password-123\"}" | jq -r .access_token)
  curl -sf -o /dev/null -X POST -H "authorization: Bearer $token" "$APP/api/v1/queues/concert-42/tokens"
}
export -f join; export APP
seq "$USERS" | xargs -P 4 -I{} bash -c 'join {}' || fail "joins failed"
expected_ok=0
for _ in $(seq 60); do
  W=$(status_field waiting); D=$(status_field desired)
  if [[ -n "$W" && "$W" -ge $((USERS - 3)) ]]; then
    WANT=$(( (W + 9) / 10 )); (( WANT < 2 )) && WANT=2; (( WANT > 40 )) && WANT=40
    if [[ "$D" == "$WANT" ]]; then expected_ok=1; break; fi
  fi
  sleep 0.5
done
(( expected_ok )) || fail "waiting=$W desired=$D, expected desired=ceil(waiting/10)"
echo "waiting $W -> desired $D ($(grep -m1 'reason:' "$WORK/status/campaign-default-xmas-tickets.yaml"))"

echo "== 3. p95 from the app's /metrics"
P95=$(status_field p95)
[[ "$P95" =~ ^[0-9]+ms$ ]] || fail "p95 not measured: $P95"
echo "p95 $P95"
echo "PASS"
