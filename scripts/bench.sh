#!/usr/bin/env bash
# make bench (ports below the ephemeral range, so test clients cannot hold them): release build, private PostgreSQL/Redis/app pinned to CPU 0 and the load
# generator to CPU 1 (PERFORMANCE.md), same-run ceilings (bare axum server with wrk,
# redis-benchmark, pgbench), then the P-workloads with floodgate-loadtest. Each figure is the
# median of BENCH_RUNS runs (default 3) of BENCH_SECONDS (default 10 s). Writes
# docs/benchmarks/latest.json, README.md, history.json (the ceilings of each full run) and
# docs/capacity.md. Each row also carries the CPU µs per request of the app, PostgreSQL and
# Redis (scripts/bench_cpu.py); the run conditions decide whether targets are judged
# (scripts/bench_conditions.py).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
RUNS=${BENCH_RUNS:-3}
SECS=${BENCH_SECONDS:-10}
# BENCH_ONLY=P2,P5 runs the ceilings and only those workloads, and writes its report to
# .data/bench/partial instead of docs/benchmarks (a partial run never replaces the full table).
# RC (P3 and P4 again with the app on a local Redis Cluster) runs P3 and P4 as its baseline.
ONLY=${BENCH_ONLY:-}
# BENCH_PORT_SHIFT=N moves every port of the bench's private services, app and servers by N,
# so two checkouts can bench on one machine without meeting (default 0: the ports below)
SHIFT=${BENCH_PORT_SHIFT:-0}
want() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }
OUT=$ROOT/.data/bench
RAW=$OUT/raw
mkdir -p "$RAW"
rm -f "$RAW"/*.json "$RAW"/*.txt "$RAW"/*.jsonl
# run conditions: the load average (1, 5 min) before anything starts, and again at the end
cut -d' ' -f1,2 /proc/loadavg > "$RAW/loadavg_before.txt"

PG_PORT=$((54339 + SHIFT)) REDIS_PORT=$((63809 + SHIFT))
export DATABASE_URL=postgres://floodgate:floodgate@127.0.0.1:$PG_PORT/floodgate
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export FLOODGATE_DATA_DIR=$OUT/services
export FLOODGATE_LISTEN_ADDR=127.0.0.1:$((19480 + SHIFT))
export FLOODGATE_JWT_SECRET=bench-secret-bench-secret-bench-secret-0123
export FLOODGATE_DB_POOL_SIZE=${FLOODGATE_DB_POOL_SIZE:-32}
export FLOODGATE_AUTH_LIMIT_PER_IP=100000000 FLOODGATE_AUTH_LIMIT_PER_EMAIL=100000000
export RUST_LOG=warn
APP=http://$FLOODGATE_LISTEN_ADDR
CEILING_ADDR=127.0.0.1:$((19481 + SHIFT))

log() { printf '[bench] %s\n' "$*" >&2; }
need() { command -v "$1" >/dev/null || { log "installing $2"; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null; }; }
need wrk wrk
need redis-benchmark redis-tools
need pgbench postgresql-client
need taskset util-linux

# BENCH_BIN=DIR takes the three release binaries from DIR instead of building them
SRC_BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
if [ -z "${BENCH_BIN:-}" ]; then
  log "building release binaries"
  cargo build --release -q -p floodgate-app -p floodgate-loadtest -p floodgate-operator
fi
# a private copy: the target dir may be shared with other checkouts that build meanwhile
BIN=$OUT/bin
mkdir -p "$BIN"
for b in floodgate-app floodgate-loadtest floodgate-operator; do
  cp "$SRC_BIN/$b" "$BIN/$b"
done

PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  bash scripts/services.sh down >/dev/null 2>&1 || true
}
trap cleanup EXIT

bash scripts/services.sh up
pin_cpu0() { taskset -a -cp 0 "$1" >/dev/null 2>&1 || true; }
pgpid=$(head -1 "$(cat "$FLOODGATE_DATA_DIR/postgres.path" 2>/dev/null || echo "$FLOODGATE_DATA_DIR/postgres")/postmaster.pid" 2>/dev/null || true)
[ -n "$pgpid" ] && pin_cpu0 "$pgpid"
redispid=$(cat "$FLOODGATE_DATA_DIR/redis/redis.pid" 2>/dev/null || true)
[ -n "$redispid" ] && pin_cpu0 "$redispid"
redis-cli -p "$REDIS_PORT" flushall >/dev/null
psql "$DATABASE_URL" -qc "drop schema public cascade; create schema public;" >/dev/null

gen() { taskset -c 1 "$BIN/floodgate-loadtest" "$@" --no-progress; }
# CPU time (scripts/bench_cpu.py) before and after a run: `cpu_mark TAG` appends a snapshot of
# the app ($CPU_APP, default the app), PostgreSQL and Redis to $RAW/cpu_TAG.jsonl;
# `measured TAG CMD...` runs CMD between two marks. bench_report.py divides by the requests.
cpu_cmd() { echo "python3 '$ROOT/scripts/bench_cpu.py' snapshot '${CPU_APP:-$APP_PID}' '${CPU_PG-$pgpid}' '${CPU_REDIS-$redispid}' >> '$RAW/cpu_$1.jsonl'"; }
cpu_mark() { sh -c "$(cpu_cmd "$1")"; }
measured() { local tag=$1; shift; cpu_mark "$tag"; "$@" || true; cpu_mark "$tag"; }
# genm TAG ARGS...: a floodgate-loadtest run whose measured load (after its setup) is
# bracketed by CPU marks (plus the commands in AT_START / AT_END, if set)
genm() {
  local tag=$1; shift
  gen "$@" --exec-at-load-start "$(cpu_cmd "$tag")${AT_START:+; $AT_START}" --exec-at-load-end "$(cpu_cmd "$tag")${AT_END:+; $AT_END}"
}
# ceiling_up [ARGS]: the bare server of the HTTP ceiling (with `--redis-url URL`: the Redis-read
# floor) on CPU 0 at CEILING_ADDR, once it answers; its pid in CEILING_PID. ceiling_down stops it.
ceiling_up() {
  taskset -c 0 "$BIN/floodgate-loadtest" ceiling-server --listen "$CEILING_ADDR" --body-bytes 2000 "$@" >/dev/null 2>&1 &
  CEILING_PID=$!; PIDS+=("$CEILING_PID")
  until curl -sf "http://$CEILING_ADDR/" >/dev/null; do
    kill -0 "$CEILING_PID" 2>/dev/null || { log "the ceiling server ($*) did not start"; exit 1; }
    sleep 0.05
  done
}
ceiling_down() { kill "$CEILING_PID" 2>/dev/null || true; wait "$CEILING_PID" 2>/dev/null || true; }
# sh $OUT/pg_stats.sh FILE: appends the database's commit and row counters (pg_stat_database)
cat > "$OUT/pg_stats.sh" <<SH
psql "$DATABASE_URL" -tAc "select xact_commit, tup_inserted, tup_updated, tup_deleted from pg_stat_database where datname = current_database()" >> "\$1"
SH

# ---------------------------------------------------------------- app start and footprint
for port in $((19480 + SHIFT)) $((19481 + SHIFT)); do
  if ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port "; then log "port $port is in use; stop what listens there"; exit 1; fi
done
log "starting the app (CPU 0)"
"$BIN/floodgate-app" migrate >/dev/null 2>&1
"$BIN/floodgate-app" seed >/dev/null 2>&1
t0=$(date +%s%N)
taskset -c 0 "$BIN/floodgate-app" serve >"$OUT/app.log" 2>&1 &
APP_PID=$!; PIDS+=("$APP_PID")
until curl -sf "$APP/readyz" >/dev/null; do
  kill -0 "$APP_PID" 2>/dev/null || { tail -5 "$OUT/app.log" >&2; exit 1; }
  sleep 0.01
done
t1=$(date +%s%N)
echo "$(( (t1 - t0) / 1000000 ))" > "$RAW/start_ms.txt"
sleep 2
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
rss "$APP_PID" > "$RAW/rss_idle_kb.txt"
# the idle CPU of the app, PostgreSQL and Redis (admission and config loops, sweeper,
# checkpoints): a fixed cost per second that a row at a low rate spreads over few requests
cpu_mark idle; sleep 5; cpu_mark idle

# ---------------------------------------------------------------- ceilings
log "HTTP ceiling: bare axum server, wrk (and floodgate-loadtest on the same server: P6)"
ceiling_up
for i in $(seq 1 "$RUNS"); do
  # P6: each generator's own CPU (bench_cpu.py child) and the server's under it
  CPU_APP=$CEILING_PID CPU_PG=0 CPU_REDIS=0 measured "wrk_$i" \
    python3 "$ROOT/scripts/bench_cpu.py" child "$RAW/gencpu_wrk_$i.json" taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://$CEILING_ADDR/" > "$RAW/wrk_$i.txt"
  CPU_APP=$CEILING_PID CPU_PG=0 CPU_REDIS=0 measured "gen_ceiling_$i" \
    python3 "$ROOT/scripts/bench_cpu.py" child "$RAW/gencpu_gen_ceiling_$i.json" \
    taskset -c 1 "$BIN/floodgate-loadtest" run ceiling --target "http://$CEILING_ADDR" --executor constant-vus --vus 64 \
    --duration "${SECS}s" --no-progress --summary-json "$RAW/gen_ceiling_$i.json" >/dev/null 2>&1
done
if [ -z "$ONLY" ]; then
log "Locust on the same server, for context (single process, as users run it)"
if [ ! -x "$ROOT/.data/venv-locust/bin/locust" ]; then
  python3 -m venv "$ROOT/.data/venv-locust" && "$ROOT/.data/venv-locust/bin/pip" install -q locust==2.47.0 >/dev/null
fi
taskset -c 1 "$ROOT/.data/venv-locust/bin/locust" -f scripts/bench_locustfile.py --headless -u 64 -r 64 -t "${SECS}s" \
  --host "http://$CEILING_ADDR" --csv "$RAW/locust" --only-summary >/dev/null 2>&1 || true
fi
ceiling_down

log "Redis-read floor: the same server answering every request with one Redis GET (wrk)"
# the least any read that asks Redis costs here (a cached goods read, a poll, a sold-out
# answer): the rows that make one Redis call are read against it too (#18)
ceiling_up --redis-url "$REDIS_URL"
for i in $(seq 1 "$RUNS"); do
  CPU_APP=$CEILING_PID CPU_PG=0 measured "floor_redis_$i" taskset -c 1 wrk -t1 -c64 -d"${SECS}s" "http://$CEILING_ADDR/" > "$RAW/floor_redis_$i.txt"
done
ceiling_down

log "Redis ceiling: redis-benchmark EVAL of the issue script's shape, unpipelined"
for i in $(seq 1 "$RUNS"); do
  taskset -c 1 redis-benchmark -p "$REDIS_PORT" -q -n 200000 -c 50 \
    EVAL "if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end return redis.call('SCARD', KEYS[1])" 1 '{bench}:s' __rand_int__ \
    > "$RAW/redis_$i.txt"
done

log "PostgreSQL ceilings: pgbench hot row (16 clients) and -N"
pgbench -q -i -s 1 "$DATABASE_URL" >/dev/null 2>&1
for i in $(seq 1 "$RUNS"); do
  bash scripts/pg_hot_row.sh "$DATABASE_URL" "$SECS" > "$RAW/pg_hot_$i.txt"
  taskset -c 1 pgbench -n -N -c 16 -j 1 -T "$SECS" "$DATABASE_URL" > "$RAW/pg_commit_$i.txt" 2>&1
done

# ---------------------------------------------------------------- workloads
GOODS_ID=$(curl -s "$APP/api/v1/goods?limit=1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["items"][0]["id"])')
if want P1; then
log "P1: cached goods list and detail"
for i in $(seq 1 "$RUNS"); do
  genm "p1_list_$i" run goods-list --target "$APP" --executor constant-vus --vus 64 --duration "${SECS}s" --summary-json "$RAW/p1_list_$i.json" >/dev/null 2>&1 || true
  genm "p1_detail_$i" run goods-detail --target "$APP" --param "goods_id=$GOODS_ID" --param think_scale=0 --executor constant-vus --vus 64 --duration "${SECS}s" --summary-json "$RAW/p1_detail_$i.json" >/dev/null 2>&1 || true
done
rss "$APP_PID" > "$RAW/rss_load_kb.txt"
half=$(python3 scripts/bench_report.py half-rate "$RAW")
log "P1: p99 at half the measured rate ($half/s), beside the bare server's and the Redis-read floor's at that rate"
# the tail this machine gives any server at that rate: the same open-model load on the bare
# server and on the Redis-read floor, interleaved with the app's runs (#18)
at_half() { "$@" --executor constant-arrival-rate --rate "$half" --time-unit 1s --vus 64 --max-vus 256 --duration "${SECS}s" >/dev/null 2>&1 || true; }
for i in $(seq 1 "$RUNS"); do
  for floor in bare redis; do
    redis_arg=(); [ "$floor" = redis ] && redis_arg=(--redis-url "$REDIS_URL")
    ceiling_up "${redis_arg[@]}"
    at_half gen run ceiling --target "http://$CEILING_ADDR" --summary-json "$RAW/p1_half_${floor}_$i.json"
    ceiling_down
  done
  at_half genm "p1_half_$i" run goods-detail --target "$APP" --param "goods_id=$GOODS_ID" --param think_scale=0 --summary-json "$RAW/p1_half_$i.json"
done

fi
if want P5; then
log "P5: wallet charges on one hot user"
for i in $(seq 1 "$RUNS"); do
  genm "p5_$i" run balance-charge --target "$APP" --param think_scale=0 --param hot_users=1 --param "run_id=p5r$i" --executor constant-vus --vus 64 --duration "${SECS}s" \
    --summary-json "$RAW/p5_$i.json" >/dev/null 2>&1 || true
done

fi
if want P2; then
log "P2: flash sale of one goods item (10,000 units) by 200 buyers"
for i in $(seq 1 "$RUNS"); do
  seller=$(curl -s -XPOST "$APP/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"seller@floodgate.local","password":"floodgate-demo"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  hot=$(curl -s -XPOST "$APP/api/v1/goods" -H "authorization: Bearer $seller" -H 'content-type: application/json' \
    -d '{"name":"flash","price":100,"stock":10000}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  # PostgreSQL's counters around the load of run 1 (backends report them at most a second
  # late, and idle ones within 10 s: hence the wait before the second reading)
  pg_at=""; [ "$i" = 1 ] && pg_at="sh '$OUT/pg_stats.sh' '$RAW/p2_pg_1.txt'"
  AT_START=$pg_at genm "p2_$i" run hot-order --target "$APP" --param think_scale=0 --param "goods_id=$hot" --param hot_users=200 --param fund_amount=5000000 --param "run_id=p2r$i" \
    --executor constant-vus --vus 200 --duration "${SECS}s" --summary-json "$RAW/p2_$i.json" >/dev/null 2>&1 || true
  if [ "$i" = 1 ]; then sleep 11; sh "$OUT/pg_stats.sh" "$RAW/p2_pg_1.txt"; fi
  # stock left, units sold, and the seconds from the first to the last accepted order: with
  # 10,000 units the item may sell out before the run ends, so the accepted rate is taken
  # over the selling time, not the whole run
  psql "$DATABASE_URL" -tAc "select $hot, stock, x.sold, x.span from goods,
      (select coalesce(sum(l.quantity), 0) as sold,
              coalesce(extract(epoch from max(o.created_at) - min(o.created_at)), 0) as span
         from order_lines l join orders o using (order_id) where l.goods_id = $hot and o.status = 'paid') x
    where goods_id = $hot" > "$RAW/p2_stock_$i.txt"
done

fi
if want P2B; then
# the same flash sale through PgBouncer in transaction pooling mode (Debian's, started by
# scripts/services.sh in front of the bench's PostgreSQL) by a second app process with
# FLOODGATE_DB_POOLER=transaction; reported as a ratio to the direct P2 (a cost ratio on two
# cores: PgBouncer shares CPU 0 with the app and PostgreSQL)
log "P2B: the P2 flash sale through PgBouncer (transaction pooling)"
PGB_PORT=$((19483 + SHIFT)) PGB_APP=127.0.0.1:$((19484 + SHIFT))
PGBOUNCER_PORT=$PGB_PORT bash scripts/services.sh pgbouncer
pgbpid=$(cat "$(dirname "$(cat "$FLOODGATE_DATA_DIR/postgres.path" 2>/dev/null || echo "$FLOODGATE_DATA_DIR/postgres")")/pgbouncer/pgbouncer.pid")
pin_cpu0 "$pgbpid"
kill "$APP_PID" 2>/dev/null || true; wait "$APP_PID" 2>/dev/null || true
# (the migration URL first: a later assignment in the same prefix would see the new DATABASE_URL)
FLOODGATE_DB_MIGRATION_URL=$DATABASE_URL DATABASE_URL=postgres://floodgate:floodgate@127.0.0.1:$PGB_PORT/floodgate \
  FLOODGATE_DB_POOLER=transaction FLOODGATE_LISTEN_ADDR=$PGB_APP \
  taskset -c 0 "$BIN/floodgate-app" serve >"$OUT/app-pgbouncer.log" 2>&1 &
PGB_APP_PID=$!; PIDS+=("$PGB_APP_PID")
until curl -sf "http://$PGB_APP/readyz" >/dev/null; do
  kill -0 "$PGB_APP_PID" 2>/dev/null || { tail -5 "$OUT/app-pgbouncer.log" >&2; exit 1; }
  sleep 0.05
done
for i in $(seq 1 "$RUNS"); do
  seller=$(curl -s -XPOST "http://$PGB_APP/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"seller@floodgate.local","password":"floodgate-demo"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
  hot=$(curl -s -XPOST "http://$PGB_APP/api/v1/goods" -H "authorization: Bearer $seller" -H 'content-type: application/json' \
    -d '{"name":"flash","price":100,"stock":10000}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  CPU_APP=$PGB_APP_PID genm "p2b_$i" run hot-order --target "http://$PGB_APP" --param think_scale=0 --param "goods_id=$hot" --param hot_users=200 --param fund_amount=5000000 --param "run_id=p2br$i" \
    --executor constant-vus --vus 200 --duration "${SECS}s" --summary-json "$RAW/p2b_$i.json" >/dev/null 2>&1 || true
  psql "$DATABASE_URL" -tAc "select $hot, stock, x.sold, x.span from goods,
      (select coalesce(sum(l.quantity), 0) as sold,
              coalesce(extract(epoch from max(o.created_at) - min(o.created_at)), 0) as span
         from order_lines l join orders o using (order_id) where l.goods_id = $hot and o.status = 'paid') x
    where goods_id = $hot" > "$RAW/p2b_stock_$i.txt"
done
kill "$PGB_APP_PID" 2>/dev/null || true; wait "$PGB_APP_PID" 2>/dev/null || true
# the rest runs against the direct app again
taskset -c 0 "$BIN/floodgate-app" serve >>"$OUT/app.log" 2>&1 &
APP_PID=$!; PIDS+=("$APP_PID")
until curl -sf "$APP/readyz" >/dev/null; do
  kill -0 "$APP_PID" 2>/dev/null || { tail -5 "$OUT/app.log" >&2; exit 1; }
  sleep 0.05
done

fi
# admin_token: a fresh admin access token (they are short-lived; a full run outlasts one)
admin_token() {
  curl -s -XPOST "$APP/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"email":"admin@floodgate.local","password":"floodgate-demo"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])'
}
ADMIN=$(admin_token)

if want P3 || want P4 || want RC; then
log "P3: coupon drop, 1,000 coupons, 100,000 distinct users (tokens minted with the app's key)"
psql "$DATABASE_URL" -qtAc "insert into users (email, password_hash, name)
  select 'p3-' || g || '@bench.local', 'not-a-hash', 'p3' from generate_series(1, 100000) g
  on conflict do nothing" >/dev/null
psql "$DATABASE_URL" -qtAc "select user_id from users where email like 'p3-%'" \
  | python3 scripts/bench_tokens.py "$FLOODGATE_JWT_SECRET" > "$OUT/p3_tokens.txt"
# coupon_drop TAG: RUNS drops of 1,000 coupons on $APP (wrk output in $RAW/TAG_i.txt)
coupon_drop() {
for i in $(seq 1 "$RUNS"); do
  camp=$(curl -s -XPOST "$APP/api/v1/coupon-campaigns" -H "authorization: Bearer $(admin_token)" -H 'content-type: application/json' \
    -d "{\"name\":\"$1 run $i\",\"discount_amount\":1000,\"total_quantity\":1000,\"starts_at\":\"2020-01-01T00:00:00Z\",\"ends_at\":\"2099-01-01T00:00:00Z\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  TOKENS_FILE="$OUT/p3_tokens.txt" WRK_METHOD=POST measured "$1_$i" taskset -c 1 wrk -t1 -c64 -d"${SECS}s" -s scripts/bench_tokens.lua \
    "$APP/api/v1/coupon-campaigns/$camp/issue" > "$RAW/$1_$i.txt"
  t_end=$(date +%s%N)
  until [ "$(psql "$DATABASE_URL" -tAc "select count(*) from coupons where campaign_id = $camp")" -ge 1000 ]; do
    [ $(( ($(date +%s%N) - t_end) / 1000000 )) -gt 10000 ] && break
    sleep 0.02
  done
  echo "$(( ($(date +%s%N) - t_end) / 1000000 )) $(psql "$DATABASE_URL" -tAc "select count(*), count(distinct user_id) from coupons where campaign_id = $camp")" > "$RAW/$1_persist_$i.txt"
done
}
coupon_drop p3

fi
if want P4 || want RC; then
log "P4: waiting-room poll"
# the seeded demo concert's waiting room: only configured or referenced queues can be joined
# queue_poll TAG: RUNS runs of one waiting user's poll on $APP (wrk output in $RAW/TAG_i.txt)
queue_poll() {
user_token=$(head -1 "$OUT/p3_tokens.txt")
queue_token=$(curl -s -XPOST "$APP/api/v1/queues/concert-42/tokens" -H "authorization: Bearer $user_token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')
head -1 "$OUT/p3_tokens.txt" > "$OUT/p4_tokens.txt"
for i in $(seq 1 "$RUNS"); do
  TOKENS_FILE="$OUT/p4_tokens.txt" QUEUE_TOKEN="$queue_token" measured "$1_$i" taskset -c 1 wrk -t1 -c64 -d"${SECS}s" -s scripts/bench_tokens.lua \
    "$APP/api/v1/queues/concert-42/tokens/me" > "$RAW/$1_$i.txt"
done
}
queue_poll p4

fi
if want P7; then
# P7 in cluster mode (the figures the targets apply to): the operator (release) as the chart's
# ServiceAccount on the real control plane of scripts/control-plane.sh, two release app
# processes standing in for the Deployment's pods, a real Prometheus. A QueueConfig
# `kubectl patch` -> applied by every app process (<= 1 s), 100 queue joins -> the Deployment's
# spec.replicas patched (<= 2 s). tests/cluster/p7_cluster.py; raw: p7c_*.json
log "P7: operator in cluster mode (control plane, Prometheus, 2 app processes)"
# (FLOODGATE_DATA_DIR above is the bench's services folder; the control plane keeps its own)
# a control plane this run starts is stopped after P7, so it adds no load to the later rows
cp_was_up=""; ss -ltn 2>/dev/null | grep -q "127.0.0.1:${FLOODGATE_APISERVER_PORT:-16443} " && cp_was_up=1
if env -u FLOODGATE_DATA_DIR bash scripts/control-plane.sh up; then
  VENV=$(bash scripts/venv.sh)
  env -u FLOODGATE_DATA_DIR taskset -c 1 "$VENV/bin/python" tests/cluster/p7_cluster.py --bin "$BIN" --raw "$RAW" \
    --work "$OUT/p7-cluster" --runs "${BENCH_P7_RUNS:-8}" || log "P7 cluster mode: some runs did not finish (see $OUT/p7-cluster)"
  [ -n "$cp_was_up" ] || env -u FLOODGATE_DATA_DIR bash scripts/control-plane.sh down
else
  log "P7 cluster mode NOT MEASURED: the control plane did not start (scripts/control-plane.sh up)"
fi

log "P7 (local mode, for context): operator in --manifests mode on the live app: config publish -> applied, queue depth -> decision"
M=$OUT/manifests; rm -rf "$M"; mkdir -p "$M"
cat > "$M/queueconfig.yaml" <<YAML
apiVersion: floodgate.dev/v1alpha1
kind: QueueConfig
metadata: { name: p7-queue }
spec: { queueId: p7-queue, maxActiveUsers: 1, admitPerMinute: 1, sessionTtl: 10m, tokenTtl: 2h, abandonAfter: 5m }
YAML
cat > "$M/campaign.yaml" <<YAML
apiVersion: floodgate.dev/v1alpha1
kind: Campaign
metadata: { name: p7 }
spec:
  target: { deployment: floodgate-app }
  schedule: { startsAt: "2020-01-01T00:00:00Z", endsAt: "2099-01-01T00:00:00Z", prewarm: 1m }
  queues: [p7-queue]
  scaling: { minReplicas: 1, maxReplicas: 40, waitingPerReplica: 10, p95Target: 250ms }
YAML
taskset -c 1 "$BIN/floodgate-operator" run --manifests "$M" --status-dir "$M/.status" --app-metrics-url "$APP/metrics" \
  --listen 127.0.0.1:$((19482 + SHIFT)) >"$OUT/operator.log" 2>&1 &
OP_PID=$!; PIDS+=("$OP_PID")
version() { redis-cli -p "$REDIS_PORT" get fg:config | python3 -c 'import json,sys; print(json.loads(sys.stdin.read().strip() or "{}").get("version", 0))'; }
applied_all() { redis-cli -p "$REDIS_PORT" hvals fg:config:applied | grep -qvx "$1" && return 1; [ -n "$(redis-cli -p "$REDIS_PORT" hvals fg:config:applied)" ]; }
for _ in $(seq 100); do [ "$(version)" -ge 1 ] && break; sleep 0.1; done
: > "$RAW/p7_apply_ms.txt"
for i in $(seq 1 "$RUNS"); do
  before=$(version)
  t0=$(date +%s%N)
  sed -i "s/maxActiveUsers: [0-9]*/maxActiveUsers: $((i + 1))/" "$M/queueconfig.yaml"
  until [ "$(version)" -gt "$before" ] && applied_all "$(version)"; do
    [ $(( ($(date +%s%N) - t0) / 1000000 )) -gt 15000 ] && break; sleep 0.02
  done
  echo $(( ($(date +%s%N) - t0) / 1000000 )) >> "$RAW/p7_apply_ms.txt"
done
desired() { grep -m1 "^    desired:" "$M/.status/campaign-default-p7.yaml" 2>/dev/null | awk '{print $2}'; }
for _ in $(seq 100); do [ -n "$(desired)" ] && break; sleep 0.1; done
# 100 users' access tokens, minted with the app's key (user ids beyond the seeded ones)
seq 900001 900100 | python3 scripts/bench_tokens.py "$FLOODGATE_JWT_SECRET" > "$OUT/p7_tokens.txt"
t0=$(date +%s%N)
# the joins' own wait, inside the pipeline: a bare `wait` would wait for the app too
cat "$OUT/p7_tokens.txt" | {
  while read -r tok; do
    curl -s -o /dev/null -XPOST "$APP/api/v1/queues/p7-queue/tokens" -H "authorization: Bearer $tok" &
  done
  wait
}
# first scale patch (desired above the 1 it held): the reaction time PERFORMANCE.md targets;
# then the time to reach the full 10, which the default scale-up step (max(8 pods, 100 %)
# per 15 s) spreads over two periods by design
first_ms=""
until [ "${desired_now:-0}" -ge 10 ]; do
  desired_now=$(desired); desired_now=${desired_now:-0}
  elapsed=$(( ($(date +%s%N) - t0) / 1000000 ))
  [ -z "$first_ms" ] && [ "$desired_now" -gt 1 ] && first_ms=$elapsed
  [ "$elapsed" -gt 30000 ] && break; sleep 0.05
done
echo "${first_ms:-30000} $(( ($(date +%s%N) - t0) / 1000000 )) $(desired)" > "$RAW/p7_scale.txt"
kill "$OP_PID" 2>/dev/null || true

fi
# P9 (the reserve-and-pay flow, stepped), the capacity figures and the replica check: before
# RC, which moves the app onto a Redis Cluster
# shellcheck source=scripts/bench_p9.sh
source scripts/bench_p9.sh

if want RC; then
# The same coupon drop and poll with the app on a Redis Cluster: three primaries and three
# replicas of redis-server (scripts/services.sh redis-cluster), pinned to CPU 0 with the app
# and PostgreSQL. On 2 cores this is the cost of cluster mode (slot routing, a pipeline per
# slot, replication to the replicas) next to the single node, not a scaling figure.
log "RC: P3 and P4 with the app on a local Redis Cluster (3 primaries + 3 replicas, CPU 0)"
CLUSTER_URL=$(REDIS_CLUSTER_PORTS="63821 63822 63823 63824 63825 63826" bash scripts/services.sh redis-cluster)
for pidfile in "$FLOODGATE_DATA_DIR"/redis-cluster/*/redis.pid; do pin_cpu0 "$(cat "$pidfile")"; done
kill "$APP_PID" 2>/dev/null || true; wait "$APP_PID" 2>/dev/null || true
FLOODGATE_REDIS_MODE=cluster REDIS_URL=$CLUSTER_URL taskset -c 0 "$BIN/floodgate-app" serve >"$OUT/app-cluster.log" 2>&1 &
APP_PID=$!; PIDS+=("$APP_PID")
until curl -sf "$APP/readyz" >/dev/null; do
  kill -0 "$APP_PID" 2>/dev/null || { tail -5 "$OUT/app-cluster.log" >&2; exit 1; }
  sleep 0.01
done
coupon_drop rc_p3
queue_poll rc_p4

fi
kill "$APP_PID" 2>/dev/null || true
cut -d' ' -f1,2 /proc/loadavg > "$RAW/loadavg_after.txt"
REPORT=docs/benchmarks RECORD=record
[ -z "$ONLY" ] || { REPORT=$OUT/partial; RECORD=""; }
mkdir -p "$REPORT"
python3 scripts/bench_report.py report "$RAW" "$REPORT" docs/benchmarks/history.json $RECORD
# docs/capacity.md from the full report (a partial run writes it next to its report)
CAPACITY=docs/capacity.md; [ -z "$ONLY" ] || CAPACITY=$REPORT/capacity.md
python3 scripts/bench_capacity.py "$REPORT/latest.json" > "$CAPACITY"
log "wrote $REPORT/latest.json and $REPORT/README.md"
