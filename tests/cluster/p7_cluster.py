#!/usr/bin/env python3
"""P7 of `make bench` in cluster mode: the operator (release build) as the chart's
ServiceAccount against the real control plane of scripts/control-plane.sh, two release
`floodgate-app` processes standing in for the app Deployment's pods, a real Prometheus
scraping them (apps.py). Measures, over several runs:

  apply  `kubectl patch` of a QueueConfig (maxActiveUsers) -> the new runtime config version
         in `<prefix>config:applied` for every app process (polled every 5 ms). Timed from the
         moment `kubectl patch` is started (also reported: from when it returned, i.e. the API
         server accepted the change). Target <= 1 s.
  scale  100 queue joins (minted access tokens, 16 concurrent, spread over both processes)
         -> the Deployment's spec.replicas changes (`kubectl get --watch`, timestamped as each
         event arrives). Timed from the moment the first join is sent (also reported: from when
         the last join was answered, and from when the Prometheus-visible depth first crossed
         the threshold, polled every 50 ms). Each run sends its joins at a random point of the
         operator's 2 s resync cycle. Target <= 2 s.

Writes <raw>/p7c_apply.json, <raw>/p7c_scale.json and <raw>/p7c_meta.json (read by
scripts/bench_report.py), logs into --work. Run by scripts/bench.sh (BENCH_ONLY=P7 works) with
the chart venv's python:

    .data/venv-chart/bin/python tests/cluster/p7_cluster.py --bin target/release --raw .data/bench/raw --runs 8

Environment: REDIS_URL and DATABASE_URL (bench.sh's private services), FLOODGATE_JWT_SECRET.
"""

from __future__ import annotations

import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.append(str(HERE))  # conftest, apps

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import secrets  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta, timezone  # noqa: E402

import conftest  # noqa: E402


import apps as P  # noqa: E402

DEPLOYMENT = "floodgate-app"
START_REPLICAS = 2
WAITING_PER_REPLICA = 10
JOINS = 100
THRESHOLD = WAITING_PER_REPLICA * START_REPLICAS + 1  # the depth that makes desired > 2


def log(msg: str) -> None:
    print(f"[p7-cluster] {msg}", file=sys.stderr, flush=True)


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def queue_config(name: str, max_active: int = 1) -> dict:
    return {"apiVersion": "floodgate.dev/v1alpha1", "kind": "QueueConfig", "metadata": {"name": name},
            "spec": {"queueId": name, "maxActiveUsers": max_active, "admitPerMinute": 1,
                     "sessionTtl": "10m", "tokenTtl": "2h", "abandonAfter": "5m"}}


def campaign(name: str, queue: str, prometheus: str) -> dict:
    now = datetime.now(timezone.utc)
    return {"apiVersion": "floodgate.dev/v1alpha1", "kind": "Campaign", "metadata": {"name": name},
            "spec": {"target": {"deployment": DEPLOYMENT},
                     "schedule": {"startsAt": rfc3339(now - timedelta(minutes=1)),
                                  "endsAt": rfc3339(now + timedelta(hours=1)), "prewarm": "1m"},
                     "queues": [queue],
                     "scaling": {"minReplicas": START_REPLICAS, "maxReplicas": 40,
                                 "waitingPerReplica": WAITING_PER_REPLICA, "p95Target": "250ms",
                                 "latencyMaxReplicas": START_REPLICAS,
                                 "metrics": {"prometheus": {"url": prometheus}, "window": "30s"}}}}


class ReplicaWatch:
    """`kubectl get deployment --watch`: the arrival time of every spec.replicas it reports."""

    def __init__(self, cp, namespace: str):
        self.events: list[tuple[float, int]] = []
        self.cond = threading.Condition()
        self.proc = subprocess.Popen(
            [str(cp.bin / "kubectl"), "get", "deployment", DEPLOYMENT, "-n", namespace, "--watch",
             "-o", "jsonpath={.spec.replicas}{\"\\n\"}"],
            env=cp.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            t = time.monotonic()
            if line.strip().isdigit():
                with self.cond:
                    self.events.append((t, int(line.strip())))
                    self.cond.notify_all()

    def first(self, pred, after: float, timeout: float) -> tuple[float, int] | None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                hit = next(((t, v) for t, v in self.events if t >= after and pred(v)), None)
                if hit or time.monotonic() >= deadline:
                    return hit
                self.cond.wait(min(0.05, max(0.0, deadline - time.monotonic())))

    def stop(self):
        conftest.terminate(self.proc, wait=5)


class DepthPoll:
    """Polls the Prometheus-visible queue depth every 50 ms; records when it crosses."""

    def __init__(self, prometheus, query: str, threshold: float):
        self.prometheus, self.query, self.threshold = prometheus, query, threshold
        self.crossed: float | None = None
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopped.is_set() and self.crossed is None:
            try:
                v = self.prometheus.scalar(self.query)
                if v is not None and v >= self.threshold:
                    self.crossed = time.monotonic()
            except Exception:  # noqa: BLE001 - a failed poll is retried
                pass
            self.stopped.wait(0.05)

    def stop(self):
        self.stopped.set()
        self.thread.join(2)


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "max": max(values), "min": min(values), "n": len(values)} \
        if values else {"median": None, "max": None, "min": None, "n": 0}


def measure_apply(cp, ns: str, plat, runs: int) -> list[dict]:
    pods = [a.pod for a in plat.apps]
    cp.apply([queue_config("p7-apply")], "-n", ns)
    P.wait_for(lambda: (v := plat.published_version()) and all(plat.applied().get(p, 0) >= v for p in pods),
               timeout=30, message="the first runtime config was not applied by every app process")
    out = []
    for i in range(runs):
        before = plat.published_version()
        t0 = time.monotonic()
        cp.kubectl("patch", "queueconfig", "p7-apply", "-n", ns, "--type", "merge",
                   "-p", json.dumps({"spec": {"maxActiveUsers": 2 + i}}))
        t_accepted = time.monotonic()
        done, version = None, None
        while time.monotonic() - t0 < 15:
            v = plat.published_version()
            if v > before and all(plat.applied().get(p, 0) >= v for p in pods):
                done, version = time.monotonic(), v
                break
            time.sleep(0.005)
        rec = {"run": i + 1, "version": version,
               "ms_from_patch_command": None if done is None else round((done - t0) * 1000, 1),
               "ms_from_api_accept": None if done is None else round((done - t_accepted) * 1000, 1),
               "kubectl_patch_ms": round((t_accepted - t0) * 1000, 1)}
        log(f"apply run {i + 1}: {rec}")
        out.append(rec)
        time.sleep(0.5)
    cp.kubectl("delete", "queueconfig", "p7-apply", "-n", ns, "--wait=true", "--timeout=30s", check=False)
    return out


def campaign_reconciles(op) -> float:
    try:
        return conftest.metric(op.metrics(), "floodgate_operator_reconciles_total", {"kind": "Campaign"}) or 0.0
    except Exception:  # noqa: BLE001 - a diagnostic only
        return float("nan")


def measure_scale(cp, ns: str, plat, op, runs: int) -> list[dict]:
    out = []
    first_user = 50_000_000
    for i in range(runs):
        q, name = f"p7-q{i}", f"p7-{i}"
        cp.apply([queue_config(q), campaign(name, q, plat.prometheus.url)], "-n", ns)

        def at_rest():
            st = cp.get("campaign", name, "-n", ns).get("status") or {}
            obs, rep = st.get("observed") or {}, st.get("replicas") or {}
            return (st.get("phase") == "Active" and rep.get("desired") == START_REPLICAS
                    and not obs.get("waiting")
                    and all(a.queue(q).get("max_active") == 1 for a in plat.apps))
        P.wait_for(at_rest, timeout=30, message=f"campaign {name} not Active at rest with its queue applied")
        # at least one regular resync at rest; how often the operator reconciles meanwhile tells
        # a 2 s resync (0.5/s) from a reconcile loop driven by its own status writes
        r0, t_r0 = campaign_reconciles(op), time.monotonic()
        time.sleep(2.5)
        rest_rate = (campaign_reconciles(op) - r0) / (time.monotonic() - t_r0)
        # The wait above starts when a status write was seen, i.e. just after a reconcile: without
        # a random offset every run would send its joins at the same point of the 2 s resync
        # cycle and the median would measure that one phase, not the reaction time.
        offset = random.uniform(0, 2.0)
        time.sleep(offset)
        watch = ReplicaWatch(cp, ns)
        assert watch.first(lambda v: v == START_REPLICAS, 0, 10), "kubectl get --watch printed nothing"
        tokens = plat.tokens(JOINS, first_user=first_user)
        first_user += JOINS
        poll = DepthPoll(plat.prometheus, plat.waiting_query(q), THRESHOLD)
        t_send = time.monotonic()
        codes = plat.join(q, tokens, workers=16)
        t_sent = time.monotonic()
        hit = watch.first(lambda v: v != START_REPLICAS, t_send, 30)
        time.sleep(0.2)
        poll.stop()
        watch.stop()
        rec = {"run": i + 1, "joins": len(codes), "joins_ok": sum(c == 201 for c in codes),
               "joins_ms": round((t_sent - t_send) * 1000, 1),
               "replicas_after": hit[1] if hit else None,
               "ms_from_first_join_sent": round((hit[0] - t_send) * 1000, 1) if hit else None,
               "ms_from_last_join_answered": round((hit[0] - t_sent) * 1000, 1) if hit else None,
               "ms_from_prometheus_depth_over_threshold":
                   round((hit[0] - poll.crossed) * 1000, 1) if hit and poll.crossed else None,
               "prometheus_depth_crossed_ms_after_first_join":
                   round((poll.crossed - t_send) * 1000, 1) if poll.crossed else None,
               "campaign_reconciles_per_s_at_rest": round(rest_rate, 2),
               "random_offset_s": round(offset, 3)}
        log(f"scale run {i + 1}: {rec}")
        out.append(rec)
        cp.kubectl("delete", "campaign", name, "-n", ns, "--wait=true", "--timeout=30s", check=False)
        cp.kubectl("delete", "queueconfig", q, "-n", ns, "--wait=true", "--timeout=30s", check=False)
        P.wait_for(lambda: cp.get("deployment", DEPLOYMENT, "-n", ns)["spec"]["replicas"] == START_REPLICAS,
                   timeout=20, message="the finalizer did not restore the replica count between runs")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bin", default=str(conftest.REPO / "target" / "release"))
    ap.add_argument("--raw", required=True)
    ap.add_argument("--work", default=None, help="logs and Prometheus data (default: a temp folder)")
    ap.add_argument("--runs", type=int, default=8)
    args = ap.parse_args()
    bin_dir, raw = pathlib.Path(args.bin).resolve(), pathlib.Path(args.raw)
    raw.mkdir(parents=True, exist_ok=True)
    work = pathlib.Path(args.work) if args.work else pathlib.Path(os.environ.get("TMPDIR", "/tmp")) / f"p7c-{secrets.token_hex(3)}"
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for b in ("floodgate-app", "floodgate-operator"):
        P.require_binary(b, bin_dir / b)
    # conftest.Operator starts conftest.cargo_binary("floodgate-operator"): the release build here
    os.environ["FLOODGATE_OPERATOR_BIN"] = str(bin_dir / "floodgate-operator")
    os.environ["FLOODGATE_APP_BIN"] = str(bin_dir / "floodgate-app")
    redis_url = os.environ.get("REDIS_URL", conftest.REDIS_URL)
    database_url = os.environ.get("DATABASE_URL", conftest.DATABASE_URL)

    log("control plane up")
    cp = P.control_plane()
    cp.kubectl("apply", "-f", str(conftest.REPO / "crds"))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
               "crd/campaigns.floodgate.dev", "crd/queueconfigs.floodgate.dev")
    ns = f"bench-p7-{secrets.token_hex(3)}"
    cp.kubectl("create", "namespace", ns)
    P.wait_for(lambda: cp.kubectl("-n", ns, "get", "serviceaccount", "default", check=False).returncode == 0,
               timeout=20, message="the namespace's default ServiceAccount never appeared")
    plat, op, rbac = None, None, []
    try:
        cp.apply([P.app_deployment(DEPLOYMENT, START_REPLICAS)], "-n", ns)
        pods = P.pending_pod_names(cp, ns, DEPLOYMENT, START_REPLICAS)
        prefix = f"p7c-{secrets.token_hex(3)}:"
        launcher = ["taskset", "-c", "0"] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else []
        plat = P.Platform(namespace=ns, prefix=prefix, workdir=work / "platform", pods=pods,
                          queue_ids=["p7-apply", *[f"p7-q{i}" for i in range(args.runs)]],
                          redis_url=redis_url, database_url=database_url, app_binary=bin_dir / "floodgate-app",
                          jwt_secret=os.environ.get("FLOODGATE_JWT_SECRET") or secrets.token_hex(24),
                          launcher=launcher).start()
        log(f"apps {[a.url for a in plat.apps]} as pods {pods}; Prometheus {plat.prometheus.url}")
        docs = conftest.render_chart({}, ns)
        rbac = conftest.operator_rbac(docs)
        cp.apply(rbac)
        sa = next(d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount")
        kubeconfig = cp.service_account_kubeconfig(ns, sa, work / "operator.kubeconfig")
        # the chart's arguments for the operator container (as operator_factory passes them), then ours
        chart_args = conftest.operator_args(docs) if hasattr(conftest, "operator_args") else []
        op_args = chart_args + P.operator_extra_args(chart_args)
        op = conftest.Operator(kubeconfig=kubeconfig, log=work / "operator.log", lease_namespace=ns, prefix=prefix,
                               args=op_args, env={"REDIS_URL": redis_url, "RUST_LOG": "info,kube=warn"}).start()
        op.wait_ready(60)
        log(f"operator ready ({' '.join(op_args)})")

        apply_runs = measure_apply(cp, ns, plat, args.runs)
        (raw / "p7c_apply.json").write_text(json.dumps(apply_runs, indent=1))
        scale_runs = measure_scale(cp, ns, plat, op, args.runs)
        (raw / "p7c_scale.json").write_text(json.dumps(scale_runs, indent=1))
        meta = {"depth_source": P.QUEUE_DEPTH_SOURCE, "operator_args": op_args, "joins": JOINS,
                "threshold": THRESHOLD, "app_processes": len(plat.apps), "runs": args.runs,
                "forbidden": op.forbidden()[:5], "work": str(work)}
        (raw / "p7c_meta.json").write_text(json.dumps(meta, indent=1))
        a = summary([r["ms_from_patch_command"] for r in apply_runs if r["ms_from_patch_command"] is not None])
        s = summary([r["ms_from_first_join_sent"] for r in scale_runs if r["ms_from_first_join_sent"] is not None])
        log(f"QueueConfig patch -> applied by {len(plat.apps)} processes: median {a['median']} ms, max {a['max']} ms "
            f"({a['n']}/{args.runs} runs)")
        log(f"{JOINS} joins -> spec.replicas patched: median {s['median']} ms, max {s['max']} ms "
            f"({s['n']}/{args.runs} runs; depth source {P.QUEUE_DEPTH_SOURCE})")
        return 0 if a["n"] == args.runs and s["n"] == args.runs else 1
    finally:
        # while the operator runs: whatever a failed run left, so its finalizer restores and goes
        cp.kubectl("delete", "campaigns,queueconfigs", "--all", "-n", ns, "--wait=true", "--timeout=20s", check=False)
        if op:
            op.stop()
        if plat:
            plat.stop()
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        for d in rbac:
            if d["kind"] in ("ClusterRole", "ClusterRoleBinding"):
                cp.kubectl("delete", d["kind"].lower(), d["metadata"]["name"], "--wait=false", check=False)


if __name__ == "__main__":
    sys.exit(main())
