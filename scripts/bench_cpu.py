#!/usr/bin/env python3
"""CPU time of the bench's processes, for CPU microseconds per request (issue #18).

`bench_cpu.py snapshot APP_PID PG_PID REDIS_PID` prints one JSON line of clock ticks:
  app    utime+stime of the app process (all its threads),
  pg     the postmaster's own utime+stime, plus its cutime+cstime (backends that exited,
         reaped by the postmaster), plus utime+stime of every live process whose parent is
         the postmaster (backends, background workers),
  redis  utime+stime of redis-server (all its threads),
  at     the wall clock (seconds).
APP_PID may be a comma-separated list (replicas: the sum). A pid of 0 or one that is gone
reads as null. bench_report.py turns two snapshots around a
run into microseconds per request with `per_request`.

`bench_cpu.py child OUT CMD...` runs CMD (its output passes through) and writes the CPU
seconds it and its children used, {"user": s, "sys": s}, to OUT: a load generator's own
cost (P6), which `generator_cpu` divides by the requests of the run."""
import glob
import json
import os
import re
import statistics
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def stat_fields(pid):
    """The fields of /proc/PID/stat after the command name (field 3 onwards), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # the command name is in parentheses and may hold spaces: split after the last ')'
    return text[text.rindex(")") + 2:].split()


def own_ticks(fields):
    # fields[0] is field 3 (state): utime is field 14, stime 15, cutime 16, cstime 17
    return int(fields[11]) + int(fields[12])


def process_ticks(pids):
    """The sum over a comma-separated list of pids (the app's replicas), None if any is gone."""
    total = 0
    for pid in str(pids or "").split(","):
        fields = stat_fields(pid) if pid and pid != "0" else None
        if not fields:
            return None
        total += own_ticks(fields)
    return total


def postgres_ticks(postmaster):
    fields = stat_fields(postmaster) if postmaster else None
    if not fields:
        return None
    total = own_ticks(fields) + int(fields[13]) + int(fields[14])
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        child = stat_fields(entry)
        if child and int(child[1]) == int(postmaster):
            total += own_ticks(child)
    return total


def snapshot(app_pid, pg_pid, redis_pid):
    return {"app": process_ticks(app_pid), "pg": postgres_ticks(pg_pid), "redis": process_ticks(redis_pid),
            "at": time.time(), "tick_hz": TICK}


def per_request(before, after, requests):
    """{app, pg, redis, total}: microseconds of CPU per request between two snapshots; a
    part whose process was not measured is None (and total is None with it)."""
    if not before or not after or not requests:
        return None
    out = {}
    for part in ("app", "pg", "redis"):
        b, a = before.get(part), after.get(part)
        out[part] = None if b is None or a is None else (a - b) * 1e6 / before.get("tick_hz", TICK) / requests
    parts = [out[p] for p in ("app", "pg", "redis")]
    out["total"] = None if None in parts else sum(parts)
    return out


def requests_served(raw, tag):
    """Requests of the run whose raw output is TAG.json (a floodgate-loadtest summary) or
    TAG.txt (wrk's "N requests in"), or None."""
    path = os.path.join(raw, tag)
    try:
        with open(path + ".json") as f:
            return json.load(f)["metrics"]["http_reqs"]["values"]["count"]
    except (OSError, ValueError, KeyError):
        pass
    try:
        with open(path + ".txt") as f:
            m = re.search(r"(\d+) requests in", f.read())
        return int(m.group(1)) if m else None
    except OSError:
        return None


def run_cpu(raw, tag):
    """Microseconds per request of one run: its two snapshots (cpu_TAG.jsonl) over its
    requests, or None when either is missing."""
    try:
        with open(os.path.join(raw, f"cpu_{tag}.jsonl")) as f:
            marks = [json.loads(line) for line in f if line.strip()]
    except (OSError, ValueError):
        return None
    if len(marks) != 2:
        return None
    return per_request(marks[0], marks[1], requests_served(raw, tag))


def row_cpu(raw, pattern):
    """The median per part over the runs whose tags match PATTERN (a glob on the tag, e.g.
    p1_list_*): {app, pg, redis, total, runs}, or None when no run was measured."""
    tags = sorted(os.path.basename(p)[4:-6] for p in glob.glob(os.path.join(raw, f"cpu_{pattern}.jsonl")))
    runs = [c for c in (run_cpu(raw, t) for t in tags) if c]
    if not runs:
        return None
    out = {}
    for part in ("app", "pg", "redis", "total"):
        values = [r[part] for r in runs if r[part] is not None]
        out[part] = statistics.median(values) if values else None
    out["runs"] = len(runs)
    return out


def idle_ms_per_s(raw):
    """{app, pg, redis}: milliseconds of CPU per second while nothing was sent (cpu_idle.jsonl)."""
    try:
        with open(os.path.join(raw, "cpu_idle.jsonl")) as f:
            a, b = [json.loads(line) for line in f if line.strip()][:2]
    except (OSError, ValueError):
        return None
    secs = b["at"] - a["at"]
    return {p: None if a.get(p) is None or b.get(p) is None else (b[p] - a[p]) * 1000 / a["tick_hz"] / secs
            for p in ("app", "pg", "redis")}


def generator_cpu(raw, pattern):
    """{user, sys, total}: the medians over the runs matching PATTERN (a glob on the tag, e.g.
    gen_ceiling_*) of the generator's own CPU microseconds per request (gencpu_TAG.json over
    the requests of TAG), or None when no run was measured."""
    runs = []
    for path in sorted(glob.glob(os.path.join(raw, f"gencpu_{pattern}.json"))):
        tag = os.path.basename(path)[len("gencpu_"):-len(".json")]
        requests = requests_served(raw, tag)
        try:
            with open(path) as f:
                used = json.load(f)
        except (OSError, ValueError):
            continue
        if requests:
            runs.append({k: used[k] * 1e6 / requests for k in ("user", "sys")})
    if not runs:
        return None
    out = {k: statistics.median(r[k] for r in runs) for k in ("user", "sys")}
    out["total"] = statistics.median(r["user"] + r["sys"] for r in runs)
    return out


def child(out, cmd):
    import resource
    import subprocess
    code = subprocess.run(cmd).returncode
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(out, "w") as f:
        json.dump({"user": used.ru_utime, "sys": used.ru_stime}, f)
    return code


def main():
    if sys.argv[1:2] == ["snapshot"]:
        app, pg, redis = sys.argv[2:5]
        print(json.dumps(snapshot(app, int(pg or 0), redis)))
    elif sys.argv[1:2] == ["child"] and len(sys.argv) > 3:
        sys.exit(child(sys.argv[2], sys.argv[3:]))
    else:
        sys.exit(f"usage: {sys.argv[0]} snapshot APP_PID PG_PID REDIS_PID | child OUT CMD...")


if __name__ == "__main__":
    main()
