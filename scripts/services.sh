#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL.
#
# When one does not answer and the URL points at this machine, installs the server from the
# system packages (apt) if needed and starts a private instance with its data in .data/.
# Safe to rerun: running instances are left alone, existing data is kept.
#
#   scripts/services.sh up             ensure both are running (default)
#   scripts/services.sh redis-cluster  ensure a local Redis Cluster runs (three primaries and
#                                      three replicas on REDIS_CLUSTER_PORTS, data in
#                                      .data/redis-cluster/): starts the nodes that are down,
#                                      forms the cluster once, waits for cluster_state:ok,
#                                      prints its seed URLs (for REDIS_CLUSTER_URL)
#   scripts/services.sh pgbouncer      also a private PgBouncer (transaction pooling) in front
#                                      of the local PostgreSQL at PGBOUNCER_URL
#   scripts/services.sh down           stop the private instances started here
#   scripts/services.sh env            print the export lines for the URLs in use
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=${FLOODGATE_DATA_DIR:-$ROOT/.data}
DATABASE_URL=${DATABASE_URL:-postgres://floodgate:floodgate@127.0.0.1:54329/floodgate}
REDIS_URL=${REDIS_URL:-redis://127.0.0.1:63799}
PGBOUNCER_PORT=${PGBOUNCER_PORT:-64329}
# six loopback ports: the first three become primaries, each with one replica
REDIS_CLUSTER_PORTS=${REDIS_CLUSTER_PORTS:-"63811 63812 63813 63814 63815 63816"}

log() { printf '[services] %s\n' "$*" >&2; }
die() { printf '[services] error: %s\n' "$*" >&2; exit 1; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else die "need root to run: $*"; fi
}

APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || die "apt-get not found; install $* yourself"
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq; APT_UPDATED=1; fi
  log "installing $* from the system packages"
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@" >/dev/null
}

# host and port of a URL like scheme://user:pass@host:port/db
url_host() { local r=${1#*://}; r=${r#*@}; r=${r%%/*}; echo "${r%%:*}"; }
url_port() { local r=${1#*://}; r=${r#*@}; r=${r%%/*}; case $r in *:*) echo "${r##*:}";; *) echo "$2";; esac; }
url_user() { local r=${1#*://}; case $r in *@*) r=${r%%@*}; echo "${r%%:*}";; *) echo postgres;; esac; }
url_db()   { local r=${1#*://}; r=${r#*/}; echo "${r%%\?*}"; }
is_local() { case $1 in 127.*|localhost|::1) return 0;; *) return 1;; esac; }

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do [ -x "$d/initdb" ] && { echo "$d"; return; }; done
  return 1
}

pg_up() {
  local host port user db bin pgdata owner run
  host=$(url_host "$DATABASE_URL"); port=$(url_port "$DATABASE_URL" 5432)
  user=$(url_user "$DATABASE_URL"); db=$(url_db "$DATABASE_URL")
  command -v pg_isready >/dev/null || apt_install postgresql-client
  if pg_isready -q -h "$host" -p "$port"; then log "PostgreSQL answers at $host:$port"; else
    is_local "$host" || die "PostgreSQL at $host:$port does not answer (not a local address, so not starting one)"
    bin=$(pg_bin) || { apt_install postgresql; bin=$(pg_bin) || die "postgresql installed but initdb not found"; }
    pgdata=$DATA/postgres; run=$DATA/run
    owner=$(id -un)
    if [ "$(id -u)" -eq 0 ]; then
      # PostgreSQL refuses to run as root: run it as the packaged 'postgres' user.
      id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /usr/sbin/nologin postgres
      owner=postgres
      mkdir -p "$DATA"
      if ! runuser -u postgres -- test -x "$DATA"; then
        # the checkout is not reachable by that user (e.g. under /root): keep the data elsewhere
        DATA=/var/lib/floodgate/$(printf '%s' "$ROOT" | cksum | cut -d' ' -f1)
        pgdata=$DATA/postgres; run=$DATA/run
        log "checkout not readable by 'postgres'; PostgreSQL data goes to $DATA"
      fi
    fi
    mkdir -p "$pgdata" "$run"
    [ "$owner" = "$(id -un)" ] || chown "$owner" "$pgdata" "$run"
    runpg() { if [ "$owner" = "$(id -un)" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi; }
    if [ ! -s "$pgdata/PG_VERSION" ]; then
      log "initialising a private PostgreSQL in $pgdata"
      runpg "$bin/initdb" -D "$pgdata" -U "$user" --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    fi
    log "starting PostgreSQL on $host:$port"
    runpg "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 \
      -o "-p $port -k $run -c listen_addresses=$host -c max_connections=500 -c shared_buffers=256MB" start >/dev/null \
      || { tail -20 "$pgdata/server.log" >&2; die "PostgreSQL did not start"; }
    # where later runs (down, beside_pg, bench) look for the path of this data directory
    echo "$pgdata" > "$DATA/postgres.path" 2>/dev/null || true
  fi
  if ! psql -h "$host" -p "$port" -U "$user" -d postgres -tAc "select 1 from pg_database where datname = '$db'" 2>/dev/null | grep -q 1; then
    log "creating database $db"
    psql -h "$host" -p "$port" -U "$user" -d postgres -qc "create database \"$db\"" >/dev/null
  fi
}

redis_up() {
  local host port dir
  host=$(url_host "$REDIS_URL"); port=$(url_port "$REDIS_URL" 6379)
  command -v redis-cli >/dev/null || apt_install redis-tools
  if [ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null)" = "PONG" ]; then log "Redis answers at $host:$port"; return; fi
  is_local "$host" || die "Redis at $host:$port does not answer (not a local address, so not starting one)"
  command -v redis-server >/dev/null || apt_install redis-server
  dir=$DATA/redis; mkdir -p "$dir"
  log "starting a private Redis on $host:$port (data in $dir)"
  # noeviction: queue and stock-gate keys must never be evicted silently
  redis-server --bind "$host" --port "$port" --daemonize yes --dir "$dir" \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no \
    --maxmemory-policy noeviction
  for _ in $(seq 1 50); do
    [ "$(redis-cli -h "$host" -p "$port" ping 2>/dev/null)" = "PONG" ] && return
    sleep 0.1
  done
  die "Redis did not start; see $dir/redis.log"
}

# The folder beside PostgreSQL's data (which may have moved out of an unreadable checkout).
beside_pg() { dirname "$(cat "$DATA/postgres.path" 2>/dev/null || echo "$DATA/postgres")"; }

pgbouncer_url() {
  local r=${DATABASE_URL#*://} auth
  auth=${r%%@*}
  echo "postgres://$auth@127.0.0.1:$PGBOUNCER_PORT/$(url_db "$DATABASE_URL")"
}

# A private PgBouncer in transaction pooling mode on 127.0.0.1:$PGBOUNCER_PORT, serving every
# database of the local PostgreSQL (tests make one database each). Debian 12's PgBouncer is
# 1.18: no prepared statements across transactions, hence DEALLOCATE ALL after each one and
# the app's FLOODGATE_DB_POOLER=transaction (docs/deploy.md, "TLS and PgBouncer").
pgbouncer_up() {
  local host port user dir owner
  host=$(url_host "$DATABASE_URL"); port=$(url_port "$DATABASE_URL" 5432); user=$(url_user "$DATABASE_URL")
  is_local "$host" || die "PgBouncer is started here only in front of a local PostgreSQL"
  command -v pgbouncer >/dev/null || [ -x /usr/sbin/pgbouncer ] || apt_install pgbouncer
  if pg_isready -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" 2>/dev/null; then log "PgBouncer answers at 127.0.0.1:$PGBOUNCER_PORT"; return; fi
  dir=$(beside_pg)/pgbouncer; mkdir -p "$dir"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
* = host=$host port=$port
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = trust
auth_file = $dir/userlist.txt
pool_mode = transaction
max_client_conn = 4000
default_pool_size = 40
max_db_connections = 200
server_reset_query = DEALLOCATE ALL
server_reset_query_always = 1
ignore_startup_parameters = extra_float_digits
; the tests KILL their database here before sqlx drops it
admin_users = $user
server_idle_timeout = 30
pidfile = $dir/pgbouncer.pid
logfile = $dir/pgbouncer.log
INI
  printf '"%s" ""\n' "$user" >"$dir/userlist.txt"
  owner=$(id -un)
  # PgBouncer refuses to run as root
  if [ "$(id -u)" -eq 0 ]; then owner=postgres; chown -R postgres "$dir"; fi
  log "starting PgBouncer (transaction pooling) on 127.0.0.1:$PGBOUNCER_PORT in front of $host:$port"
  if [ "$owner" = "$(id -un)" ]; then /usr/sbin/pgbouncer -d "$dir/pgbouncer.ini"
  else runuser -u "$owner" -- /usr/sbin/pgbouncer -d "$dir/pgbouncer.ini"; fi
  for _ in $(seq 1 50); do
    pg_isready -q -h 127.0.0.1 -p "$PGBOUNCER_PORT" && return
    sleep 0.1
  done
  die "PgBouncer did not start; see $dir/pgbouncer.log"
}

cluster_url() { local p out=""; for p in $REDIS_CLUSTER_PORTS; do out+="${out:+,}redis://127.0.0.1:$p"; done; echo "$out"; }
cluster_state() { redis-cli -p "$1" cluster info 2>/dev/null | tr -d '\r' | sed -n 's/^cluster_state://p'; }
# every node sees all of them connected and none failing (a restarted node has rejoined, so
# a client's topology and a CONFIG SET to every node include it)
cluster_joined() {
  local port out n=0
  for port in $REDIS_CLUSTER_PORTS; do n=$((n + 1)); done
  for port in $REDIS_CLUSTER_PORTS; do
    out=$(redis-cli -p "$port" cluster nodes 2>/dev/null) || return 1
    [ "$(grep -c ' connected' <<<"$out")" -eq "$n" ] || return 1
    ! grep -q 'fail' <<<"$out" || return 1
    # every node also knows every replica's role: a client's slot map (CLUSTER SLOTS) lists
    # replicas only then, and a CONFIG SET sent to all nodes would miss the others
    [ "$(awk '$3 ~ /slave/' <<<"$out" | wc -l)" -eq $((n / 2)) ] || return 1
  done
}

redis_cluster_up() {
  local port dir base ports=() first running="" stale=""
  command -v redis-cli >/dev/null || apt_install redis-tools
  command -v redis-server >/dev/null || apt_install redis-server
  # A node that is down restarts in the folder its running peers use (they may have been
  # started from another checkout): its nodes.conf there keeps its identity. A fresh folder
  # would start a stranger the cluster does not know, beside a failed ghost of the old node.
  base=$DATA/redis-cluster
  # Nodes whose folder is gone (a checkout deleted under its running nodes; Redis then reports
  # an empty dir) cannot save their cluster config, and Redis exits at the next topology
  # change, such as a failover: stop them all and start cold rather than trust that cluster.
  for port in $REDIS_CLUSTER_PORTS; do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] || continue
    dir=$(redis-cli -p "$port" config get dir 2>/dev/null | sed -n 2p) || true
    if [ -z "$dir" ] || [ ! -d "$dir" ]; then stale=$port; break; fi
    [ -n "$running" ] || { base=$(dirname "$dir"); running=yes; }
  done
  if [ -n "$stale" ]; then
    log "Redis Cluster node $stale runs in a folder that no longer exists: restarting the cluster cold"
    for port in $REDIS_CLUSTER_PORTS; do redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; done
    sleep 0.5
    base=$DATA/redis-cluster; running=""
  fi
  # No node running: the cluster starts cold. Its data went with the nodes (no persistence),
  # and an old nodes.conf would bring back an old topology, possibly with bus ports from an
  # earlier version of this script, which never reaches cluster_state:ok: form it afresh.
  [ -n "$running" ] || rm -f "$base"/*/nodes.conf
  for port in $REDIS_CLUSTER_PORTS; do
    ports+=("127.0.0.1:$port")
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] && continue
    dir=$base/$port; mkdir -p "$dir"
    log "starting Redis Cluster node 127.0.0.1:$port (data in $dir)"
    # nodes.conf keeps its identity across restarts: a restarted node rejoins as it left (a
    # primary that was failed over comes back as its successor's replica). A short node
    # timeout, so a dead primary is replaced within seconds. The bus port is the default
    # port+10000 only below 55536, and port-20000 lands in the ephemeral range (32768-60999),
    # where a client socket can hold it: ours sit 50000 below.
    redis-server --bind 127.0.0.1 --port "$port" --daemonize yes --dir "$dir" \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no \
      --maxmemory-policy noeviction --cluster-enabled yes --cluster-config-file nodes.conf \
      --cluster-port $((port - 50000)) --cluster-node-timeout 2000
  done
  for port in $REDIS_CLUSTER_PORTS; do
    for _ in $(seq 1 50); do [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] && break; sleep 0.1; done
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = "PONG" ] || die "Redis Cluster node $port did not start; see $DATA/redis-cluster/$port/redis.log"
  done
  first=${REDIS_CLUSTER_PORTS%% *}
  if [ "$(redis-cli -p "$first" cluster info | tr -d '\r' | sed -n 's/^cluster_known_nodes://p')" -lt ${#ports[@]} ]; then
    log "forming the Redis Cluster on ${ports[*]}"
    # a node left with slots or keys of an earlier, broken cluster refuses to join a new one:
    # these nodes are private to this script, so a new cluster starts from empty nodes
    for port in $REDIS_CLUSTER_PORTS; do
      redis-cli -p "$port" flushall >/dev/null 2>&1 || true
      redis-cli -p "$port" cluster reset hard >/dev/null || die "Redis Cluster node $port did not reset"
    done
    redis-cli --cluster create "${ports[@]}" --cluster-replicas 1 --cluster-yes >/dev/null \
      || die "redis-cli --cluster create failed"
  fi
  for _ in $(seq 1 150); do
    if [ "$(cluster_state "$first")" = ok ] && cluster_joined \
      && redis-cli --cluster check "127.0.0.1:$first" >/dev/null 2>&1; then
      log "Redis Cluster ok"; cluster_url; return
    fi
    sleep 0.2
  done
  die "the Redis Cluster did not reach cluster_state:ok; see $DATA/redis-cluster/*/redis.log"
}

down() {
  local pgdata bin
  pgdata=$(cat "$DATA/postgres.path" 2>/dev/null || echo "$DATA/postgres")
  if [ -s "$pgdata/postmaster.pid" ] && bin=$(pg_bin); then
    if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$pgdata" -m fast stop || true
    else "$bin/pg_ctl" -D "$pgdata" -m fast stop || true; fi
  fi
  # Redis lives beside PostgreSQL's data (which may have moved out of an unreadable checkout)
  for pidfile in "$DATA/redis/redis.pid" "$(dirname "$pgdata")/redis/redis.pid" \
    "$(dirname "$pgdata")/pgbouncer/pgbouncer.pid"; do
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
  for pidfile in "$DATA"/redis-cluster/*/redis.pid; do
    if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
  done
}

case ${1:-up} in
  up) mkdir -p "$DATA"; pg_up; redis_up ;;
  redis-cluster) mkdir -p "$DATA"; redis_cluster_up ;;
  down) down ;;
  pgbouncer) mkdir -p "$DATA"; pg_up; redis_up; pgbouncer_up ;;
  env) echo "export DATABASE_URL=$DATABASE_URL"; echo "export REDIS_URL=$REDIS_URL"
       echo "export PGBOUNCER_URL=$(pgbouncer_url)"
       echo "export REDIS_CLUSTER_URL=$(cluster_url)" ;;
  *) die "usage: $0 [up|redis-cluster|pgbouncer|down|env]" ;;
esac
