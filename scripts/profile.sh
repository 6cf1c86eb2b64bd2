#!/usr/bin/env bash
# scripts/profile.sh ROW [SECONDS]: CPU cost and flame graph of one bench row (#18).
#
# Release build, private PostgreSQL/Redis/app on their own ports, stopped at the end (so a `make bench` or the
# tests can run beside it), the app pinned to CPU 0 and the load to CPU 1 as in
# scripts/bench.sh. Two phases of SECONDS (default 10) each after a warm-up:
#   1. measure: the app's utime+stime (/proc/PID/stat) before and after, divided by the
#      requests the app served in that phase -> app CPU us/request (no profiler attached);
#   2. profile: `perf record -e cpu-clock -F 999 --call-graph dwarf` on the app (P6: on the
#      load generator), folded and drawn with inferno into docs/benchmarks/flame/<row>-<tag>.svg,
#      and split into parts in us per request (scripts/profile_split.py: kernel, auth, redis,
#      routing, middleware, ...).
# Why dwarf and not frame pointers: the release build has none (and std/tokio come
# precompiled without them); -C force-frame-pointers through RUSTFLAGS would rebuild the whole
# release graph in the shared target dir and evict the build everyone else uses. DWARF
# unwinding reads the .eh_frame every binary has, at the cost of a larger perf.data.
#
# Rows: P0 the bare axum server of the HTTP ceiling (the floor), P1L goods list, P1D goods detail, P2S sold-out answers, P2 flash-sale orders,
# P3 coupon issue, P4 waiting-room poll, P5 hot-wallet charges, P6 the load generator on the
# bare server. PROFILE_TAG (default "now") names the SVG (e.g. before / after);
# PROFILE_NO_BUILD=1 reuses the binaries copied into .data/profile/bin (PROFILE_BIN=DIR: the
# binaries of DIR, e.g. a saved "before" build); PROFILE_PERF=0 measures without profiling.
# PROFILE_STATEMENTS=1 (with PROFILE_PERF=0) also measures the PostgreSQL hot-row ceiling on the
# same PostgreSQL first (pgbench, as make bench) and prints PostgreSQL's execution and planning
# time per request of each statement in the measured phase (pg_stat_statements), beside what
# P2's (10x) or P5's (5x) target leaves per request (scripts/profile_statements.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROW=${1:?usage: scripts/profile.sh P0|P1L|P1D|P2S|P2|P3|P4|P5|P6 [SECONDS]}
SECS=${2:-10}
TAG=${PROFILE_TAG:-now}
INFERNO_VER=0.12.3
INFERNO=$HOME/.cache/floodgate/inferno-$INFERNO_VER/bin
OUT=$ROOT/.data/profile
BIN=${PROFILE_BIN:-$OUT/bin}
FLAME=$ROOT/docs/benchmarks/flame
mkdir -p "$OUT" "$BIN" "$FLAME"

export DATABASE_URL=postgres://floodgate:floodgate@127.0.0.1:54359/floodgate
export REDIS_URL=redis://127.0.0.1:63839
export FLOODGATE_DATA_DIR=$OUT/services
export FLOODGATE_LISTEN_ADDR=127.0.0.1:19490
export FLOODGATE_JWT_SECRET=bench-secret-bench-secret-bench-secret-0123
export FLOODGATE_DB_POOL_SIZE=${FLOODGATE_DB_POOL_SIZE:-32}
export FLOODGATE_AUTH_LIMIT_PER_IP=100000000 FLOODGATE_AUTH_LIMIT_PER_EMAIL=100000000
export RUST_LOG=warn
APP=http://$FLOODGATE_LISTEN_ADDR
CEILING_ADDR=127.0.0.1:19491

log() { printf '[profile] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "installing $2"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need perf linux-perf
need wrk wrk
need taskset util-linux
need psql postgresql-client
if [ ! -x "$INFERNO/inferno-flamegraph" ]; then
  log "installing inferno $INFERNO_VER into ${INFERNO%/bin}"
  cargo install -q inferno --version "$INFERNO_VER" --locked --root "${INFERNO%/bin}"
fi

if [ -z "${PROFILE_NO_BUILD:-}" ] && [ -z "${PROFILE_BIN:-}" ]; then
  log "building release binaries"
  cargo build --release -q -p floodgate-app -p floodgate-loadtest
  T=${CARGO_TARGET_DIR:-$ROOT/target}/release
  cp "$T/floodgate-app" "$T/floodgate-loadtest" "$BIN/"
fi

PIDS=()
STATEMENTS=${PROFILE_STATEMENTS:-0}
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$STATEMENTS" = 1 ]; then
    psql "$DATABASE_URL" -q -c "alter system reset shared_preload_libraries" \
      -c "alter system reset pg_stat_statements.track_planning" >/dev/null 2>&1 || true
  fi
  bash scripts/services.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT
bash scripts/services.sh up >/dev/null
if [ "$STATEMENTS" = 1 ]; then
  # the library loads at start only: set it, restart, and keep the view out of `public`
  psql "$DATABASE_URL" -qc "alter system set shared_preload_libraries = 'pg_stat_statements'" >/dev/null
  bash scripts/services.sh down >/dev/null
  bash scripts/services.sh up >/dev/null
  PGOPTIONS=--client-min-messages=warning psql "$DATABASE_URL" -q -c "alter system set pg_stat_statements.track_planning = on" -c "select pg_reload_conf()" \
    -c "create schema if not exists pgss" -c "create extension if not exists pg_stat_statements schema pgss" >/dev/null
fi
redis-cli -p 63839 flushall >/dev/null
psql "$DATABASE_URL" -qc "drop schema public cascade; create schema public;" >/dev/null 2>&1
"$BIN/floodgate-app" migrate >/dev/null 2>&1
"$BIN/floodgate-app" seed >/dev/null 2>&1
taskset -c 0 "$BIN/floodgate-app" serve >"$OUT/app.log" 2>&1 &
APP_PID=$!; PIDS+=("$APP_PID")
until curl -sf "$APP/readyz" >/dev/null; do
  kill -0 "$APP_PID" 2>/dev/null || { tail -5 "$OUT/app.log" >&2; exit 1; }
  sleep 0.05
done

json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
login() { curl -s -XPOST "$APP/api/v1/auth/login" -H 'content-type: application/json' \
  -d "{\"email\":\"$1@floodgate.local\",\"password\":\"floodgate-demo\"}" | json '["access_token"]'; }
# N users' tokens (ids from PostgreSQL, minted with the app's key as bench.sh does)
tokens() {
  psql "$DATABASE_URL" -qtAc "insert into users (email, password_hash, name)
    select 'prof-' || g || '@bench.local', 'not-a-hash', 'p' from generate_series(1, $1) g on conflict do nothing" >/dev/null
  psql "$DATABASE_URL" -qtAc "select user_id from users where email like 'prof-%' order by user_id limit $1" \
    | python3 scripts/bench_tokens.py "$FLOODGATE_JWT_SECRET" > "$OUT/tokens.txt"
}
# a wallet charge of AMOUNT for every user of tokens.txt (through the API: balance = ledger)
fund() {
  while read -r t; do
    curl -s -o /dev/null -XPOST "$APP/api/v1/wallet/charges" -H "authorization: Bearer $t" \
      -H 'content-type: application/json' -H "idempotency-key: fund-$$-${t: -12}" -d "{\"amount\":$1}"
  done < "$OUT/tokens.txt"
}

# wrk_load SECONDS: runs SECONDS of the row's load (WRK_ARGS) and prints the requests it sent
WRK_ARGS=()
# each call sends its own idempotency keys (profile_writes.lua: RUN_ID, thread, counter); with
# one RUN_ID for all phases the measured phase replayed the warm-up's keys
wrk_load() {
  RUN_ID=${RUN_ID:-run}-$(date +%s%N) taskset -c 1 wrk -t1 -c64 -d"${1}s" "${WRK_ARGS[@]}" > "$OUT/wrk.txt"
  awk '/requests in/ {print $1}' "$OUT/wrk.txt"
}
case $ROW in
  P0)  # the floor: the bare axum server of the HTTP ceiling, measured and profiled like the app
       taskset -c 0 "$BIN/floodgate-loadtest" ceiling-server --listen "$CEILING_ADDR" --body-bytes 2000 >/dev/null 2>&1 &
       APP_PID=$!; PIDS+=("$APP_PID"); sleep 0.5
       WRK_ARGS=("http://$CEILING_ADDR/") ;;
  P1L) WRK_ARGS=("$APP/api/v1/goods?limit=15") ;;
  P1D) id=$(curl -s "$APP/api/v1/goods?limit=1" | json '["items"][0]["id"]')
       WRK_ARGS=("$APP/api/v1/goods/$id") ;;
  P2S) # one unit, bought, then a refused order closes the sold-out gate; 1,000 other users
       # then order it (what every buyer sees once a flash sale is over)
       seller=$(login seller); tokens 1000
       id=$(curl -s -XPOST "$APP/api/v1/goods" -H "authorization: Bearer $seller" -H 'content-type: application/json' \
         -d '{"name":"gone","price":100,"stock":1}' | json '["id"]')
       buyer=$(login customer)
       curl -s -XPOST "$APP/api/v1/wallet/charges" -H "authorization: Bearer $buyer" -H 'content-type: application/json' -d '{"amount":1000}' >/dev/null
       for _ in 1 2; do curl -s -o /dev/null -XPOST "$APP/api/v1/orders" -H "authorization: Bearer $buyer" \
         -H 'content-type: application/json' -d "{\"items\":[{\"goods_id\":$id,\"quantity\":1}]}"; done
       export TOKENS_FILE=$OUT/tokens.txt WRK_METHOD=POST WRK_BODY="{\"items\":[{\"goods_id\":$id,\"quantity\":1}]}"
       WRK_ARGS=(-s scripts/bench_tokens.lua "$APP/api/v1/orders") ;;
  P2)  # the bench's flash sale (200 buyers, one item) with stock that lasts all phases: the
       # selling path only; buyers funded through the API before, each order with its own key
       seller=$(login seller); tokens 200
       id=$(curl -s -XPOST "$APP/api/v1/goods" -H "authorization: Bearer $seller" -H 'content-type: application/json' \
         -d '{"name":"flash","price":1,"stock":100000000}' | json '["id"]')
       fund 10000000
       export TOKENS_FILE=$OUT/tokens.txt RUN_ID=$$ WRK_BODY="{\"items\":[{\"goods_id\":$id,\"quantity\":1}]}"
       WRK_ARGS=(-c200 -s scripts/profile_writes.lua "$APP/api/v1/orders") ;;
  P3)  admin=$(login admin); tokens 100000
       camp=$(curl -s -XPOST "$APP/api/v1/coupon-campaigns" -H "authorization: Bearer $admin" -H 'content-type: application/json' \
         -d '{"name":"prof","discount_amount":1000,"total_quantity":1000,"starts_at":"2020-01-01T00:00:00Z","ends_at":"2099-01-01T00:00:00Z"}' | json '["id"]')
       export TOKENS_FILE=$OUT/tokens.txt WRK_METHOD=POST
       WRK_ARGS=(-s scripts/bench_tokens.lua "$APP/api/v1/coupon-campaigns/$camp/issue") ;;
  P4)  tokens 1
       qt=$(curl -s -XPOST "$APP/api/v1/queues/concert-42/tokens" -H "authorization: Bearer $(head -1 "$OUT/tokens.txt")" | json '["token"]')
       export TOKENS_FILE=$OUT/tokens.txt QUEUE_TOKEN=$qt
       WRK_ARGS=(-s scripts/bench_tokens.lua "$APP/api/v1/queues/concert-42/tokens/me") ;;
  P5)  # charges on one hot wallet, 64 connections, each charge with its own key
       tokens 1
       export TOKENS_FILE=$OUT/tokens.txt RUN_ID=$$ WRK_BODY='{"amount":1}'
       WRK_ARGS=(-s scripts/profile_writes.lua "$APP/api/v1/wallet/charges") ;;
  P6)  taskset -c 0 "$BIN/floodgate-loadtest" ceiling-server --listen "$CEILING_ADDR" --body-bytes 2000 >/dev/null 2>&1 &
       PIDS+=("$!"); sleep 0.5
       GEN_ARGS=(ceiling --target "http://$CEILING_ADDR" --executor constant-vus --vus 64)
       ;;
  *) log "unknown row $ROW"; exit 2 ;;
esac

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# PostgreSQL (postmaster and its backends) and Redis of this run: their CPU per request too
svc_ticks() {
  local pm ps
  pm=$(head -1 "$FLOODGATE_DATA_DIR/postgres/postmaster.pid")
  ps=$(pgrep -P "$pm" | tr '\n' ' ')
  # shellcheck disable=SC2046,SC2086
  cat "/proc/$pm/stat" $(printf '/proc/%s/stat ' $ps) "/proc/$(cat "$FLOODGATE_DATA_DIR/redis/redis.pid")/stat" 2>/dev/null \
    | awk '{ s += $14 + $15 } END { print s }'
}
HZ=$(getconf CLK_TCK)
if [ "$ROW" = P6 ]; then
  log "P6: measuring the generator ($SECS s)"
  # its CPU seconds from the kernel's accounting of the child once it exited
  cpu_s=$(python3 -c 'import resource,subprocess,sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN); print(r.ru_utime + r.ru_stime)' \
    taskset -c 1 "$BIN/floodgate-loadtest" run "${GEN_ARGS[@]}" --duration "${SECS}s" --summary-json "$OUT/gen.json" --no-progress)
  c0=0; c1=$(python3 -c "print(round($cpu_s * $HZ))")
  reqs=$(json '["metrics"]["http_reqs"]["values"]["count"]' < "$OUT/gen.json")
else
  if [ "$STATEMENTS" = 1 ]; then
    log "$ROW: PostgreSQL hot-row ceiling (pgbench, 16 clients updating one row, 3 x 5 s)"
    hot=$(for _ in 1 2 3; do bash scripts/pg_hot_row.sh "$DATABASE_URL" 5 | awk '/^tps/ {print $3}'; done | sort -n | sed -n 2p)
  fi
  log "$ROW: warm-up (2 s)"
  wrk_load 2 >/dev/null
  log "$ROW: measuring ($SECS s, no profiler)"
  [ "$STATEMENTS" = 1 ] && psql "$DATABASE_URL" -qc "select pgss.pg_stat_statements_reset()" >/dev/null
  c0=$(ticks "$APP_PID"); s0=$(svc_ticks)
  reqs=$(wrk_load "$SECS")
  c1=$(ticks "$APP_PID"); s1=$(svc_ticks)
  svc_us=$(python3 -c "print(round(($s1 - $s0) * 1e6 / $HZ / max($reqs, 1), 1))")
  if [ "$STATEMENTS" = 1 ]; then
    psql "$DATABASE_URL" -tAF'|' -c "select calls, rows, total_exec_time, total_plan_time, regexp_replace(query, '\s+', ' ', 'g')
      from pgss.pg_stat_statements where calls > 1 order by total_exec_time + total_plan_time desc" > "$OUT/statements.txt"
  fi
fi
us=$(python3 -c "print(round(($c1 - $c0) * 1e6 / $HZ / max($reqs, 1), 1))")
rate=$(python3 -c "print(round($reqs / $SECS))")
if [ "${PROFILE_PERF:-1}" = 0 ]; then
  echo "$ROW $TAG: requests=$reqs rate=${rate}/s cpu_ticks=$((c1 - c0)) us_per_request=$us postgres_redis_us_per_request=${svc_us:--}"
  if [ "$STATEMENTS" = 1 ] && [ "$ROW" != P6 ]; then
    python3 scripts/profile_statements.py "$ROW" "$hot" "$reqs" "$SECS" "$OUT/statements.txt"
  fi
  exit 0
fi
if [ "$ROW" = P6 ]; then
  log "P6: perf record on the generator ($SECS s)"
  taskset -c 1 "$BIN/floodgate-loadtest" run "${GEN_ARGS[@]}" --duration "${SECS}s" --summary-json "$OUT/gen2.json" --no-progress >/dev/null 2>&1 &
  gp=$!; sleep 0.5
  perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$gp" -o "$OUT/perf.data" -- sleep "$((SECS - 1))" 2>/dev/null
  wait "$gp" || true
else
  log "$ROW: perf record on the app ($SECS s)"
  perf record -q -e cpu-clock -F 999 --call-graph dwarf,16384 -p "$APP_PID" -o "$OUT/perf.data" -- sleep "$SECS" 2>/dev/null &
  perf_pid=$!
  wrk_load "$SECS" >/dev/null
  wait "$perf_pid" || true
fi
log "folding and drawing"
perf script -i "$OUT/perf.data" 2>/dev/null | "$INFERNO/inferno-collapse-perf" > "$OUT/$ROW.folded"
svg=$FLAME/$ROW-$TAG.svg
"$INFERNO/inferno-flamegraph" --minwidth 0.3 --title "$ROW ($TAG): $us us CPU/request" < "$OUT/$ROW.folded" > "$svg"
# where the request's CPU goes, in us per request (scripts/profile_split.py)
python3 scripts/profile_split.py "$OUT/$ROW.folded" "$us" >&2
echo "$ROW $TAG: requests=$reqs rate=${rate}/s cpu_ticks=$((c1 - c0)) us_per_request=$us postgres_redis_us_per_request=${svc_us:--} svg=${svg#"$ROOT"/}"
