#!/usr/bin/env bash
# End-to-end check of the operator on a real cluster (kind), which no machine of ours can run:
# build the images, install the chart, apply a QueueConfig and a Campaign that is Active now,
# drive real queue joins with floodgate-loadtest, and assert that
#   1. the Campaign reaches phase Active and reports a desired replica count,
#   2. the app Deployment's replicas change to what the Campaign asks for,
#   3. the runtime config version is reported as applied by the app replicas,
#   4. deleting the Campaign restores the pre-campaign replica count (finalizer).
#
# Prerequisites: docker, kind >= 0.23, kubectl >= 1.30, helm >= 3.14, and network access for
# the base images. Run from anywhere:  operator/e2e/kind.sh
# Environment: CLUSTER (default floodgate-e2e), KEEP=1 keeps the cluster afterwards.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CLUSTER=${CLUSTER:-floodgate-e2e}
NS=floodgate
TAG=0.1.0

log() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; kubectl -n "$NS" describe campaign e2e >&2 || true; exit 1; }
# Polls a command until its output is non-empty and not "0"; $1 = seconds, rest = command.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  while (( SECONDS < deadline )); do
    out=$("$@" 2>/dev/null || true)
    if [[ -n "$out" && "$out" != "0" ]]; then echo "$out"; return 0; fi
    sleep 3
  done
  return 1
}

for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "missing prerequisite: $tool" >&2; exit 2; }
done

cleanup() { [[ "${KEEP:-0}" == 1 ]] || kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true; }
trap cleanup EXIT

log "cluster"
kind get clusters | grep -qx "$CLUSTER" || kind create cluster --name "$CLUSTER" --wait 120s

log "images"
for target in app operator loadtest; do
  docker build --target "$target" -t "floodgate-$target:$TAG" "$ROOT"
done
kind load docker-image "floodgate-app:$TAG" "floodgate-operator:$TAG" "floodgate-loadtest:$TAG" --name "$CLUSTER"

log "chart"
helm upgrade --install floodgate "$ROOT/charts/floodgate" --namespace "$NS" --create-namespace --wait --timeout 10m
kubectl -n "$NS" exec deploy/floodgate-app -c app -- /usr/local/bin/floodgate-app seed
BEFORE=$(kubectl -n "$NS" get deployment floodgate-app -o jsonpath='{.spec.replicas}')

log "QueueConfig and Campaign (active from now, small waitingPerReplica so modest load scales)"
START=$(date -u -d '-1 minute' +%Y-%m-%dT%H:%M:%SZ)
END=$(date -u -d '+30 minutes' +%Y-%m-%dT%H:%M:%SZ)
sed -e '/opensAt\|closesAt/d' \
  "$ROOT/crds/examples/queueconfig.yaml" | kubectl -n "$NS" apply -f -
sed -e "s/2026-12-24T10:00:00Z/$START/" -e "s/2026-12-24T12:00:00Z/$END/" \
    -e 's/^  name: xmas-tickets/  name: e2e/' \
    -e 's/waitingPerReplica: 2000/waitingPerReplica: 50/' -e 's/maxReplicas: 40/maxReplicas: 6/' \
    -e 's/fallbackReplicas: 4/fallbackReplicas: 2/' -e 's/latencyMaxReplicas: 6/latencyMaxReplicas: 3/' \
  "$ROOT/crds/examples/campaign.yaml" | kubectl -n "$NS" apply -f -

wait_for 60 bash -c "[[ \$(kubectl -n $NS get campaign e2e -o jsonpath='{.status.phase}') == Active ]] && echo ok" \
  || fail "campaign never became Active"

log "load: queue joins"
kubectl -n "$NS" delete job floodgate-e2e-load --ignore-not-found
kubectl -n "$NS" create job floodgate-e2e-load --image="floodgate-loadtest:$TAG" -- \
  floodgate-loadtest run token-stress --no-progress \
  --target "http://floodgate-app.$NS.svc:8080" --param queue_id=concert-42

log "assertions"
DESIRED=$(wait_for 240 bash -c "v=\$(kubectl -n $NS get campaign e2e -o jsonpath='{.status.replicas.desired}'); (( v > $BEFORE )) && echo \$v") \
  || fail "desired replicas never rose above $BEFORE"
echo "campaign wants $DESIRED replicas: $(kubectl -n "$NS" get campaign e2e -o jsonpath='{.status.replicas.reason}')"
wait_for 120 bash -c "v=\$(kubectl -n $NS get deployment floodgate-app -o jsonpath='{.spec.replicas}'); (( v > $BEFORE )) && echo \$v" \
  || fail "the Deployment was not scaled"
MANAGERS=$(kubectl -n "$NS" get deployment floodgate-app --show-managed-fields -o jsonpath='{.metadata.managedFields[*].manager}')
[[ "$MANAGERS" == *floodgate-operator* ]] || fail "no floodgate-operator field manager on the Deployment ($MANAGERS)"
wait_for 60 kubectl -n "$NS" get campaign e2e -o jsonpath='{.status.appliedByReplicas}' >/dev/null \
  || fail "no app replica reported the runtime config"
kubectl -n "$NS" get events --field-selector involvedObject.kind=Campaign | grep -q Scaled || fail "no Scaled Event"

log "finalizer restores the Deployment"
kubectl -n "$NS" delete job floodgate-e2e-load --ignore-not-found
kubectl -n "$NS" delete campaign e2e --wait --timeout 60s
wait_for 60 bash -c "v=\$(kubectl -n $NS get deployment floodgate-app -o jsonpath='{.spec.replicas}'); (( v == $BEFORE )) && echo ok" \
  || fail "replicas not restored to $BEFORE"

log "PASS"
