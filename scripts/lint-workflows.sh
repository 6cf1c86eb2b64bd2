#!/usr/bin/env bash
# actionlint over .github/workflows/, with Debian's shellcheck checking every `run:` script.
#
# actionlint is built from its Go module (the Go module proxy, never a GitHub download) into
#   ${FLOODGATE_CACHE:-~/.cache/floodgate}/actionlint-<version>/actionlint
# once; shellcheck comes from apt. Both are installed only when missing, so the script is safe
# to rerun. When a tool cannot be had the run FAILS with the reason (never skips).
#
# Before linting the real workflows it proves the linter can fail: a deliberately broken
# workflow in a temporary folder must be rejected with a syntax, an expression and a
# run-script (shellcheck) error, and a copy of ci.yml with one key misspelt must be too.
# Every third-party action must be pinned to a full commit SHA with its version in a comment.
#
#   bash scripts/lint-workflows.sh            # self-check, then .github/workflows/*.yml
#   bash scripts/lint-workflows.sh FILE...    # self-check, then only these files
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ACTIONLINT_VERSION=1.7.12
CACHE=${FLOODGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/floodgate}
BIN_DIR=$CACHE/actionlint-$ACTIONLINT_VERSION
ACTIONLINT=$BIN_DIR/actionlint

log() { printf '[lint-workflows] %s\n' "$*" >&2; }
die() { printf '[lint-workflows] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi
}

ensure_shellcheck() {
  command -v shellcheck >/dev/null && return
  command -v apt-get >/dev/null || die "shellcheck not found and no apt-get: install shellcheck (actionlint checks run: scripts with it)"
  log "installing shellcheck from the system packages"
  as_root apt-get update -qq || die "apt-get update failed: cannot install shellcheck"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq shellcheck >/dev/null \
    || die "apt-get install shellcheck failed"
  command -v shellcheck >/dev/null || die "shellcheck still not on PATH after apt-get install"
}

ensure_actionlint() {
  if [ -x "$ACTIONLINT" ] && "$ACTIONLINT" -version 2>/dev/null | grep -qx "v\?$ACTIONLINT_VERSION"; then
    return
  fi
  command -v go >/dev/null || die "go not found: actionlint v$ACTIONLINT_VERSION is built from its Go module (needs Go >= 1.25, or GOTOOLCHAIN=auto to fetch one from the module proxy)"
  log "building actionlint v$ACTIONLINT_VERSION from the Go module proxy into $BIN_DIR (first run only, about a minute)"
  local tmp=$BIN_DIR.partial
  rm -rf "$tmp"; mkdir -p "$tmp"
  GOBIN=$tmp CGO_ENABLED=0 GOFLAGS=-mod=mod go install -trimpath \
      -ldflags "-s -w -X github.com/rhysd/actionlint.version=v$ACTIONLINT_VERSION" \
      "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION" \
    || die "go install github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION failed (is the Go module proxy reachable?)"
  rm -rf "$BIN_DIR"; mv "$tmp" "$BIN_DIR"
  [ -x "$ACTIONLINT" ] || die "actionlint not found in $BIN_DIR after go install"
}

lint() { "$ACTIONLINT" -no-color -shellcheck "$(command -v shellcheck)" -pyflakes= "$@"; }

# expect_rejected DIR FILE RULE...: actionlint must fail on FILE and report every RULE.
expect_rejected() {
  local dir=$1 file=$2 out rule; shift 2
  if out=$(cd "$dir" && lint "$file" 2>&1); then
    die "self-check: actionlint accepted the broken $file: it would not catch a broken workflow"
  fi
  for rule in "$@"; do
    grep -q "\[$rule\]" <<<"$out" \
      || die "self-check: no [$rule] error for the broken $file; actionlint said:"$'\n'"$out"
  done
}

# unpinned FILE...: print every third-party `uses:` not pinned to a full commit SHA with a
# version comment (`owner/action@<40 hex> # v1.2.3`); local `./` actions are exempt.
unpinned() {
  grep -nE '^[[:space:]-]*uses:[[:space:]]' "$@" | grep -vE 'uses:[[:space:]]+\./' \
    | grep -vE 'uses:[[:space:]]+[^[:space:]@]+@[0-9a-f]{40}[[:space:]]+#[[:space:]]*[^[:space:]]' || true
}

self_check() {
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  mkdir -p "$tmp/.github/workflows"
  # One error per kind actionlint must see: a misspelt key, an undefined expression property,
  # and a run: script with an unquoted variable (shellcheck SC2086).
  cat >"$tmp/.github/workflows/broken.yml" <<'YAML'
on: push
jobs:
  test:
    runs-on: ubuntu-24.04
    timeout-minute: 5
    steps:
      - run: echo "${{ github.no_such_property }}"
      - run: ls $HOME/*.txt
YAML
  expect_rejected "$tmp" .github/workflows/broken.yml syntax-check expression shellcheck
  printf '      - uses: actions/checkout@v5\n      - uses: actions/cache@0400d5f644dc74513175e3cd8d07132dd4860809\n' \
    >"$tmp/unpinned.yml"
  [ "$(unpinned "$tmp/unpinned.yml" | wc -l)" -eq 2 ] \
    || die "self-check: the pin check missed a tag or a SHA without a version comment"
  if [ -f "$ROOT/.github/workflows/ci.yml" ]; then
    sed 's/^\(\s*\)runs-on:/\1run-on:/' "$ROOT/.github/workflows/ci.yml" >"$tmp/.github/workflows/ci.yml"
    cmp -s "$ROOT/.github/workflows/ci.yml" "$tmp/.github/workflows/ci.yml" \
      && die "self-check: could not misspell runs-on in a copy of ci.yml"
    expect_rejected "$tmp" .github/workflows/ci.yml syntax-check
  fi
}

ensure_shellcheck
ensure_actionlint
started=$SECONDS
self_check
cd "$ROOT"
if [ $# -eq 0 ]; then
  shopt -s nullglob
  set -- .github/workflows/*.yml .github/workflows/*.yaml
  [ $# -gt 0 ] || die "no workflows in .github/workflows/"
fi
lint "$@" || die "actionlint found problems in $* (above)"
bad=$(unpinned "$@")
[ -z "$bad" ] || die "actions not pinned to a full commit SHA with a version comment (owner/action@<sha> # vX.Y.Z):"$'\n'"$bad"
log "ok: $# workflow(s) clean with actionlint v$ACTIONLINT_VERSION and $(shellcheck --version | sed -n 's/^version: /shellcheck /p') ($((SECONDS - started)) s)"
