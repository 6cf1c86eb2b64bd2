#!/usr/bin/env bash
# Headless-Chromium test of the waiting-room page (app/tests/it/queue_browser.rs).
#
# Installs Debian's `chromium` with apt if it is missing and `playwright-core` from npm into
# app/tests/browser/node_modules (both idempotent), makes sure PostgreSQL and Redis run, then
# runs the ignored browser test. Screenshots land in .data/screenshots/.
#
#   scripts/browser-tests.sh            the tests of the queue_browser module (with the ignored one)
#   scripts/browser-tests.sh NAME       those whose name contains NAME instead
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
log() { printf '[browser-tests] %s\n' "$*" >&2; }
die() { printf '[browser-tests] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi
}

CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$CHROMIUM" ]; then
  command -v apt-get >/dev/null || die "apt-get not found; install chromium yourself or set CHROMIUM"
  log "installing chromium from the system packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
command -v node >/dev/null || die "node is required (apt-get install nodejs npm)"

cd "$ROOT/app/tests/browser"
if [ ! -d node_modules/playwright-core ]; then
  log "installing playwright-core (npm)"
  if [ -f package-lock.json ]; then npm ci --no-audit --no-fund >/dev/null; else npm install --no-audit --no-fund >/dev/null; fi
fi

cd "$ROOT"
bash scripts/services.sh up
eval "$(bash scripts/services.sh env)"
export DATABASE_URL REDIS_URL CHROMIUM
mkdir -p .data/screenshots
rm -f .data/screenshots/waiting-room-*.png
cargo test -p floodgate-app --test it -- --include-ignored "${@:-queue_browser::}"
log "screenshots: $(ls .data/screenshots/waiting-room-*.png | tr '\n' ' ')"
