#!/usr/bin/env bash
# The tests against a real Kubernetes control plane (tests/cluster): the CRDs and the chart
# validated by kube-apiserver, the operator in cluster mode as the chart's ServiceAccount, leader
# election between two operator processes. Builds (first time) and starts the control plane
# with scripts/control-plane.sh; if it cannot start, the run fails with the reason.
#
#   bash scripts/cluster-tests.sh              # every cluster test
#   bash scripts/cluster-tests.sh -k crds      # extra arguments go to pytest
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=$(bash "$ROOT/scripts/venv.sh")
export DATABASE_URL=${DATABASE_URL:-postgres://floodgate:floodgate@127.0.0.1:54329/floodgate}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:63799}

# Debian's Prometheus (the operator reads depth and p95 from a real one), redis-server (private
# Redis servers per test), openssl (the control plane's keys) and jq, installed once
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v jq >/dev/null || missing+=(jq)  # the documented CRD adoption (docs/deploy.md)
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "[cluster-tests] installing ${missing[*]} from the system packages" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

bash "$ROOT/scripts/control-plane.sh" up

cd "$ROOT"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$ROOT/tests/cluster" "$@"
