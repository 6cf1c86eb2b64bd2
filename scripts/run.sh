#!/usr/bin/env bash
# The one run command (`make run`): starts or finds PostgreSQL and Redis, builds the release
# binaries, loads demo data, starts the operator in local --manifests mode beside the app,
# and serves the app in the foreground until Ctrl-C. Safe to rerun.
#
# REPLICAS=N (`make run REPLICAS=3`; default 1): N app processes on the ports after
# FLOODGATE_LISTEN_ADDR's, behind Debian's nginx on FLOODGATE_LISTEN_ADDR itself, configured
# from deploy/nginx/floodgate.conf.template as the chart's ingress is (docs/deploy.md,
# "Several replicas behind nginx"). nginx runs from .data/nginx, never as the system service.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

[ -f .env ] && { set -a; . ./.env; set +a; }
export DATABASE_URL=${DATABASE_URL:-postgres://floodgate:floodgate@127.0.0.1:54329/floodgate}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:63799}
export FLOODGATE_LISTEN_ADDR=${FLOODGATE_LISTEN_ADDR:-127.0.0.1:8080}
export RUST_LOG=${RUST_LOG:-info}
MANIFESTS=${FLOODGATE_MANIFESTS:-$ROOT/.data/manifests}
REPLICAS=${REPLICAS:-1}
case $REPLICAS in
  [1-9]|1[0-6]) ;;
  *) echo "REPLICAS must be a number from 1 to 16, not '$REPLICAS'" >&2; exit 1 ;;
esac

bash scripts/services.sh up
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }
cargo build --release -p floodgate-app -p floodgate-operator
BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release

"$BIN"/floodgate-app seed

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
"$BIN"/floodgate-operator run --manifests "$MANIFESTS" \
  --redis-url "$REDIS_URL" --app-metrics-url "$APP_URL/metrics" >"$OPERATOR_LOG" 2>&1 &
echo $! > .data/operator.pid
trap 'kill "$(cat .data/operator.pid)" 2>/dev/null || true' EXIT

cat <<MSG

  Floodgate is starting.
    API docs        $APP_URL/docs
    OpenAPI         $APP_URL/openapi.json
    Waiting room    $APP_URL/waiting-room/concert-42
    Metrics         $APP_URL/metrics
    Replicas        $REPLICAS$([ "$REPLICAS" -gt 1 ] && echo " behind nginx on $FLOODGATE_LISTEN_ADDR; logs in $ROOT/.data/replica-*.log")
    Operator        manifests in $MANIFESTS (edit them live), status in $MANIFESTS/.status, log in $OPERATOR_LOG
    Demo accounts   admin@floodgate.local / seller@floodgate.local / customer@floodgate.local, password floodgate-demo

MSG
if [ "$REPLICAS" -eq 1 ]; then
  "$BIN"/floodgate-app serve
  exit
fi
FLOODGATE_APP_BIN="$BIN/floodgate-app" bash scripts/replicas.sh "$REPLICAS"
