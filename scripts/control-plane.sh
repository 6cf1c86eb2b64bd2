#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1 for the tests and for `make cluster`:
# etcd, kube-apiserver (RBAC, service-account tokens) and kube-controller-manager (so a
# Deployment gets its ReplicaSet, Pods and status). No kubelet and no scheduler: Pods stay
# Pending, which is all an operator that talks to the API needs.
#
# The binaries are built from the Kubernetes project's Go modules at the release that
# tools/control-plane/go.mod pins (kubectl too, so client and server never skew), and cached
# outside the checkout, keyed by that go.mod and go.sum:
#   ${FLOODGATE_CACHE:-~/.cache/floodgate}/control-plane/<key>/bin
# The first build takes about 15-25 minutes on 2 cores (module download + compile); every
# later `up` finds the cache and starts in a few seconds.
#
#   scripts/control-plane.sh build   build (or find) the binaries, print their folder
#   scripts/control-plane.sh up      build if needed, start, wait until ready (default)
#   scripts/control-plane.sh down    stop what `up` started
#   scripts/control-plane.sh env     print export lines: KUBECONFIG (admin), PATH (kubectl)
#   scripts/control-plane.sh operator-kubeconfig NS SA FILE
#                                    write a kubeconfig for service account NS/SA (a bound
#                                    token from the TokenRequest API, valid 24 h)
#
# Safe to rerun: a running control plane is left alone. Data lives in .data/control-plane.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/tools/control-plane
DATA=${FLOODGATE_DATA_DIR:-$ROOT/.data}/control-plane
CACHE=${FLOODGATE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/floodgate}/control-plane
APISERVER_PORT=${FLOODGATE_APISERVER_PORT:-16443}
ETCD_PORT=${FLOODGATE_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 10))
KCM_PORT=${FLOODGATE_KCM_PORT:-10257}
SERVER=https://127.0.0.1:$APISERVER_PORT

log() { printf '[control-plane] %s\n' "$*" >&2; }
die() { printf '[control-plane] error: %s\n' "$*" >&2; exit 1; }

k8s_version() { awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$SRC/go.mod"; }
cache_key() { printf '%s-%s' "$(k8s_version)" "$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/etcd/main.go" | sha256sum | cut -c1-12)"; }
BIN=$CACHE/$(cache_key)/bin

build() {
  if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kubectl" ] && [ -x "$BIN/etcd" ]; then
    echo "$BIN"; return
  fi
  command -v go >/dev/null || die "go not found: the control plane is built from Go modules (Go >= 1.24)"
  local version minor tmp started
  version=$(k8s_version); minor=${version#v1.}; minor=${minor%%.*}
  [ -n "$version" ] || die "no k8s.io/kubernetes version in $SRC/go.mod"
  log "building kube-apiserver, kube-controller-manager, kubectl $version and etcd into $BIN"
  log "(first time only: module download and compile take about 15-25 minutes on 2 cores)"
  tmp=$BIN.partial; rm -rf "$tmp"; mkdir -p "$tmp"
  started=$SECONDS
  local x="-X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
  x="$x -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  x="$x -X k8s.io/client-go/pkg/version.gitVersion=$version -X k8s.io/client-go/pkg/version.gitMajor=1"
  x="$x -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  (cd "$SRC" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w $x" -o "$tmp/" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kubectl ./etcd) || die "go build failed"
  rm -rf "$BIN"; mv "$tmp" "$BIN"
  log "built in $((SECONDS - started)) s"
  echo "$BIN"
}

healthy() { curl -skf --max-time 2 -H "Authorization: Bearer $(cat "$DATA/admin.token" 2>/dev/null)" "$SERVER/readyz" >/dev/null 2>&1; }

pid_alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# The keys and tokens the servers need, made once per data folder.
credentials() {
  command -v openssl >/dev/null || die "openssl not found"
  mkdir -p "$DATA/pki"
  if [ ! -s "$DATA/pki/sa.key" ]; then
    openssl genrsa -out "$DATA/pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$DATA/pki/sa.key" -pubout -out "$DATA/pki/sa.pub" 2>/dev/null
  fi
  if [ ! -s "$DATA/pki/ca.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=floodgate-local-ca" \
      -keyout "$DATA/pki/ca.key" -out "$DATA/pki/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
      -keyout "$DATA/pki/apiserver.key" -out "$DATA/pki/apiserver.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default.svc,IP:10.96.0.1\n' > "$DATA/pki/san.ext"
    openssl x509 -req -in "$DATA/pki/apiserver.csr" -CA "$DATA/pki/ca.crt" -CAkey "$DATA/pki/ca.key" \
      -CAcreateserial -days 3650 -extfile "$DATA/pki/san.ext" -out "$DATA/pki/apiserver.crt" 2>/dev/null
  fi
  if [ ! -s "$DATA/admin.token" ]; then
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DATA/admin.token"
    head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DATA/kcm.token"
    # token,user,uid,"group1,group2"
    {
      printf '%s,admin,admin,"system:masters"\n' "$(cat "$DATA/admin.token")"
      printf '%s,system:kube-controller-manager,kcm,"system:masters"\n' "$(cat "$DATA/kcm.token")"
    } > "$DATA/pki/tokens.csv"
  fi
  # Audit: the writes an operator makes (bodies included), in order, for tests that check
  # what was written when; reads and everything else are left out to keep the log small.
  cat > "$DATA/pki/audit-policy.yaml" <<'POLICY'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Request
  verbs: [create, update, patch, delete]
  resources:
  - group: floodgate.dev
  - group: apps
    resources: [deployments, deployments/scale]
  - group: coordination.k8s.io
  - group: events.k8s.io
- level: None
POLICY
  write_kubeconfig "$DATA/admin.kubeconfig" admin "$(cat "$DATA/admin.token")"
  write_kubeconfig "$DATA/kcm.kubeconfig" kcm "$(cat "$DATA/kcm.token")"
}

# write_kubeconfig FILE USER TOKEN [NAMESPACE]
write_kubeconfig() {
  local ca
  ca=$(base64 -w0 < "$DATA/pki/ca.crt")
  umask 077
  cat > "$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: floodgate-local
  cluster:
    server: $SERVER
    certificate-authority-data: $ca
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2@floodgate-local
  context:
    cluster: floodgate-local
    user: $2
    namespace: ${4:-default}
current-context: $2@floodgate-local
EOF
}

up() {
  build >/dev/null
  mkdir -p "$DATA/logs"
  if pid_alive "$DATA/apiserver.pid" && healthy; then
    log "running at $SERVER"; start_kcm; return
  fi
  down quiet
  # a control plane this checkout did not start (another checkout's, or one whose folder was
  # deleted) holds the ports: its certificates are not ours, so say so rather than fail later
  local port
  for port in "$ETCD_PORT" "$ETCD_PEER_PORT" "$APISERVER_PORT" "$KCM_PORT"; do
    if ss -ltnH "sport = :$port" 2>/dev/null | grep -q .; then
      die "port $port is in use by $(ss -ltnpH "sport = :$port" | grep -o 'users:(("[^"]*",pid=[0-9]*' | head -1 | sed 's/users:(("//; s/",pid=/ pid /'): a control plane started from another checkout? Stop it (scripts/control-plane.sh down there, or kill that pid) or set FLOODGATE_APISERVER_PORT, FLOODGATE_ETCD_PORT and FLOODGATE_KCM_PORT"
    fi
  done
  credentials
  log "starting etcd on 127.0.0.1:$ETCD_PORT"
  "$BIN/etcd" --name floodgate --data-dir "$DATA/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "floodgate=http://127.0.0.1:$ETCD_PEER_PORT" \
    --unsafe-no-fsync --quota-backend-bytes 4294967296 --log-level warn \
    > "$DATA/logs/etcd.log" 2>&1 &
  echo $! > "$DATA/etcd.pid"
  for _ in $(seq 1 100); do
    curl -sf --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" >/dev/null 2>&1 && break
    pid_alive "$DATA/etcd.pid" || { tail -20 "$DATA/logs/etcd.log" >&2; die "etcd exited"; }
    sleep 0.1
  done
  log "starting kube-apiserver at $SERVER"
  "$BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --tls-cert-file "$DATA/pki/apiserver.crt" --tls-private-key-file "$DATA/pki/apiserver.key" \
    --client-ca-file "$DATA/pki/ca.crt" \
    --token-auth-file "$DATA/pki/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-issuer https://kubernetes.default.svc \
    --service-account-key-file "$DATA/pki/sa.pub" \
    --service-account-signing-key-file "$DATA/pki/sa.key" \
    --api-audiences https://kubernetes.default.svc \
    --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged \
    --endpoint-reconciler-type none \
    --profiling=false \
    --audit-policy-file "$DATA/pki/audit-policy.yaml" --audit-log-path "$DATA/logs/audit.log" \
    --audit-log-maxsize 200 --audit-log-maxbackup 1 \
    > "$DATA/logs/kube-apiserver.log" 2>&1 &
  echo $! > "$DATA/apiserver.pid"
  for _ in $(seq 1 600); do
    healthy && break
    pid_alive "$DATA/apiserver.pid" || { tail -30 "$DATA/logs/kube-apiserver.log" >&2; die "kube-apiserver exited"; }
    sleep 0.1
  done
  healthy || { tail -30 "$DATA/logs/kube-apiserver.log" >&2; die "kube-apiserver not ready after 60 s"; }
  log "kube-apiserver ready"
  start_kcm
}

start_kcm() {
  if pid_alive "$DATA/kcm.pid"; then return; fi
  log "starting kube-controller-manager"
  "$BIN/kube-controller-manager" \
    --kubeconfig "$DATA/kcm.kubeconfig" \
    --authentication-kubeconfig "$DATA/kcm.kubeconfig" --authorization-kubeconfig "$DATA/kcm.kubeconfig" \
    --bind-address 127.0.0.1 --secure-port "$KCM_PORT" \
    --service-account-private-key-file "$DATA/pki/sa.key" --root-ca-file "$DATA/pki/ca.crt" \
    --leader-elect=false --use-service-account-credentials=false \
    --controllers '*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-route,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner' \
    --concurrent-deployment-syncs 5 --concurrent-replicaset-syncs 5 \
    > "$DATA/logs/kube-controller-manager.log" 2>&1 &
  echo $! > "$DATA/kcm.pid"
  # ready when it has created the default ServiceAccount (the serviceaccount controller runs)
  local kc="$BIN/kubectl --kubeconfig $DATA/admin.kubeconfig"
  for _ in $(seq 1 300); do
    $kc -n default get serviceaccount default >/dev/null 2>&1 && { log "kube-controller-manager ready"; return; }
    pid_alive "$DATA/kcm.pid" || { tail -30 "$DATA/logs/kube-controller-manager.log" >&2; die "kube-controller-manager exited"; }
    sleep 0.2
  done
  die "kube-controller-manager did not create the default ServiceAccount in 60 s; see $DATA/logs/kube-controller-manager.log"
}

down() {
  local f
  for f in kcm apiserver etcd; do
    if pid_alive "$DATA/$f.pid"; then
      kill "$(cat "$DATA/$f.pid")" 2>/dev/null || true
      for _ in $(seq 1 50); do pid_alive "$DATA/$f.pid" || break; sleep 0.1; done
      pid_alive "$DATA/$f.pid" && kill -9 "$(cat "$DATA/$f.pid")" 2>/dev/null || true
    fi
    rm -f "$DATA/$f.pid"
  done
  [ "${1:-}" = quiet ] || log "stopped"
}

operator_kubeconfig() {
  local ns=$1 sa=$2 file=$3 token
  [ -n "$file" ] || die "usage: $0 operator-kubeconfig NAMESPACE SERVICEACCOUNT FILE"
  token=$("$BIN/kubectl" --kubeconfig "$DATA/admin.kubeconfig" -n "$ns" create token "$sa" --duration 24h)
  write_kubeconfig "$file" "system:serviceaccount:$ns:$sa" "$token" "$ns"
}

case ${1:-up} in
  build) build ;;
  up) up ;;
  down) down ;;
  env) echo "export KUBECONFIG=$DATA/admin.kubeconfig"; echo "export PATH=$BIN:\$PATH"
       echo "export FLOODGATE_AUDIT_LOG=$DATA/logs/audit.log" ;;
  operator-kubeconfig) shift; operator_kubeconfig "${1:-}" "${2:-}" "${3:-}" ;;
  *) die "usage: $0 [build|up|down|env|operator-kubeconfig NS SA FILE]" ;;
esac
