#!/usr/bin/env python3
"""docs/capacity.md from a bench report: the replicas, Redis memory and shards, and the
PostgreSQL write rate a 1,000,000-user ticket opening and a 100,000-unit flash sale need,
computed from the measured CPU µs per request, Redis bytes per waiting user and PostgreSQL
writes per order. Every figure names the latest.json field it rests on.

Usage: bench_capacity.py LATEST_JSON > docs/capacity.md"""
import json
import math
import sys

# The scenarios (assumptions, not measurements): stated in the document.
OPENING = {"users": 1_000_000, "join_window_s": 60, "poll_interval_s": 30, "seats": 50_000, "flows_per_s": 500}
FLASH = {"units": 100_000, "attempts_per_s": 20_000, "sell_out_s": 10}
CORE_BUDGET = 0.6   # one replica = one core, run at most 60 % busy (headroom for p95)
REDIS_BUDGET = 0.5  # a Redis shard is one thread: keep it at most half busy


def find_row(data, rid, prefix):
    for r in data["rows"]:
        if r["id"] == rid and r["workload"].startswith(prefix):
            return r
    return None


def held_p9(data):
    rows = [r for r in data["rows"] if r["id"] == "P9" and "highest rate held" in r["workload"]]
    return rows[0] if rows else None


def us(cpu, part):
    return (cpu or {}).get(part)


def fmt(v, digits=0):
    return "—" if v is None else f"{v:,.{digits}f}"


def field(path):
    return f"`{path}`"


def opening(data, out):
    cap = data.get("capacity", {})
    join = cap.get("join_cpu_us_per_request")
    poll = (find_row(data, "P4", "waiting room") or {}).get("cpu_us_per_request")
    p9 = held_p9(data)
    if not (join and poll and p9 and p9.get("cpu_us_per_request")):
        out.append("Not computed: the report lacks the join, poll or P9 CPU figures (run `make bench`).\n")
        return
    o = OPENING
    join_rate, poll_rate, flows = o["users"] / o["join_window_s"], o["users"] / o["poll_interval_s"], o["flows_per_s"]
    per_flow = p9["p9"]["requests"] / max(p9["p9"]["completed"], 1)
    above_idle = p9.get("cpu_us_per_flow_above_idle")
    if above_idle and None not in above_idle.values():
        flow, flow_src = above_idle, f"P9 held {field('rows[].cpu_us_per_flow_above_idle')} (the run's CPU less the idle CPU)"
    else:
        flow = {k: (us(p9["cpu_us_per_request"], k) or 0) * per_flow for k in ("app", "pg", "redis")}
        flow_src = f"P9 held {field('rows[].cpu_us_per_request')} × {field('rows[].p9.requests / completed')}"
    out += [f"Assumed: {o['users']:,} users join within {o['join_window_s']} s ({join_rate:,.0f} joins/s); "
            f"while waiting each polls every {o['poll_interval_s']} s (the longest `poll_after_seconds`) = "
            f"{poll_rate:,.0f} polls/s; {o['seats']:,} seats sold at an admission rate of {flows} flows/s "
            f"({o['seats'] / flows:,.0f} s). A flow is {per_flow:.1f} requests (P9: requests / completed flows).", "",
            "| line | arithmetic | rests on |", "|---|---|---|"]
    app = (join_rate * us(join, "app") + poll_rate * us(poll, "app") + flows * flow["app"]) / 1e6
    out.append(f"| app CPU | {join_rate:,.0f} × {fmt(us(join, 'app'), 1)} µs + {poll_rate:,.0f} × {fmt(us(poll, 'app'), 1)} µs "
               f"+ {flows} × {fmt(flow['app'])} µs = **{app:,.2f} cores** | "
               f"{field('capacity.join_cpu_us_per_request.app')}, P4 {field('rows[].cpu_us_per_request.app')}, {flow_src} |")
    out.append(f"| replicas | {app:,.2f} / {CORE_BUDGET} per one-core replica = **{math.ceil(app / CORE_BUDGET)} replicas** | the line above |")
    mem = o["users"] * cap["redis_bytes_per_waiting_user"] / 1e6
    out.append(f"| Redis memory | {o['users']:,} × {cap['redis_bytes_per_waiting_user']:.1f} B = **{mem:,.1f} MB** for the line "
               f"(sessions: at most maxActiveUsers more) | {field('capacity.redis_bytes_per_waiting_user')} |")
    red = (join_rate * us(join, "redis") + poll_rate * us(poll, "redis") + flows * flow["redis"]) / 1e6
    queue_red = (join_rate * us(join, "redis") + poll_rate * us(poll, "redis")) / 1e6
    out.append(f"| Redis CPU | {join_rate:,.0f} × {fmt(us(join, 'redis'), 1)} µs + {poll_rate:,.0f} × {fmt(us(poll, 'redis'), 1)} µs "
               f"+ {flows} × {fmt(flow['redis'])} µs = **{red:,.2f} cores**; shards at {REDIS_BUDGET} busy: "
               f"**{max(1, math.ceil(red / REDIS_BUDGET))}** | join, P4 and P9 {field('cpu_us_per_request.redis')} |")
    verdict = "fits" if queue_red <= REDIS_BUDGET else "does NOT fit: lengthen the poll interval or split the line into several queues"
    out.append(f"| one queue's slot | a waiting room's keys share one hash slot (`{{q:<id>}}`), so its joins and polls "
               f"({queue_red:,.2f} cores) run on one shard whatever the cluster size: {verdict} | same |")
    pg = cap.get("pg_per_ticket_flow") or {}
    if pg:
        rows = pg["tup_inserted"] + pg["tup_updated"]
        out.append(f"| PostgreSQL writes | {flows} flows/s × {rows:.1f} rows inserted+updated = **{flows * rows:,.0f} rows/s**, "
                   f"in {flows} × {pg['xact_commit']:.1f} = {flows * pg['xact_commit']:,.0f} transactions/s (reads included); CPU {flows} × "
                   f"{fmt(flow['pg'])} µs = {flows * flow['pg'] / 1e6:,.2f} cores | {field('capacity.pg_per_ticket_flow')} |")


def flash(data, out):
    cap = data.get("capacity", {})
    p2 = find_row(data, "P2", "flash sale: POST")
    pg = cap.get("pg_per_flash_sale_order")
    if not (p2 and p2.get("cpu_us_per_request") and pg):
        out.append("Not computed: the report lacks the P2 CPU or PostgreSQL figures (run `make bench`).\n")
        return
    f, cpu = FLASH, p2["cpu_us_per_request"]
    orders_s = f["units"] / f["sell_out_s"]
    out += [f"Assumed: {f['attempts_per_s']:,} order attempts/s (orders and, once sold out, sold-out answers); "
            f"{f['units']:,} units sell out in {f['sell_out_s']} s ({orders_s:,.0f} orders/s).", "",
            "| line | arithmetic | rests on |", "|---|---|---|"]
    app = f["attempts_per_s"] * us(cpu, "app") / 1e6
    out.append(f"| app CPU | {f['attempts_per_s']:,} × {fmt(us(cpu, 'app'), 1)} µs = **{app:,.2f} cores** → "
               f"**{math.ceil(app / CORE_BUDGET)} replicas** | P2 {field('rows[].cpu_us_per_request.app')} (orders and "
               "sold-out answers of the run together) |")
    red = f["attempts_per_s"] * (us(cpu, "redis") or 0) / 1e6
    out.append(f"| Redis CPU | {f['attempts_per_s']:,} × {fmt(us(cpu, 'redis'), 1)} µs = **{red:,.2f} cores** | P2 "
               f"{field('rows[].cpu_us_per_request.redis')} |")
    rows = pg["tup_inserted"] + pg["tup_updated"]
    out.append(f"| PostgreSQL writes | {orders_s:,.0f} orders/s × {rows:.1f} rows inserted+updated = **{orders_s * rows:,.0f} rows/s**, "
               f"in {orders_s:,.0f} × {pg['xact_commit']:.3f} = {orders_s * pg['xact_commit']:,.0f} transactions/s (group commit: "
               f"many orders per transaction) | {field('capacity.pg_per_flash_sale_order')} "
               "(per order; the run's sold-out answers included) |")
    pgc = f["attempts_per_s"] * (us(cpu, "pg") or 0) / 1e6
    out.append(f"| PostgreSQL CPU | {f['attempts_per_s']:,} × {fmt(us(cpu, 'pg'), 1)} µs = **{pgc:,.2f} cores** | P2 "
               f"{field('rows[].cpu_us_per_request.pg')} |")


def replicas_check(data, out):
    one, three = find_row(data, "P1x", "GET /goods/{id} through nginx, 1 "), find_row(data, "P1x", "GET /goods/{id} through nginx, 3 ")
    if not (one and three and one.get("cpu_us_per_request") and three.get("cpu_us_per_request")):
        out.append("Not measured in this report (row P1x).")
        return
    a, b = us(one["cpu_us_per_request"], "app"), us(three["cpu_us_per_request"], "app")
    factor = b / a
    out.append(f"P1x (GET /goods/{{id}} through nginx, 64 VUs): app CPU {a:,.1f} µs/request on 1 process, {b:,.1f} µs/request "
               f"summed over 3 ({factor:.2f}×). The model above counts CPU per request, not per process, so it "
               "assumes the two are close (each replica also runs its own admission and config loops, a small "
               "fixed cost).")
    if factor <= 1.25:
        out.append("Here they are within 25 %: the model holds for this row.")
    else:
        out.append(f"Here they are NOT: 3 processes on one shared core (CPU 0 of 2) cost {factor:.2f}× per request "
                   "(context switches between three runtimes, three sets of background loops, colder caches). "
                   "Replicas with a core each do not pay the sharing part, but this machine cannot show that, so "
                   f"read the replica counts above as a floor and the same counts × {factor:.2f} as the bound if "
                   "replicas are packed several to a core.")
    out.append("On 2 cores the processes share CPU 0 with PostgreSQL and Redis, so the rates are not a scaling figure.")


def main():
    data = json.load(open(sys.argv[1]))
    cond = data.get("conditions", {})
    out = ["# Capacity on paper", "",
           f"Generated by `scripts/bench_capacity.py` from `{sys.argv[1]}`, the bench report of {data['generated_at']} "
           f"({'comparable' if cond.get('comparable') else 'NOT comparable: ' + '; '.join(cond.get('reasons', []))}). "
           "CPU µs per request barely moves with machine load, so it is the figure scaled here; the rates of a "
           "2-core machine are not. Paths in backticks are fields of that report (`latest.json` shape).", "",
           f"Budgets: one replica = one core at most {CORE_BUDGET:.0%} busy; one Redis shard at most {REDIS_BUDGET:.0%} busy "
           "(Redis runs commands on one thread). CPU is read in clock ticks of 10 ms, so a row with little CPU "
           "(the low P9 steps) is coarse; PostgreSQL transactions are pg_stat_database `xact_commit` (read-only "
           "ones included), rows are `tup_inserted + tup_updated`.", "",
           "## A 1,000,000-user ticket opening", ""]
    opening(data, out)
    out += ["", "## A 100,000-unit flash sale", ""]
    flash(data, out)
    out += ["", "## Checked against 1 and 3 replicas", ""]
    replicas_check(data, out)
    print("\n".join(out))


if __name__ == "__main__":
    main()
