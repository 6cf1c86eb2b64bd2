#!/usr/bin/env bash
# OCI images of floodgate-app, floodgate-operator and floodgate-loadtest WITHOUT a Docker
# engine (`make images`): each is one layer on an empty base, written as an image tarball
# (docker-archive with OCI media types) that `crane push`, `ctr import`, `podman load` and
# `docker load` read.
#
#   bash scripts/images.sh                          release binaries -> .data/images/
#   bash scripts/images.sh --profile debug --out D  debug binaries -> D (scripts/image-tests.sh)
#   bash scripts/images.sh app                      only some targets (app, operator, loadtest)
#   bash scripts/images.sh --crane-path             build crane if needed, print its path
#
# The layer (scripts/image_parts.py): the binary at the Dockerfile's path, exactly the shared
# libraries ldd resolves for it (the dynamic loader included), the host's CA bundle,
# /etc/passwd and /etc/group with the non-root user 65532, /tmp, the user's home; the
# loadtest image also gets a static busybox as /bin/sh, because its Indexed Job
# (loadtest/k8s/job.yaml) runs through /bin/sh. The config (user, entrypoint, cmd, env,
# ports, org.opencontainers.image.* labels) is read from the Dockerfile's runtime targets,
# with VERSION = the workspace version and REVISION = the git commit (a "-dirty" suffix when
# the work tree has changes). Both profiles take the same assembly path; only the cargo
# profile of the binaries differs.
#
# Tools, installed on first use and cached outside the checkout, keyed by version:
#   crane (go-containerregistry, built from the Go module proxy, needs Go):
#     ${FLOODGATE_CACHE:-~/.cache/floodgate}/crane-<version>/crane
#   busybox-static (Debian package, `apt-get download`, not installed on the host):
#     ${FLOODGATE_CACHE:-~/.cache/floodgate}/busybox-static-<version>/bin/busybox
# crane needs a registry for `mutate`: a private in-memory one (`crane registry serve`) on a
# free 127.0.0.1 port lives for the duration of this script.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${FLOODGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/floodgate}
CRANE_VERSION=v0.22.1
PROFILE=release
OUT=$ROOT/.data/images
TARGETS=()
PRINT_CRANE=""

log() { printf '[images] %s\n' "$*" >&2; }
die() { printf '[images] error: %s\n' "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
  case $1 in
    --profile) PROFILE=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --crane-path) PRINT_CRANE=1; shift ;;
    app|operator|loadtest) TARGETS+=("$1"); shift ;;
    *) die "unknown argument $1 (see the header of $0)" ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(app operator loadtest)
case $PROFILE in release|debug) ;; *) die "--profile is release or debug, not $PROFILE" ;; esac

crane_bin() {
  local bin=$CACHE/crane-$CRANE_VERSION/crane
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null || die "go not found: crane is built from the Go module proxy (Go >= 1.24)"
    log "building crane $CRANE_VERSION from the Go module proxy into $(dirname "$bin") (first time only, about a minute)"
    GOBIN=$(dirname "$bin") CGO_ENABLED=0 go install "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION" >&2 \
      || die "go install crane failed"
  fi
  echo "$bin"
}

apt_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

busybox_bin() {
  command -v apt-get >/dev/null || die "apt-get not found: the loadtest image's /bin/sh is Debian's busybox-static"
  local version
  version=$(apt-cache policy busybox-static 2>/dev/null | awk '/Candidate:/ { print $2 }')
  if [ -z "$version" ] || [ "$version" = "(none)" ]; then
    log "apt-get update (to find busybox-static)"
    apt_root apt-get update -qq >&2
    version=$(apt-cache policy busybox-static | awk '/Candidate:/ { print $2 }')
  fi
  case $version in "" | "(none)") die "no busybox-static package in the apt sources" ;; esac
  local dir=$CACHE/busybox-static-${version//[:~]/_}
  if [ ! -x "$dir/bin/busybox" ]; then
    log "downloading busybox-static $version (Debian) into $dir"
    local tmp
    tmp=$(mktemp -d); rm -rf "$dir.partial"; mkdir -p "$dir.partial"
    chown _apt "$tmp" 2>/dev/null || true # apt's download sandbox user may write there
    (cd "$tmp" && apt-get download -q "busybox-static=$version" >&2) || die "apt-get download busybox-static failed"
    dpkg-deb -x "$tmp"/busybox-static_*.deb "$dir.partial/root"
    mkdir -p "$dir.partial/bin" && cp "$dir.partial/root/bin/busybox" "$dir.partial/bin/busybox"
    rm -rf "$dir.partial/root" "$tmp" "$dir" && mv "$dir.partial" "$dir"
  fi
  echo "$dir/bin/busybox"
}

platform() {
  case $(uname -m) in
    x86_64) echo linux/amd64 ;;
    aarch64) echo linux/arm64 ;;
    *) die "unsupported machine $(uname -m)" ;;
  esac
}

CRANE=$(crane_bin)
[ -z "$PRINT_CRANE" ] || { echo "$CRANE"; exit 0; }
BUSYBOX=""
for t in "${TARGETS[@]}"; do [ "$t" = loadtest ] && BUSYBOX=$(busybox_bin); done
command -v python3 >/dev/null || die "python3 not found (apt-get install python3)"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/floodgate-images.XXXXXX")
REGISTRY_PID=""
cleanup() {
  [ -z "$REGISTRY_PID" ] || kill "$REGISTRY_PID" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# The binaries, copied at once (other builds may share the target directory).
cd "$ROOT"
cargo_flags=(--locked -q -p floodgate-app -p floodgate-operator -p floodgate-loadtest
  --bin floodgate-app --bin floodgate-operator --bin floodgate-loadtest)
[ "$PROFILE" = release ] && cargo_flags+=(--release)
log "cargo build ($PROFILE) of the three binaries"
cargo build "${cargo_flags[@]}"
mkdir -p "$WORK/bin"
for b in floodgate-app floodgate-operator floodgate-loadtest; do
  cp "${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/$b" "$WORK/bin/$b"
done

VERSION=$(awk -F'"' '/^\[workspace.package\]/ { w = 1 } w && /^version *=/ { print $2; exit }' Cargo.toml)
[ -n "$VERSION" ] || die "no version in [workspace.package] of Cargo.toml"
REVISION=$(git rev-parse HEAD)
git diff --quiet HEAD -- 2>/dev/null || REVISION=$REVISION-dirty
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct)}

: >"$WORK/registry.log" # exists before the background job opens it: no race with sed
"$CRANE" registry serve --address 127.0.0.1:0 2>>"$WORK/registry.log" &
REGISTRY_PID=$!
PORT=""
for _ in $(seq 100); do
  PORT=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$WORK/registry.log")
  [ -n "$PORT" ] && break
  kill -0 "$REGISTRY_PID" 2>/dev/null || die "crane registry serve exited: $(cat "$WORK/registry.log")"
  sleep 0.1
done
[ -n "$PORT" ] || die "crane registry serve did not report its port"
REGISTRY=127.0.0.1:$PORT

mkdir -p "$OUT"
for target in "${TARGETS[@]}"; do
  name=floodgate-$target
  shell=(); [ "$target" = loadtest ] && shell=(--shell "$BUSYBOX")
  python3 "$ROOT/scripts/image_parts.py" --dockerfile "$ROOT/Dockerfile" --target "$target" \
    --binary "$WORK/bin/$name" --layer "$WORK/$target.tar" --platform "$(platform)" \
    --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" "${shell[@]}" >"$WORK/$target.flags"
  mapfile -d '' flags <"$WORK/$target.flags"
  "$CRANE" append --oci-empty-base -f "$WORK/$target.tar" -t "$REGISTRY/$name:assembly" >/dev/null 2>"$WORK/crane.log" \
    || die "crane append ($target): $(cat "$WORK/crane.log")"
  "$CRANE" mutate "$REGISTRY/$name:assembly" "${flags[@]}" -t "$name:$VERSION" -o "$OUT/$name.tar" >/dev/null 2>"$WORK/crane.log" \
    || die "crane mutate ($target): $(cat "$WORK/crane.log")"
  "$CRANE" validate --tarball "$OUT/$name.tar" >/dev/null || die "crane validate: $OUT/$name.tar"
  log "$OUT/$name.tar ($name:$VERSION, $(du -h "$OUT/$name.tar" | cut -f1))"
done
