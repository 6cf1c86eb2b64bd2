#!/usr/bin/env bash
# make soak: memory under sustained overload (docs/operations.md, "Soak").
#
# Runs the release app against private PostgreSQL and Redis (ports 54349/63819, data in
# .data/soak) and drives it beyond capacity for SOAK_SECONDS (default 1200 = 20 minutes):
# cached goods-list reads at SOAK_READ_RATE/s (default 25,000, open model) mixed with wallet
# charges at SOAK_CHARGE_RATE/s (default 300). The app's VmRSS is sampled every second into
# .data/soak/rss.csv. At the end it prints first/max/last RSS, the statuses answered, and
# PASS or FAIL:
#   - max RSS below the chart's memory limit (app.resources.limits.memory, 256Mi), and
#   - flat: the median RSS of the last minute is at most SOAK_FLAT_MIB (default 24) above
#     the median of the minute at half time (a minute, or a quarter of a shorter run). Half
#     time, not the start: bounded warm-ups (the first token refresh at 5 minutes, caches
#     filling) may step RSS up once; a leak keeps growing through the second half. The
#     growth since the first minute is printed too.
# Exit status 0 on PASS, 1 on FAIL.
#
#   SOAK_APP_BIN / SOAK_LOADTEST_BIN   binaries to use (default: build target/release)
#   SOAK_MAX_VUS                       generator's VU cap for the reads (default 2000)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
SECS=${SOAK_SECONDS:-1200}
READ_RATE=${SOAK_READ_RATE:-25000}
CHARGE_RATE=${SOAK_CHARGE_RATE:-300}
MAX_VUS=${SOAK_MAX_VUS:-2000}
FLAT_MIB=${SOAK_FLAT_MIB:-24}
OUT=$ROOT/.data/soak
mkdir -p "$OUT"
rm -f "$OUT"/*.json "$OUT"/rss.csv "$OUT"/*.log

export DATABASE_URL=postgres://floodgate:floodgate@127.0.0.1:54349/floodgate
export REDIS_URL=redis://127.0.0.1:63819
export FLOODGATE_DATA_DIR=$OUT/services
export FLOODGATE_LISTEN_ADDR=127.0.0.1:19490
export FLOODGATE_JWT_SECRET=soak-secret-soak-secret-soak-secret-0123456
export FLOODGATE_AUTH_LIMIT_PER_IP=100000000 FLOODGATE_AUTH_LIMIT_PER_EMAIL=100000000
export RUST_LOG=warn
APP=http://$FLOODGATE_LISTEN_ADDR

log() { printf '[soak] %s\n' "$*" >&2; }

LIMIT=$(awk '/^app:/{a=1} a&&/limits:/{l=1} a&&l&&/memory:/{print $2; exit}' charts/floodgate/values.yaml)
case $LIMIT in
  *Mi) LIMIT_MIB=${LIMIT%Mi} ;;
  *Gi) LIMIT_MIB=$(( ${LIMIT%Gi} * 1024 )) ;;
  *) log "cannot read app.resources.limits.memory from the chart ($LIMIT)"; exit 1 ;;
esac

APP_BIN=${SOAK_APP_BIN:-}
GEN_BIN=${SOAK_LOADTEST_BIN:-}
if [ -z "$APP_BIN" ] || [ -z "$GEN_BIN" ]; then
  log "building release binaries"
  cargo build --release -q -p floodgate-app -p floodgate-loadtest
  TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
  # copies, so a concurrent build cannot swap the binary under the run
  cp "$TARGET/release/floodgate-app" "$OUT/floodgate-app"
  cp "$TARGET/release/floodgate-loadtest" "$OUT/floodgate-loadtest"
  APP_BIN=${APP_BIN:-$OUT/floodgate-app}
  GEN_BIN=${GEN_BIN:-$OUT/floodgate-loadtest}
fi

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/services.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if ss -ltn 2>/dev/null | grep -q "127.0.0.1:19490 "; then log "port 19490 is in use"; exit 1; fi
bash scripts/services.sh up
redis-cli -p 63819 flushall >/dev/null
"$APP_BIN" migrate >/dev/null 2>&1
"$APP_BIN" seed >/dev/null 2>&1

# always run in the background (`pin CPU cmd &`): exec keeps $! the command's own pid
pin() { if command -v taskset >/dev/null; then exec taskset -c "$@"; else shift; exec "$@"; fi; }
pin 0 "$APP_BIN" serve >"$OUT/app.log" 2>&1 &
APP_PID=$!; PIDS+=("$APP_PID")
until curl -sf "$APP/readyz" >/dev/null; do
  kill -0 "$APP_PID" 2>/dev/null || { tail -5 "$OUT/app.log" >&2; exit 1; }
  sleep 0.05
done
rss() { awk '/VmRSS/ {print $2}' "/proc/$APP_PID/status" 2>/dev/null || echo 0; }
log "app up (pid $APP_PID, RSS $(( $(rss) / 1024 )) MiB); chart limit ${LIMIT_MIB} MiB"

# the charges start first so their hot users sign up and log in before the reads flood
log "overload for ${SECS}s: goods list at ${READ_RATE}/s (≤ ${MAX_VUS} VUs) + charges at ${CHARGE_RATE}/s"
pin 1 "$GEN_BIN" run balance-charge --target "$APP" --param think_scale=0 --param hot_users=4 --param run_id="soak$$" \
  --executor constant-arrival-rate --rate "$CHARGE_RATE" --time-unit 1s --vus 64 --max-vus 600 \
  --duration "$(( SECS + 10 ))s" --no-progress --summary-json "$OUT/charges.json" >"$OUT/charges.log" 2>&1 &
CHARGE_PID=$!; PIDS+=("$CHARGE_PID")
sleep 10  # the hot users sign up and log in before the flood starts
pin 1 "$GEN_BIN" run goods-list --target "$APP" --executor constant-arrival-rate --rate "$READ_RATE" --time-unit 1s \
  --vus 500 --max-vus "$MAX_VUS" --duration "${SECS}s" --no-progress --summary-json "$OUT/reads.json" >"$OUT/reads.log" 2>&1 &
READ_PID=$!; PIDS+=("$READ_PID")

t0=$(date +%s)
echo "t_s,rss_kb" >"$OUT/rss.csv"
while kill -0 "$READ_PID" 2>/dev/null || kill -0 "$CHARGE_PID" 2>/dev/null; do
  kill -0 "$APP_PID" 2>/dev/null || { log "the app died"; break; }
  echo "$(( $(date +%s) - t0 )),$(rss)" >>"$OUT/rss.csv"
  sleep 1
done
wait "$READ_PID" "$CHARGE_PID" 2>/dev/null || true
alive=1; kill -0 "$APP_PID" 2>/dev/null || alive=0

python3 - "$OUT" "$LIMIT_MIB" "$FLAT_MIB" "$alive" <<'EOF'
import csv, json, statistics, sys
out, limit, flat, alive = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4] == "1"
rows = [(int(r["t_s"]), int(r["rss_kb"]) / 1024) for r in csv.DictReader(open(f"{out}/rss.csv")) if int(r["rss_kb"]) > 0]
if not rows:
    print("[soak] FAIL: no RSS samples"); sys.exit(1)
end = rows[-1][0]
warm = min(60, max(1, end // 4))
mid = end // 2
first = [m for t, m in rows if warm <= t < 2 * warm] or [rows[0][1]]
half = [m for t, m in rows if mid <= t < mid + warm] or [rows[0][1]]
last = [m for t, m in rows if t > end - warm] or [rows[-1][1]]
mx = max(m for _, m in rows)
growth = statistics.median(last) - statistics.median(half)
def statuses(name):
    try:
        s = json.load(open(f"{out}/{name}.json"))
    except Exception:
        return "no summary"
    m = s.get("metrics", {})
    reqs = m.get("http_reqs", {}).get("values", {}).get("count")
    failed = m.get("http_req_failed", {}).get("values", {}).get("rate")
    dropped = m.get("dropped_iterations", {}).get("values", {}).get("count", 0)
    return f"{reqs} requests, failed rate {failed}, dropped iterations {dropped}"
print(f"[soak] {len(rows)} samples over {end}s; RSS first {rows[0][1]:.0f} MiB, max {mx:.0f} MiB, last {rows[-1][1]:.0f} MiB")
print(f"[soak] median RSS {statistics.median(first):.0f} MiB at {warm}-{2*warm}s, {statistics.median(half):.0f} MiB at {mid}-{mid+warm}s, {statistics.median(last):.0f} MiB in the last {warm}s: second-half growth {growth:+.0f} MiB (flat if <= {flat:.0f}), {statistics.median(last) - statistics.median(first):+.0f} MiB since the first minute")
print(f"[soak] reads: {statuses('reads')}")
print(f"[soak] charges: {statuses('charges')}")
ok = alive and mx < limit and growth <= flat
why = [] if ok else [w for w, bad in [("the app died", not alive), (f"max RSS {mx:.0f} MiB >= chart limit {limit:.0f} MiB", mx >= limit), (f"RSS grew {growth:.0f} MiB", growth > flat)] if bad]
print(f"[soak] {'PASS' if ok else 'FAIL: ' + '; '.join(why)}")
json.dump({"seconds": end, "rss_first_mib": rows[0][1], "rss_max_mib": mx, "rss_last_mib": rows[-1][1], "second_half_growth_mib": growth, "limit_mib": limit, "pass": ok}, open(f"{out}/result.json", "w"))
sys.exit(0 if ok else 1)
EOF
