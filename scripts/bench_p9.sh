# Sourced by scripts/bench.sh (its variables and functions: APP, ADMIN, BIN, OUT, RAW, SECS,
# want, log, gen, genm, measured, cpu_mark, pin_cpu0, admin_token): issue #18's P9 row, the capacity
# figures docs/capacity.md rests on, and the 1-replica / 3-replica check (row P1x).

# publish_queue ID JSON: adds a queue's settings to the runtime config the app reads (a new
# version, announced on the change channel); the app applies it within a poll (<= 2 s)
publish_queue() {
  local doc
  doc=$(redis-cli -p "$REDIS_PORT" get fg:config | python3 -c '
import json, sys
raw = sys.stdin.read().strip()
doc = json.loads(raw) if raw else {"version": 0}
doc["version"] = doc.get("version", 0) + 1
doc.setdefault("queues", {})[sys.argv[1]] = json.loads(sys.argv[2])
print(json.dumps(doc))' "$1" "$2")
  redis-cli -p "$REDIS_PORT" set fg:config "$doc" >/dev/null
  redis-cli -p "$REDIS_PORT" publish fg:config:changed "$doc" >/dev/null
  sleep 2.5
}

# bench_users PREFIX N FILE: N users (inserted directly) and their access tokens in FILE
bench_users() {
  psql "$DATABASE_URL" -qtAc "insert into users (email, password_hash, name)
    select '$1-' || g || '@bench.local', 'not-a-hash', '$1' from generate_series(1, $2) g
    on conflict do nothing" >/dev/null
  psql "$DATABASE_URL" -qtAc "select user_id from users where email like '$1-%' order by user_id" \
    | python3 scripts/bench_tokens.py "$FLOODGATE_JWT_SECRET" > "$3"
}

# p9_concert SEATS: a concert on queue p9 with SEATS seats in dates of 250 (one request per
# date: FLOODGATE_BODY_LIMIT_BYTES is 64 KiB); prints "concert_id schedule_id,schedule_id,..."
p9_concert() {
  python3 - "$1" "$APP" "$ADMIN" <<'PY'
import json, sys, urllib.request
seats, app, admin = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def post(path, body):
    req = urllib.request.Request(app + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": f"Bearer {admin}", "content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)

def date(d, n):
    return {"starts_at": f"2099-01-{d % 28 + 1:02d}T{d // 28 % 24:02d}:00:00Z",
            "seats": [{"section": "A", "row": str(i // 25 + 1), "number": i % 25 + 1, "price": 1000} for i in range(n)]}

per = 250
sizes = [min(per, seats - d * per) for d in range((seats + per - 1) // per)]
concert = post("/api/v1/concerts", {"title": "P9 bench", "venue": "bench", "queue_id": "p9", "max_holds_per_user": 1,
                                    "schedules": [date(0, sizes[0])]})
cid = concert.get("id", concert.get("concert_id"))
ids = [str(s.get("id", s.get("schedule_id"))) for s in concert["schedules"]]
for d, n in enumerate(sizes[1:], start=1):
    s = post(f"/api/v1/concerts/{cid}/schedules", date(d, n))
    ids.append(str(s.get("id", s.get("schedule_id"))))
print(cid, ",".join(ids))
PY
}

if want P9; then
  log "P9: reserve-and-pay through the waiting room, arrival rate stepped until p95 or failures break"
  P9_USERS=${BENCH_P9_USERS:-3000}
  P9_RATES=${BENCH_P9_RATES:-"10 20 40 80 160 320 640 1280"}
  P9_P95_MS=${BENCH_P9_P95_MS:-500}
  bench_users p9 "$P9_USERS" "$OUT/p9_tokens.txt"
  # admission far above the offered rate: the valve is not what this row measures
  publish_queue p9 '{"maxActiveUsers": 5000, "admitPerMinute": 600000, "sessionTtl": "10m", "abandonAfter": "5m"}'
  held="" tried=""
  for rate in $P9_RATES; do
    # twice the seats the step can sell, so that no flow fails for want of a seat
    seats=$(( rate * SECS * 2 + 250 ))
    ADMIN=$(admin_token)  # the run is 20 minutes old by now: the first token has expired
    read -r cid sids < <(p9_concert "$seats")
    tried="$tried $rate"
    AT_START="sh '$OUT/pg_stats.sh' '$RAW/p9_r${rate}_pg.txt'" genm "p9_r$rate" run reserve-pay --target "$APP" \
      --param queue_id=p9 --param "concert_id=$cid" --param "schedule_ids=$sids" --param "tokens_file=$OUT/p9_tokens.txt" \
      --param admit_timeout=30 --param "run_id=p9r$rate" --executor constant-arrival-rate --rate "$rate" --time-unit 1s \
      --duration "${SECS}s" --vus $(( rate * 2 )) --max-vus "$P9_USERS" --summary-json "$RAW/p9_r$rate.json" \
      >"$OUT/p9_r$rate.log" 2>&1 || true
    sleep 11; sh "$OUT/pg_stats.sh" "$RAW/p9_r${rate}_pg.txt"
    if python3 scripts/bench_report.py p9-held "$RAW" "$rate" "$P9_P95_MS"; then held=$rate; else
      log "P9: $rate flows/s did not hold (failures, drops or a step's p95 over $P9_P95_MS ms): stepping stops"; break
    fi
  done
  printf '{"rates": [%s], "held_rate": %s, "p95_limit_ms": %s}\n' "$(echo $tried | tr ' ' ',')" \
    "${held:-null}" "$P9_P95_MS" > "$RAW/p9_meta.json"

  log "capacity: Redis bytes per waiting user (used_memory before and after joins to a paused queue)"
  MEM_USERS=${BENCH_MEM_USERS:-20000}
  bench_users p9m "$MEM_USERS" "$OUT/p9m_tokens.txt"
  publish_queue p9-mem '{"paused": true, "maxActiveUsers": 1, "admitPerMinute": 1}'
  used() { redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory:/ {print $2+0}'; }
  mem_before=$(used)
  # each token once at least (wrk rotates through them; a second join of a user is the same place)
  TOKENS_FILE="$OUT/p9m_tokens.txt" WRK_METHOD=POST measured mem_joins taskset -c 1 wrk -t1 -c32 -d"$(( SECS > 8 ? SECS : 8 ))s" \
    -s scripts/bench_tokens.lua "$APP/api/v1/queues/p9-mem/tokens" > "$RAW/mem_joins.txt" || true
  waiting=$(curl -s "$APP/api/v1/queues/p9-mem" | python3 -c 'import json,sys; print(json.load(sys.stdin)["waiting"])')
  echo "$mem_before $(used) $waiting" > "$RAW/redis_mem.txt"
fi

if want P1X; then
  log "P1x: GET /goods/{id} through nginx on 1 and on 3 app processes (scripts/replicas.sh, CPU 0)"
  REP_ADDR=127.0.0.1:$((19490 + SHIFT))
  for n in 1 3; do
    FLOODGATE_LISTEN_ADDR=$REP_ADDR FLOODGATE_APP_BIN=$BIN/floodgate-app taskset -c 0 bash scripts/replicas.sh "$n" \
      >"$OUT/replicas-$n.log" 2>&1 &
    rep_pid=$!
    for _ in $(seq 300); do curl -sf "http://$REP_ADDR/readyz" >/dev/null && grep -q ready "$OUT/replicas-$n.log" && break; sleep 0.1; done
    rep_pids=$(cat .data/replica-*.pid | paste -sd,)
    CPU_APP=$rep_pids genm "rep${n}_detail" run goods-detail --target "http://$REP_ADDR" --param "goods_id=$GOODS_ID" \
      --param think_scale=0 --executor constant-vus --vus 64 --duration "${SECS}s" --summary-json "$RAW/rep${n}_detail.json" \
      >/dev/null 2>&1 || true
    kill -TERM "$rep_pid" 2>/dev/null || true; wait "$rep_pid" 2>/dev/null || true
  done
fi
