#!/usr/bin/env python3
"""The bench's P9 rows (the reserve-and-pay flow through the waiting room, stepped arrival
rates), the replica check (one row run on 1 and on 3 app processes behind nginx) and the
capacity figures docs/capacity.md rests on (Redis bytes per waiting user, PostgreSQL writes
per order and per flow). Raw files are written by scripts/bench_p9.sh."""
import glob
import json
import os
import re

from bench_cpu import idle_ms_per_s, requests_served, row_cpu

STEPS = ("p9-join", "p9-poll", "p9-seats", "p9-hold", "p9-pay")
MAX_DROPPED = 0.01


def load(raw, name):
    try:
        with open(os.path.join(raw, name)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def checks(summary):
    """{check name: (passes, fails)} over every group of a summary."""
    out = {}
    root = summary.get("root_group", {})
    for group in [root] + root.get("groups", []):
        for c in group.get("checks", []):
            p, f = out.get(c["name"], (0, 0))
            out[c["name"]] = (p + c["passes"], f + c["fails"])
    return out


def metric(summary, name, key):
    return summary.get("metrics", {}).get(name, {}).get("values", {}).get(key)


def step(raw, rate):
    """One P9 step's figures: flows completed and failed, failures by step, dropped
    iterations, p95 per step, or None when the step did not run."""
    s = load(raw, f"p9_r{rate}.json")
    if not s:
        return None
    c = checks(s)
    done, failed = c.get("flow completed", (0, 0))
    why = {k[len("flow failed: "):]: f for k, (_, f) in c.items() if k.startswith("flow failed: ")}
    seconds = (s.get("state", {}).get("testRunDurationMs") or 0) / 1000
    # a flow still running when the graceful stop ended it never finished: a failure too
    interrupted = s.get("floodgate", {}).get("metrics", {}).get("interrupted_iterations", 0)
    if interrupted:
        why["interrupted"] = interrupted
        failed += interrupted
    return {"rate": float(rate), "completed": done, "failed": failed, "failed_by_step": why,
            "failure_rate": failed / (done + failed) if done + failed else None,
            "flows_per_s": done / seconds if seconds else None,
            "dropped": metric(s, "dropped_iterations", "count") or 0,
            "p95_ms": {n: metric(s, f"http_req_duration{{name:{n}}}", "p(95)") for n in STEPS},
            "requests": requests_served(raw, f"p9_r{rate}"), "pg": pg_delta(raw, f"p9_r{rate}_pg.txt")}


def step_held(raw, rate, p95_ms):
    """A step holds when no flow failed (interrupted ones included), at most 1 % of the offered
    flows were dropped, and every step's p95 is within p95_ms."""
    st = step(raw, rate)
    if not st or st["completed"] == 0:
        return False
    offered = st["completed"] + st["failed"] + st["dropped"]
    return (st["failed"] == 0 and st["dropped"] <= MAX_DROPPED * offered
            and all(v is not None and v <= p95_ms for v in st["p95_ms"].values() if v is not None))


def rates(raw):
    found = [re.match(r"p9_r([\d.]+)\.json$", os.path.basename(p)) for p in glob.glob(os.path.join(raw, "p9_r*.json"))]
    return sorted((m.group(1) for m in found if m), key=float)


def marginal_per_flow(raw, rate, completed):
    """{app, pg, redis}: µs of CPU per completed flow above the idle CPU (cpu_idle.jsonl) over
    the same seconds: the cost a further flow adds, which capacity scales."""
    idle = idle_ms_per_s(raw)
    try:
        with open(os.path.join(raw, f"cpu_p9_r{rate}.jsonl")) as f:
            a, b = [json.loads(line) for line in f if line.strip()][:2]
    except (OSError, ValueError):
        return None
    if not idle or not completed:
        return None
    secs = b["at"] - a["at"]
    out = {}
    for p in ("app", "pg", "redis"):
        if a.get(p) is None or b.get(p) is None or idle.get(p) is None:
            out[p] = None
            continue
        used_ms = (b[p] - a[p]) * 1000 / a["tick_hz"]
        out[p] = max(0.0, used_ms - idle[p] * secs) * 1000 / completed
    return out


def p9_rows(raw):
    meta = load(raw, "p9_meta.json") or {}
    held = meta.get("held_rate")
    rows = []
    for r in rates(raw):
        st = step(raw, r)
        cpu = row_cpu(raw, f"p9_r{r}")
        per_flow = None
        if cpu and st["requests"] and st["completed"]:
            per_flow = cpu["total"] * st["requests"] / st["completed"] if cpu["total"] is not None else None
        p95 = ", ".join(f"{n[3:]} {v:.1f}" for n, v in st["p95_ms"].items() if v is not None)
        why = ", ".join(f"{k}: {v}" for k, v in st["failed_by_step"].items() if v) or "none"
        headline = held is not None and float(r) == float(held)
        rows.append({
            "id": "P9", "workload": f"reserve-and-pay flow through the waiting room, {float(r):g} flows/s offered"
                                    + (" (the highest rate held)" if headline else ""),
            "ours": st["flows_per_s"], "unit": "flows/s", "ceiling": "-", "ceiling_value": None, "ratio": None,
            "target": "0 % failed flows", "pass": st["failed"] == 0 if st["completed"] + st["failed"] else None,
            "note": (f"{st['completed']} completed, {st['failed']} failed ({(st['failure_rate'] or 0):.2%}; by step: {why}), "
                     f"{st['dropped']} dropped; p95 ms {p95}"
                     + (f"; CPU per completed flow {per_flow:,.0f} µs" if per_flow else "")),
            "cpu_us_per_request": cpu, "p9": st, "cpu_us_per_flow": per_flow,
            "cpu_us_per_flow_above_idle": marginal_per_flow(raw, r, st["completed"]),
        })
    if meta and held is None:
        rows.append({"id": "P9", "workload": "reserve-and-pay flow: no step held", "ours": None, "unit": "flows/s",
                     "ceiling": "-", "ceiling_value": None, "ratio": None, "target": "0 % failed flows",
                     "pass": False, "note": f"steps tried: {meta.get('rates')}; see the rows above"})
    return rows


def pg_delta(raw, name):
    """pg_stat_database deltas from a file of two lines `xact_commit|tup_inserted|tup_updated|tup_deleted`."""
    try:
        with open(os.path.join(raw, name)) as f:
            lines = [line.strip().split("|") for line in f if line.strip()]
        a, b = [list(map(int, x)) for x in lines[:2]]
    except (OSError, ValueError):
        return None
    keys = ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted")
    return {k: b[i] - a[i] for i, k in enumerate(keys)}


def per(delta, n):
    return {k: v / n for k, v in delta.items()} if delta and n else None


def replica_rows(raw):
    """P1 detail through nginx on 1 and on 3 app processes: CPU µs/request summed over the
    processes, so the capacity model (replicas = rate × µs / 1e6 per core) can be checked."""
    rows = []
    for n in (1, 3):
        s = load(raw, f"rep{n}_detail.json")
        if not s:
            continue
        rows.append({"id": "P1x", "workload": f"GET /goods/{{id}} through nginx, {n} app process{'es' if n > 1 else ''}, 64 VUs",
                     "ours": metric(s, "http_reqs", "rate"), "unit": "req/s", "ceiling": "-", "ceiling_value": None,
                     "ratio": None, "target": "-", "pass": None,
                     "note": "CPU app = the sum over the app processes (nginx's own not counted); replicas share CPU 0",
                     "cpu_us_per_request": row_cpu(raw, f"rep{n}_detail")})
    return rows


def capacity(raw):
    out = {}
    try:
        with open(os.path.join(raw, "redis_mem.txt")) as f:
            before, after, joined = (int(x) for x in f.read().split()[:3])
        out["redis_waiting_users_joined"] = joined
        out["redis_bytes_per_waiting_user"] = (after - before) / joined if joined else None
    except (OSError, ValueError):
        pass
    out["join_cpu_us_per_request"] = row_cpu(raw, "mem_joins")
    try:
        with open(os.path.join(raw, "p2_stock_1.txt")) as f:
            sold = int(f.read().strip().split("|")[2])
        out["pg_per_flash_sale_order"] = per(pg_delta(raw, "p2_pg_1.txt"), sold)
        out["flash_sale_orders_measured"] = sold
    except (OSError, ValueError, IndexError):
        pass
    meta = load(raw, "p9_meta.json") or {}
    if meta.get("held_rate") is not None:
        st = step(raw, meta["held_rate"])
        out["pg_per_ticket_flow"] = per(st["pg"], st["completed"])
        out["ticket_flows_measured"] = st["completed"]
    return out


def capacity_markdown(cap):
    if not cap:
        return []

    def line(name, d):
        return f"| {name} | " + (" / ".join(f"{d[k]:.2f}" for k in ("xact_commit", "tup_inserted", "tup_updated", "tup_deleted"))
                                 if d else "—") + " |"
    return ["", "## Capacity figures (docs/capacity.md rests on these)", "",
            f"- Redis per waiting user: {cap.get('redis_bytes_per_waiting_user') or 0:,.1f} B "
            f"(INFO memory used_memory before and after {cap.get('redis_waiting_users_joined', 0):,} users joined a paused queue)",
            "", "| PostgreSQL per … (pg_stat_database deltas) | commits / rows inserted / updated / deleted |", "|---|---|",
            line(f"flash-sale order (P2 run 1, {cap.get('flash_sale_orders_measured', 0):,} orders, sold-out answers included)",
                 cap.get("pg_per_flash_sale_order")),
            line(f"completed ticket flow (P9 at the highest rate held, {cap.get('ticket_flows_measured', 0):,} flows)",
                 cap.get("pg_per_ticket_flow")), ""]
