#!/usr/bin/env bash
# The one test command (`make test`, and CI through .ci/run): starts or finds PostgreSQL,
# Redis and a local Redis Cluster, then runs every test of the workspace against them, then
# the offline chart tests, the contract fuzz of the API, then the tests against a real
# Kubernetes control plane (scripts/control-plane.sh).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

export DATABASE_URL=${DATABASE_URL:-postgres://floodgate:floodgate@127.0.0.1:54329/floodgate}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:63799}
export RUST_LOG=${RUST_LOG:-warn}
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
# CI builds once from a clean clone: incremental compilation would only add gigabytes of
# cache it never reuses (cargo's own advice for CI)
if [ -n "${CI:-}" ]; then export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}; fi

# up, plus the PgBouncer (transaction pooling) app/tests/it/pgbouncer.rs goes through
bash scripts/services.sh pgbouncer
# a local Redis Cluster (3 primaries, 3 replicas) for app/tests/it/redis_cluster.rs: ~2 s cold, 0.5 s warm
REDIS_CLUSTER_URL=${REDIS_CLUSTER_URL:-$(bash scripts/services.sh redis-cluster)}; export REDIS_CLUSTER_URL

# app/tests/it/abuse.rs sends forged X-Forwarded-For through a real nginx (run from a temp dir
# on a free port, never as the system service) and operator/e2e/local.sh reads the API with jq;
# both fail without their tool, so install what is missing; the TLS tests (app/tests/it/tls.rs,
# operator/tests/it/tls.rs) make certificates with openssl and serve https:// with prometheus
missing=()
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
command -v jq >/dev/null || missing+=(jq)
command -v openssl >/dev/null || missing+=(openssl)
command -v prometheus >/dev/null || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || { echo "${missing[*]} not found and no apt-get: install them first" >&2; exit 1; }
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  echo "[test] installing ${missing[*]} from the system packages" >&2
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs) first" >&2; exit 1; }

# nextest runs each test in its own process (what the suite is written for); install it once
# from crates.io (about 4 minutes of compiling), falling back to `cargo test` if that fails
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "[test] installing cargo-nextest from crates.io (first run only)" >&2
  cargo install --locked --quiet cargo-nextest >&2 || echo "[test] cargo-nextest install failed: using cargo test" >&2
fi

# the virtualenv of the Python tests; app/tests/it/goods_images.rs runs its S3-compatible server
# (moto) from it and fails without it
bash scripts/venv.sh >/dev/null

status=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || status=$?
else
  cargo test --workspace --no-fail-fast "$@" || status=$?
fi

# every load-test scenario for a few seconds against the real app, invariants checked after
bash scripts/loadtest-smoke.sh || status=$?
bash scripts/bench-tests.sh || status=$?

# the operator in --manifests mode driving the real app end to end
bash operator/e2e/local.sh || status=$?

# the waiting-room page in headless Chromium (installs chromium and playwright-core if missing)
bash scripts/browser-tests.sh || status=$?

# offline Helm chart, Dockerfile and CRD checks; they set up .data/venv-chart
bash scripts/chart-tests.sh || status=$?

# actionlint (from its Go module, cached) + shellcheck over .github/workflows, after a self-check
# that a deliberately broken workflow is rejected (about 1 s once actionlint is built)
bash scripts/lint-workflows.sh || status=$?

# the OCI image tarballs, assembled without an engine from the debug binaries (scripts/images.sh)
bash scripts/image-tests.sh || status=$?

# the CRD examples against the CRDs' own schemas, in the same virtualenv
"$ROOT/.data/venv-chart/bin/python" -m pytest -q operator/tests || status=$?

# the contract fuzz: Schemathesis against the real app and its own /openapi.json (about a
# minute): no 5xx, no undocumented status, no schema or content-type violation
bash scripts/contract-tests.sh || status=$?

# a real control plane (etcd, kube-apiserver, kube-controller-manager; built from the
# Kubernetes Go modules the first time, then cached): CRDs, chart and operator against it
bash scripts/cluster-tests.sh || status=$?
exit $status
