"""PostgreSQL's time per request of each statement in profile.sh's measured phase (#18).

Usage: profile_statements.py ROW HOT_ROW_TPS REQUESTS SECONDS FILE, where FILE holds
pg_stat_statements rows as `calls|rows|exec ms|plan ms|query` (psql -tAF'|'). Prints each
statement's execution and planning time divided by the requests the phase served and, for
the rows whose target is a multiple of the hot-row ceiling (P2 10x, P5 5x), the CPU that
target leaves per request: on CPU 0, shared by the app, PostgreSQL and Redis, a rate of
k x the ceiling allows 1 s / (k x ceiling) for all three together.
"""
import sys

TARGETS = {"P2": 10.0, "P5": 5.0}


def parse(lines):
    out = []
    for line in lines:
        parts = line.rstrip("\n").split("|", 4)
        if len(parts) == 5:
            calls, rows, exec_ms, plan_ms, query = parts
            out.append((int(calls), int(rows), float(exec_ms), float(plan_ms), query))
    return out


def report(row, hot_tps, requests, seconds, statements):
    lines = []
    if row in TARGETS and hot_tps:
        k = TARGETS[row]
        rate = requests / seconds
        lines.append(f"{row}: hot row {hot_tps:,.0f} tps; {rate:,.0f} requests/s = {rate / hot_tps:.2f}x; "
                     f"{k:g}x leaves {1e6 / (k * hot_tps):.1f} us per request for the app, PostgreSQL and Redis")
    total = 0.0
    for calls, rows, exec_ms, plan_ms, query in statements:
        us = (exec_ms + plan_ms) * 1000 / max(requests, 1)
        total += us
        if us >= 0.1:
            lines.append(f"  {us:6.1f} us ({plan_ms * 1000 / max(requests, 1):4.1f} planning)  "
                         f"{calls} calls, {rows} rows  {query[:70]}")
    lines.append(f"  {total:6.1f} us per request in all statements ({requests} requests)")
    return "\n".join(lines)


if __name__ == "__main__":
    row, hot, requests, seconds, path = sys.argv[1:6]
    with open(path) as f:
        print(report(row, float(hot) if hot else None, int(requests), float(seconds), parse(f)))
