#!/usr/bin/env bash
# Offline tests of the Helm chart, the Dockerfile and the CRD copies (no cluster, no helm
# binary, no Docker engine needed). Idempotent and self-installing on a fresh Debian machine:
# creates the virtualenv .data/venv-chart with the pinned packages of
# tests/chart/requirements.txt (reinstalled only when that file changes), then runs pytest.
#
#   bash scripts/chart-tests.sh            # all chart tests
#   bash scripts/chart-tests.sh -k rbac    # extra arguments go to pytest
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.data/venv-chart"
REQS="$ROOT/tests/chart/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

log() { printf 'chart-tests: %s\n' "$*" >&2; }

apt_install() {
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "$@" >/dev/null
}

ensure_venv_module() {
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        log "$PYTHON not found; installing python3 and python3-venv with apt-get"
        apt_install python3 python3-venv
        PYTHON=python3
    fi
    if "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
        return
    fi
    log "python3-venv missing; installing it with apt-get"
    apt_install python3-venv
}

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [ ! -x "$VENV/bin/python" ] || [ "$want" != "$have" ]; then
    ensure_venv_module
    if [ ! -x "$VENV/bin/python" ]; then
        log "creating $VENV"
        mkdir -p "$(dirname "$VENV")"
        "$PYTHON" -m venv "$VENV"
    fi
    log "installing pinned packages from tests/chart/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQS"
    echo "$want" >"$STAMP"
fi

cd "$ROOT"
# -p no:cacheprovider: leave no .pytest_cache in the work tree.
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$ROOT/tests/chart" "$@"
