#!/usr/bin/env bash
# The contract fuzz (part of `make test`): Schemathesis (pinned in tests/chart/requirements.txt,
# installed into .data/venv-chart by scripts/venv.sh) reads the app's own /openapi.json and
# sends generated valid and invalid requests to every operation of a real app (its own
# database floodgate_contract, made anew each run, its own Redis prefix, a free port), with
# the demo data of `floodgate-app seed`, a configured waiting room and a real bearer token
# (tests/contract/hooks.py). It fails on any finding and prints each failing case with a curl
# line to reproduce it:
#   not_a_server_error          no 5xx, whatever the input
#   status_code_conformance     every status answered is documented for that operation
#   content_type_conformance    and with the documented media type (problem+json for errors)
#   response_schema_conformance and the body matches the documented schema
#
#   bash scripts/contract-tests.sh                       # the bounded run of `make test` (about a minute)
#   CONTRACT_MAX_EXAMPLES=200 bash scripts/contract-tests.sh   # a longer run
#   FLOODGATE_APP_BIN=/path/to/floodgate-app bash scripts/contract-tests.sh   # a given binary
#   bash scripts/contract-tests.sh --include-path-regex '^/api/v1/orders'     # extra args go to schemathesis
#
# Output: .data/contract/ (app.log, the JUnit report, the app's openapi.json as fuzzed).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VENV=$(bash scripts/venv.sh)
OUT=$ROOT/.data/contract
mkdir -p "$OUT"
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-50}
# one worker: Python 3.11.7's ast module is not thread-safe (hypothesis parses lambdas with it)
WORKERS=${CONTRACT_WORKERS:-1}
SEED=${CONTRACT_SEED:-$RANDOM}

BASE_URL=${DATABASE_URL:-postgres://floodgate:floodgate@127.0.0.1:54329/floodgate}
REDIS=${REDIS_URL:-redis://127.0.0.1:63799}
export DATABASE_URL="${BASE_URL%/*}/floodgate_contract"
export REDIS_URL=$REDIS
export FLOODGATE_REDIS_PREFIX="contract-$$:"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export FLOODGATE_LISTEN_ADDR=127.0.0.1:$PORT
export FLOODGATE_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
# the fuzz signs up and logs in thousands of times from one address
export FLOODGATE_AUTH_LIMIT_PER_IP=1000000 FLOODGATE_AUTH_LIMIT_PER_EMAIL=1000000
export RUST_LOG=${CONTRACT_RUST_LOG:-warn}
# uploaded goods images (the local folder store), made anew each run like the database
export FLOODGATE_IMAGE_DIR=$OUT/images
rm -rf "$FLOODGATE_IMAGE_DIR"
TARGET=http://$FLOODGATE_LISTEN_ADDR

# the binary: given, or built now and pinned (a hard link, a copy if that fails: a rebuild of
# the target dir meanwhile replaces its file, not ours)
if [ -z "${FLOODGATE_APP_BIN:-}" ]; then
  cargo build -q -p floodgate-app --bin floodgate-app
  rm -f "$OUT/floodgate-app"
  ln "${CARGO_TARGET_DIR:-$ROOT/target}/debug/floodgate-app" "$OUT/floodgate-app" 2>/dev/null \
    || cp "${CARGO_TARGET_DIR:-$ROOT/target}/debug/floodgate-app" "$OUT/floodgate-app"
  FLOODGATE_APP_BIN=$OUT/floodgate-app
fi

psql "${BASE_URL%/*}/postgres" -qc "drop database if exists floodgate_contract" -qc "create database floodgate_contract" >/dev/null
"$FLOODGATE_APP_BIN" seed >/dev/null
# the demo concert's waiting room, configured as the operator would publish it
redis-cli -u "$REDIS" set "${FLOODGATE_REDIS_PREFIX}config" \
  '{"version":1,"queues":{"concert-42":{"maxActiveUsers":1000,"admitPerMinute":60000,"sessionTtl":"10m"}}}' >/dev/null

"$FLOODGATE_APP_BIN" serve >"$OUT/app.log" 2>&1 &
APP_PID=$!
cleanup() {
  kill "$APP_PID" 2>/dev/null || true
  [ "$FLOODGATE_APP_BIN" != "$OUT/floodgate-app" ] || rm -f "$OUT/floodgate-app"
  redis-cli -u "$REDIS" --scan --pattern "${FLOODGATE_REDIS_PREFIX}*" \
    | xargs -r redis-cli -u "$REDIS" del >/dev/null || true
}
trap cleanup EXIT
for _ in $(seq 150); do curl -sf "$TARGET/readyz" >/dev/null && break; sleep 0.1; done
curl -sf "$TARGET/openapi.json" -o "$OUT/openapi.json" || { echo "contract: the app did not start (see $OUT/app.log)"; tail -20 "$OUT/app.log"; exit 1; }

export FLOODGATE_CONTRACT_URL=$TARGET
EXTRA=("$@")
export FLOODGATE_CONTRACT_PASSWORD=floodgate-demo
export PYTHONPATH=$ROOT/tests/contract SCHEMATHESIS_HOOKS=hooks
ops=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sum(len(v) for v in d["paths"].values()))' "$OUT/openapi.json")
CHECKS=not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance
status=0
start=$(date +%s)
fuzz() {  # fuzz ROLES NAME [schemathesis args...]
  local roles=$1 name=$2; shift 2
  echo "contract: pass '$name': $ops operations of $TARGET/openapi.json, token roles: $roles, seed $SEED"
  # run from $OUT: Schemathesis keeps its example database in ./.schemathesis
  (cd "$OUT" && FLOODGATE_CONTRACT_ROLES=$roles "$VENV/bin/schemathesis" --no-color run "$TARGET/openapi.json" \
    --checks "$CHECKS" --seed "$SEED" --workers "$WORKERS" \
    --request-timeout 20 --suppress-health-check all --warnings off --continue-on-failure \
    --report junit --report-junit-path "$OUT/junit-$name.xml" "$@") || status=1
}
# 1. every operation, valid and invalid input (--mode all), with a token holding every role
fuzz all all-roles --mode all --phases examples,coverage,fuzzing --max-examples "$MAX_EXAMPLES" "${EXTRA[@]}"
# 2. valid input again with the demo customer's token (no seller or admin role, a wallet):
#    role checks answer 403, and customer flows reach further
#    (it skips becoming a seller, which would lift those checks for the rest of the pass)
fuzz customer customer --mode positive --phases examples,coverage,fuzzing --max-examples 10 \
  --exclude-path /api/v1/users/me/seller "${EXTRA[@]}"
echo "contract: $(( $(date +%s) - start )) s in all"

# what the app answered, per route and status (its own metrics), so a run shows its reach
curl -sf "$TARGET/metrics" | python3 -c '
import re, sys, collections
counts = collections.defaultdict(dict)
for line in sys.stdin:
    m = re.match(r"floodgate_http_request_duration_seconds_count\{(.*)\} (\d+)", line)
    if m:
        labels = dict(re.findall(r"(\w+)=\"([^\"]*)\"", m.group(1)))
        # 405s are the probes of undeclared methods on each path; left out of the table
        if labels.get("route", "").startswith("/api/") and labels["status"] != "405":
            counts[labels["method"] + " " + labels["route"]][labels["status"]] = int(float(m.group(2)))
total = sum(sum(v.values()) for v in counts.values())
print(f"contract: the app answered {total} requests:")
for route in sorted(counts):
    print(f"  {route:48} " + " ".join(f"{s}x{n}" for s, n in sorted(counts[route].items())))
' || true

if grep -q "panicked\|internal error" "$OUT/app.log"; then
  echo "contract: the app logged server faults:"; grep -m 20 "panicked\|internal error" "$OUT/app.log"; status=1
fi
if [ "$status" -eq 0 ]; then
  echo "contract: no finding (no 5xx, no undocumented status, no schema or content-type violation)"
else
  echo "contract: FINDINGS above (each with a curl line to reproduce); reports in $OUT/"
fi
exit $status
