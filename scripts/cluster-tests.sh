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

bash "$ROOT/scripts/control-plane.sh" up

cd "$ROOT"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$ROOT/tests/cluster" "$@"
