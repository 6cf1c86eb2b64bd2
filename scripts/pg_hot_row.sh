#!/usr/bin/env bash
# scripts/pg_hot_row.sh URL SECONDS: the PostgreSQL hot-row ceiling that `make bench` and
# scripts/profile.sh measure: pgbench, 16 clients updating one row (table bench_hot) for
# SECONDS, pinned to CPU 1 as the load generators are. Prints pgbench's report (`tps = ...`).
set -euo pipefail
url=${1:?usage: scripts/pg_hot_row.sh URL SECONDS}
secs=${2:?usage: scripts/pg_hot_row.sh URL SECONDS}
PGOPTIONS=--client-min-messages=warning psql "$url" -qc "create table if not exists bench_hot (id int primary key, v bigint);
  insert into bench_hot values (1, 0) on conflict do nothing" >/dev/null
script=$(mktemp)
trap 'rm -f "$script"' EXIT
echo "update bench_hot set v = v + 1 where id = 1;" > "$script"
taskset -c 1 pgbench -n -c 16 -j 1 -T "$secs" -f "$script" "$url" 2>&1
