#!/usr/bin/env bash
# The Python virtualenv of the chart, contract and cluster tests: .data/venv-chart with the pinned
# packages of tests/chart/requirements.txt, (re)installed only when that file changes.
# Idempotent and self-installing on a fresh Debian machine. Prints the virtualenv's path.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.data/venv-chart"
REQS="$ROOT/tests/chart/requirements.txt"
STAMP="$VENV/.requirements.sha256"
PYTHON="${PYTHON:-python3}"

log() { printf 'venv: %s\n' "$*" >&2; }

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
        "$PYTHON" -m venv "$VENV" >&2
    fi
    log "installing pinned packages from tests/chart/requirements.txt"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input -r "$REQS" >&2
    echo "$want" >"$STAMP"
fi

echo "$VENV"
