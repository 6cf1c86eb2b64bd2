#!/usr/bin/env bash
# Offline tests of the Helm chart, the Dockerfile and the CRD copies (no cluster, no helm
# binary, no Docker engine needed). Idempotent and self-installing on a fresh Debian machine:
# scripts/venv.sh makes the virtualenv .data/venv-chart, promtool (the alerts' checks) comes
# from Debian's prometheus package, then this runs pytest.
#
#   bash scripts/chart-tests.sh            # all chart tests
#   bash scripts/chart-tests.sh -k rbac    # extra arguments go to pytest
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=$(bash "$ROOT/scripts/venv.sh")

if ! command -v promtool >/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "[chart-tests] installing prometheus (promtool) from the system packages" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq prometheus >/dev/null
fi

cd "$ROOT"
# -p no:cacheprovider: leave no .pytest_cache in the work tree.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$ROOT/tests/chart" "$@"
