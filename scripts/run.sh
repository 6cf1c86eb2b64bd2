#!/usr/bin/env bash
# The one run command (`make run`): starts or finds PostgreSQL and Redis, builds the release
# binaries, loads demo data, starts the operator in local --manifests mode beside the app,
# and serves the app in the foreground until Ctrl-C. Safe to rerun.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

[ -f .env ] && { set -a; . ./.env; set +a; }
export DATABASE_URL=${DATABASE_URL:-postgres://floodgate:floodgate@127.0.0.1:54329/floodgate}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:63799}
export FLOODGATE_LISTEN_ADDR=${FLOODGATE_LISTEN_ADDR:-127.0.0.1:8080}
export RUST_LOG=${RUST_LOG:-info}
MANIFESTS=${FLOODGATE_MANIFESTS:-$ROOT/.data/manifests}

bash scripts/services.sh up
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
cargo build --release -p floodgate-app -p floodgate-operator

./target/release/floodgate-app seed

# The operator watches a folder of Campaign/QueueConfig files; start from the examples
# (kept if they exist, so your edits survive a rerun).
mkdir -p "$MANIFESTS"
for f in deploy/local/*.yaml; do
  [ -e "$MANIFESTS/$(basename "$f")" ] || cp "$f" "$MANIFESTS/"
done

APP_URL="http://$FLOODGATE_LISTEN_ADDR"
OPERATOR_LOG=$ROOT/.data/operator.log
if [ -s .data/operator.pid ] && kill -0 "$(cat .data/operator.pid)" 2>/dev/null; then
  kill "$(cat .data/operator.pid)" 2>/dev/null || true
fi
./target/release/floodgate-operator run --manifests "$MANIFESTS" \
  --redis-url "$REDIS_URL" --app-metrics-url "$APP_URL/metrics" >"$OPERATOR_LOG" 2>&1 &
echo $! > .data/operator.pid
trap 'kill "$(cat .data/operator.pid)" 2>/dev/null || true' EXIT

cat <<MSG

  Floodgate is starting.
    API docs        $APP_URL/docs
    OpenAPI         $APP_URL/openapi.json
    Waiting room    $APP_URL/waiting-room/concert-42
    Metrics         $APP_URL/metrics
    Operator        manifests in $MANIFESTS (edit them live), status in $MANIFESTS/.status, log in $OPERATOR_LOG
    Demo accounts   admin@floodgate.local / seller@floodgate.local / customer@floodgate.local, password floodgate-demo

MSG
./target/release/floodgate-app serve
