#!/usr/bin/env python3
"""Run conditions of a bench run (issue #18): the load average before and after, and the
same-run ceilings against the best of the last full runs (docs/benchmarks/history.json).

A run is "not comparable" when the 1-minute load average before it started was above
MAX_LOAD, or when any ceiling is more than 15 % below the best of the last HISTORY runs for
that ceiling; its targets are then not judged (a busy machine depresses the ceilings and the
rows unevenly, which is how an earlier report came to show passes)."""
import json
import os

MAX_LOAD = 0.5
MAX_SHORTFALL = 0.15
HISTORY = 10
# the ceilings a row's target is a ratio to (Locust and the generator are context, not ceilings)
JUDGED = ("http_rps", "redis_eval_per_s", "pg_hot_row_tps", "pg_commit_tps")


def loadavg(raw, name):
    try:
        with open(os.path.join(raw, name)) as f:
            one, five = f.read().split()[:2]
        return {"1m": float(one), "5m": float(five)}
    except (OSError, ValueError):
        return None


def read_history(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def conditions(raw, ceilings, history):
    """{load_before, load_after, best_of_last, shortfall, comparable, reasons}."""
    before, after = loadavg(raw, "loadavg_before.txt"), loadavg(raw, "loadavg_after.txt")
    recent = history[-HISTORY:]
    best, shortfall, reasons = {}, {}, []
    for key in JUDGED:
        seen = [h["ceilings"].get(key) for h in recent if h.get("ceilings", {}).get(key)]
        if not seen or not ceilings.get(key):
            continue
        best[key] = max(seen)
        shortfall[key] = 1 - ceilings[key] / best[key]
        if shortfall[key] > MAX_SHORTFALL:
            reasons.append(f"{key} {ceilings[key]:,.0f} is {shortfall[key]:.0%} below the best of the last "
                           f"{len(recent)} full runs ({best[key]:,.0f})")
    if before is None:
        reasons.append("load average before the run not recorded")
    elif before["1m"] > MAX_LOAD:
        reasons.append(f"load average before the run {before['1m']:.2f} > {MAX_LOAD}")
    # the first full run has nothing to be below: it is judged on the load average alone
    return {"load_before": before, "load_after": after, "history_runs": len(recent), "best_of_last": best,
            "shortfall": shortfall, "comparable": not reasons, "reasons": reasons}


def record(path, generated_at, ceilings, conds):
    """Appends this full run's ceilings (and whether it was comparable) to the history."""
    history = read_history(path)
    history.append({"generated_at": generated_at, "ceilings": {k: ceilings.get(k) for k in JUDGED},
                    "load_before": conds["load_before"], "comparable": conds["comparable"]})
    with open(path, "w") as f:
        json.dump(history, f, indent=2)
        f.write("\n")


def markdown(conds):
    def load(v):
        return "not recorded" if v is None else f"{v['1m']:.2f} / {v['5m']:.2f}"
    verdict = ("**comparable**: targets judged" if conds["comparable"] else
               "**not comparable**: targets not judged (" + "; ".join(conds["reasons"]) + ")")
    lines = ["## Run conditions", "",
             f"- load average (1 / 5 min) before the run: {load(conds['load_before'])}; after: {load(conds['load_after'])}",
             f"- ceilings against the best of the last {conds['history_runs']} full runs "
             "(docs/benchmarks/history.json): " + (", ".join(
                 f"{k} {-s:+.0%}" for k, s in conds["shortfall"].items()) or "no history"),
             f"- {verdict}. A run is comparable when the 1-minute load average before it was at most "
             f"{MAX_LOAD} and no ceiling is more than {MAX_SHORTFALL:.0%} below the best of the last runs.",
             "- On 2 cores the app, PostgreSQL and Redis share CPU 0 (the load generator has CPU 1), so "
             "the rates are cost ratios against same-run ceilings, not capacity; the CPU microseconds "
             "per request are the figures that machine load barely moves.", ""]
    return lines
