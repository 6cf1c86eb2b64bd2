"""The operator in cluster mode, end to end, as a platform team would run an event: a real app
Deployment (it never runs: no kubelet; real `floodgate-app` processes stand in for its pods,
see apps.py), a QueueConfig and a Campaign applied with kubectl, the operator started as
the chart's ServiceAccount with exactly the chart's RBAC (and the chart's arguments, so
`--watch-namespace`), p95 and queue depth read from a real Prometheus that also scrapes decoys
from another namespace and another Deployment, real queue joins with minted access tokens, a
real HPA, and a private redis-server whose memory settings the Campaign changes and the
operator puts back (after endsAt by the scale-down policy; on deletion at once).

Every step waits a bounded time and fails with what it saw.

    bash scripts/cluster-tests.sh -k lifecycle
    FLOODGATE_LIFECYCLE_SOFT=1 bash scripts/cluster-tests.sh -k lifecycle   # run every step,
        # report all the failed ones at the end (for triage; the default stops at the first)

The operator's queue-depth source is chosen in ONE place: apps.QUEUE_DEPTH_SOURCE.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import secrets
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

import conftest


import apps as P  # noqa: E402

platform_factory = P.platform_factory  # the fixture
wait_for = P.wait_for

DEPLOYMENT = "floodgate-app"  # the chart's app Deployment for release "floodgate"
ORIGINAL_MAXMEMORY = "1073741824"  # the private Redis starts with maxmemory 1gb ...
ORIGINAL_POLICY = "volatile-lru"  # ... and this policy (apps.Platform)
CAMPAIGN_MAXMEMORY, CAMPAIGN_MAXMEMORY_BYTES = "256mb", "268435456"
WAITING_PER_REPLICA = 10
SOFT = os.environ.get("FLOODGATE_LIFECYCLE_SOFT") == "1"


class Steps:
    """Named steps; strict by default (the first failure fails the test), or soft (every step
    runs, the failures are listed at the end) with FLOODGATE_LIFECYCLE_SOFT=1."""

    def __init__(self, context):
        self.failed: list[str] = []
        self.context = context

    def __call__(self, name: str, fn, *args, **kwargs):
        started = time.monotonic()
        try:
            value = fn(*args, **kwargs)
        except AssertionError as e:
            msg = f"step '{name}' failed after {time.monotonic() - started:.1f} s: {e}"
            if not SOFT:
                raise AssertionError(f"{msg}\n{self.context()}") from None
            print(f"FAILED {msg}", flush=True)
            self.failed.append(msg)
            return None
        print(f"ok     {name} ({time.monotonic() - started:.1f} s)", flush=True)
        return value

    def finish(self):
        assert not self.failed, (f"{len(self.failed)} step(s) failed:\n" + "\n".join(self.failed)
                                 + f"\n{self.context()}")


# ------------------------------------------------------------------------------------- helpers

def ensure(ok: bool, message: str) -> bool:
    if not ok:
        raise AssertionError(message)
    return True


def rfc3339(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def queue_config(name: str, queue_id: str, max_active: int) -> dict:
    return {
        "apiVersion": "floodgate.dev/v1alpha1", "kind": "QueueConfig", "metadata": {"name": name},
        # one admission a minute, one shopper at a time: everyone who joins waits
        "spec": {"queueId": queue_id, "maxActiveUsers": max_active, "admitPerMinute": 1,
                 "sessionTtl": "10m", "tokenTtl": "2h", "abandonAfter": "5m", "queueing": "fifo"},
    }


def campaign(name: str, queue: str, starts: datetime, ends: datetime, prewarm: str, prometheus: str,
             min_replicas: int, max_replicas: int, **scaling) -> dict:
    return {
        "apiVersion": "floodgate.dev/v1alpha1", "kind": "Campaign", "metadata": {"name": name},
        "spec": {
            "target": {"deployment": DEPLOYMENT},
            "schedule": {"startsAt": rfc3339(starts), "endsAt": rfc3339(ends), "prewarm": prewarm},
            "queues": [queue],
            "scaling": {
                "minReplicas": min_replicas, "maxReplicas": max_replicas,
                "waitingPerReplica": WAITING_PER_REPLICA, "p95Target": "250ms",
                # latency may not add replicas here: the replica count follows the queue alone
                "latencyMaxReplicas": min_replicas,
                "metrics": {"prometheus": {"url": prometheus}, "window": "30s"},
                **scaling,
            },
            "redis": {"maxmemory": CAMPAIGN_MAXMEMORY, "maxmemoryPolicy": "noeviction"},
        },
    }


def hpa(name: str) -> dict:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": DEPLOYMENT},
            # wide bounds: with no metrics server the HPA controller never changes the count
            "minReplicas": 1, "maxReplicas": 50,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                                                          "target": {"type": "Utilization", "averageUtilization": 80}}}],
        },
    }


class Cluster:
    """kubectl reads of one namespace."""

    def __init__(self, cp, namespace: str):
        self.cp, self.ns = cp, namespace

    def obj(self, kind: str, name: str) -> dict | None:
        proc = self.cp.kubectl("get", kind, name, "-n", self.ns, "-o", "json", check=False)
        if proc.returncode != 0:
            if "NotFound" in proc.stderr:
                return None
            raise AssertionError(f"kubectl get {kind} {name}: {proc.stderr}")
        return json.loads(proc.stdout)

    def status(self, kind: str, name: str) -> dict:
        o = self.obj(kind, name)
        return (o or {}).get("status") or {}

    def condition(self, kind: str, name: str, type_: str) -> dict:
        return next((c for c in self.status(kind, name).get("conditions", []) if c.get("type") == type_), {})

    def replicas(self) -> int:
        return self.cp.get("deployment", DEPLOYMENT, "-n", self.ns)["spec"]["replicas"]

    def replica_managers(self) -> list[dict]:
        d = self.cp.get("deployment", DEPLOYMENT, "-n", self.ns, "--show-managed-fields")
        return [m for m in d["metadata"].get("managedFields", [])
                if "f:replicas" in m.get("fieldsV1", {}).get("f:spec", {})]

    def events(self, name: str) -> list[dict]:
        # the operator writes events.k8s.io/v1 Events; the core/v1 view of the same objects
        items = self.cp.get("events", "-n", self.ns, "--field-selector", f"involvedObject.name={name}")["items"]
        return [{"type": e.get("type"), "reason": e.get("reason"), "message": e.get("message")} for e in items]

    def describe(self, kind: str, name: str) -> str:
        return self.cp.kubectl("describe", kind, name, "-n", self.ns).stdout


class FieldWatch:
    """`kubectl get <kind> <name> --watch -o jsonpath=<path>`: every distinct value of one
    field, in order, as the API server reports it."""

    def __init__(self, cp, namespace: str, kind: str, name: str, jsonpath: str):
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [str(cp.bin / "kubectl"), "get", kind, name, "-n", namespace, "--watch",
             "-o", f"jsonpath={{{jsonpath}}}{{\"\\n\"}}"],
            env=cp.env(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            value = line.strip()
            if value and (not self.seen or self.seen[-1] != value):
                self.seen.append(value)

    def stop(self):
        conftest.terminate(self.proc, wait=5)


def redis_note(plat) -> str:
    """CONFIG GET maxmemory / policy, and whose values they are."""
    got = (plat.redis.config_get("maxmemory"), plat.redis.config_get("maxmemory-policy"))
    whose = {(ORIGINAL_MAXMEMORY, ORIGINAL_POLICY): "the original values",
             (CAMPAIGN_MAXMEMORY_BYTES, "noeviction"): "this test's Campaign's values"}.get(
        got, "neither the original nor this Campaign's: another namespace's Campaign reconciled by this "
             "operator into this Redis (it watches every namespace without --watch-namespace)?")
    return f"CONFIG GET maxmemory {got[0]} maxmemory-policy {got[1]}: {whose}"


def expected_replicas(waiting: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, math.ceil(waiting / WAITING_PER_REPLICA)))


def start_event(cp, operator_factory, platform_factory, namespace: str, queue_id: str, qc_name: str):
    """The Deployment (2 replicas, Pending pods), the platform standing in for its pods, the
    QueueConfig, and the operator as the chart's ServiceAccount."""
    cp.apply([P.app_deployment(DEPLOYMENT, 2)], "-n", namespace)
    pods = P.pending_pod_names(cp, namespace, DEPLOYMENT, 2)
    plat = platform_factory(namespace, operator_factory.prefix, pods=pods, queue_ids=[queue_id])
    cp.apply([queue_config(qc_name, queue_id, max_active=1)], "-n", namespace)
    chart_args = conftest.operator_args(conftest.render_chart({}, namespace))
    extra = P.operator_extra_args(chart_args)
    op = operator_factory(namespace, args=extra, env={"REDIS_URL": plat.redis_url})
    print(f"       operator: controller {' '.join(chart_args + extra)}", flush=True)
    op.wait_ready(60)
    return plat, op


def context_of(op, plat, k: Cluster, campaign_name: str):
    def context() -> str:
        parts = []
        try:
            parts.append("--- campaign status\n" + json.dumps(k.status("campaign", campaign_name), indent=1)[:3000])
        except Exception as e:  # noqa: BLE001
            parts.append(f"--- campaign status unavailable: {e}")
        parts.append("--- operator log (tail)\n" + re.sub(r"\x1b\[[0-9;]*m", "", op.log_text())[-3000:])
        parts.append(plat.logs())
        return "\n".join(parts)
    return context


# --------------------------------------------------------------------------------------- tests

def test_campaign_lifecycle_scales_publishes_conflicts_and_restores(cp, operator_factory, namespace, platform_factory):
    k = Cluster(cp, namespace)
    queue_id = f"doors-{secrets.token_hex(3)}"
    plat, op = start_event(cp, operator_factory, platform_factory, namespace, queue_id, "doors")
    name, lo, hi = "launch", 3, 8
    step = Steps(context_of(op, plat, k, name))

    # -- the QueueConfig is published and applied by both app processes -----------------------
    def applied_by_both():
        st = k.status("queueconfig", "doors")
        applied = plat.applied()
        version = st.get("publishedVersion")
        ok = (st.get("appliedByReplicas") == 2 and version
              and all(applied.get(a.pod, 0) >= version for a in plat.apps))
        return (st, applied) if ok else None
    step("QueueConfig applied by both app processes (status.appliedByReplicas == 2)",
         wait_for, applied_by_both, timeout=30,
         message="status.appliedByReplicas never reached 2 with both pods' config:applied at the published version")

    # -- Scheduled -> Prewarming -> Active ---------------------------------------------------
    now = datetime.now(timezone.utc)
    starts = now + timedelta(seconds=20)
    # After endsAt the operator steps down with the scale-down policy (not straight back):
    # a short one here, and a panic threshold the 3 -> 6 burst stays under (no panic hold).
    # KPA windows shorter than the 2 s resync: each read recommends as it is (no 60 s
    # average), so the replicas follow ceil(waiting / 10) within seconds.
    quick_step_down = {"scaleDown": {"stabilization": "0s", "maxStep": {"pods": 2, "percent": 10, "period": "2s"}},
                       "panic": {"window": "1s", "stableWindow": "2s", "threshold": 10}}
    cp.apply([campaign(name, "doors", starts, now + timedelta(hours=1), "10s", plat.prometheus.url, lo, hi,
                       **quick_step_down)], "-n", namespace)
    phases = FieldWatch(cp, namespace, "campaign", name, ".status.phase")
    try:
        step("Campaign Scheduled (prewarm starts in ~10 s)", wait_for,
             lambda: k.status("campaign", name).get("phase") == "Scheduled", timeout=8,
             message="status.phase never became Scheduled")
        step("Campaign Prewarming at startsAt - prewarm", wait_for,
             lambda: k.status("campaign", name).get("phase") == "Prewarming", timeout=20,
             message="status.phase never became Prewarming")
        step(f"prewarm scales the Deployment 2 -> minReplicas {lo}", wait_for,
             lambda: k.replicas() == lo, timeout=6,
             message=f"Deployment spec.replicas never became minReplicas {lo} while Prewarming")

        def operator_owns_replicas():
            managers = k.replica_managers()
            return managers if any(m["manager"] == "floodgate-operator" and m.get("subresource") == "scale"
                                   for m in managers) else None
        step("managedFields: manager floodgate-operator owns spec.replicas (scale subresource)",
             wait_for, operator_owns_replicas, timeout=3,
             message="no managedFields entry of floodgate-operator (subresource scale) with f:spec.f:replicas")
        step("status.replicas.before records the pre-campaign 2", wait_for,
             lambda: (k.status("campaign", name).get("replicas") or {}).get("before") == 2, timeout=4,
             message="status.replicas.before is not 2")

        def redis_set():
            got = (plat.redis.config_get("maxmemory"), plat.redis.config_get("maxmemory-policy"))
            return got if got == (CAMPAIGN_MAXMEMORY_BYTES, "noeviction") else None
        step("Redis maxmemory 256mb / noeviction set (CONFIG GET)", wait_for, redis_set, timeout=6,
             message=lambda: "CONFIG GET never showed the Campaign's values; now " + redis_note(plat))
        step("RedisConfigured=True", wait_for,
             lambda: k.condition("campaign", name, "RedisConfigured").get("status") == "True", timeout=4,
             message="RedisConfigured is not True")

        step("Campaign Active at startsAt", wait_for,
             lambda: k.status("campaign", name).get("phase") == "Active", timeout=20,
             message="status.phase never became Active")

        # -- real joins load both apps; depth and p95 observed, the Deployment follows --------
        codes = plat.join(queue_id, plat.tokens(55))
        assert all(c == 201 for c in codes), f"joins answered {sorted(set(codes))}"
        prom_waiting = step("Prometheus sees the queue through the app pods (not the decoys)", wait_for,
                            lambda: (v := plat.prometheus.scalar(plat.waiting_query(queue_id))) and v >= 50 and v,
                            timeout=10, message=f"{plat.waiting_query(queue_id)} never reached 50")
        assert prom_waiting is None or prom_waiting < P.DECOY_WAITING

        def observed():
            st = k.status("campaign", name)
            obs = st.get("observed") or {}
            return st if (obs.get("waiting") or 0) >= 50 else None
        st = step("status.observed.waiting reflects the joins (>= 50 waiting)", wait_for, observed, timeout=10,
                  message="status.observed.waiting never reached 50")

        def p95_present():
            p95 = (k.status("campaign", name).get("observed") or {}).get("p95")
            return p95 if p95 and re.fullmatch(r"\d+ms", p95) else None
        p95 = step("status.observed.p95 read from Prometheus", wait_for, p95_present, timeout=10,
                   message="status.observed.p95 is not '<n>ms'")
        if p95:
            step("p95 scoped to this namespace's app pods (the decoys report 10 s+)", ensure,
                 int(p95[:-2]) < 1000, f"p95 {p95}: the decoys' latency was counted (PromQL not scoped)")
        w = (k.status("campaign", name).get("observed") or {}).get("waiting") or 0
        step("waiting is the app's count, not a decoy's", ensure, w < P.DECOY_WAITING,
             f"waiting {w}: a decoy's queue was counted")
        step("MetricsAvailable=True", wait_for,
             lambda: k.condition("campaign", name, "MetricsAvailable").get("status") == "True", timeout=6,
             message=lambda: f"MetricsAvailable is {k.condition('campaign', name, 'MetricsAvailable')}")

        def scaled_to_queue():
            st = k.status("campaign", name)
            waiting = (st.get("observed") or {}).get("waiting") or 0
            want = expected_replicas(waiting, lo, hi)
            return (waiting, want) if waiting >= 50 and k.replicas() == want else None
        got = step(f"Deployment scaled to ceil(waiting / {WAITING_PER_REPLICA}) within [{lo}, {hi}]", wait_for,
                   scaled_to_queue, timeout=10,
                   message=lambda: f"spec.replicas ({k.replicas()}) never matched ceil(waiting / {WAITING_PER_REPLICA}); "
                           f"status {k.status('campaign', name).get('observed')} {k.status('campaign', name).get('replicas')}")
        if got:
            print(f"       waiting {got[0]} -> {got[1]} replicas", flush=True)

        # -- the QueueConfig edit reaches both running apps ---------------------------------
        version_before = k.status("queueconfig", "doors").get("publishedVersion") or 0
        cp.kubectl("patch", "queueconfig", "doors", "-n", namespace, "--type", "merge",
                   "-p", json.dumps({"spec": {"maxActiveUsers": 5}}))
        step("edited maxActiveUsers 1 -> 5 is the runtime config of both app processes", wait_for,
             lambda: all(a.queue(queue_id).get("max_active") == 5 for a in plat.apps), timeout=5,
             message="GET /api/v1/queues/<id> does not report max_active 5 on every app process")

        def new_version_applied():
            st = k.status("queueconfig", "doors")
            v = st.get("publishedVersion") or 0
            return st if v > version_before and st.get("appliedByReplicas") == 2 else None
        step("QueueConfig status: new publishedVersion applied by 2 replicas", wait_for, new_version_applied,
             timeout=20, message=f"publishedVersion never passed {version_before} with appliedByReplicas 2")

        # -- a real HPA on the same Deployment: the Campaign refuses --------------------------
        cp.apply([hpa("app-cpu")], "-n", namespace)
        step("an HPA on the Deployment: Conflict=True", wait_for,
             lambda: k.condition("campaign", name, "Conflict").get("status") == "True", timeout=10,
             message=lambda: f"Conflict is {k.condition('campaign', name, 'Conflict')}")
        step("a Warning Event 'Conflict' on the Campaign", wait_for,
             lambda: [e for e in k.events(name) if e["type"] == "Warning" and e["reason"] == "Conflict"],
             timeout=6, message="no Warning Event with reason Conflict")

        def described():
            text = k.describe("campaign", name)
            wanted = ["Conditions", "MetricsAvailable", "Conflict", "Events:", "Scaled"]
            return text if all(w in text for w in wanted) and re.search(r"Warning\s+Conflict", text) else None
        step("kubectl describe campaign shows the conditions and Events", wait_for, described, timeout=6,
             message="kubectl describe lacks Conditions / Events (Scaled, Warning Conflict)")
        cp.kubectl("delete", "hpa", "app-cpu", "-n", namespace)
        step("HPA deleted: Conflict=False", wait_for,
             lambda: k.condition("campaign", name, "Conflict").get("status") == "False", timeout=10,
             message=lambda: f"Conflict is {k.condition('campaign', name, 'Conflict')}")

        # -- endsAt moved to now: Ended, replicas and Redis restored ---------------------------
        trail = FieldWatch(cp, namespace, "deployment", DEPLOYMENT, ".spec.replicas")
        wait_for(lambda: trail.seen, timeout=5, message="kubectl get deployment --watch printed nothing")
        cp.kubectl("patch", "campaign", name, "-n", namespace, "--type", "merge", "-p",
                   json.dumps({"spec": {"schedule": {"endsAt": rfc3339(datetime.now(timezone.utc) + timedelta(seconds=2))}}}))
        step("Campaign Ended at the new endsAt", wait_for,
             lambda: k.status("campaign", name).get("phase") == "Ended", timeout=15,
             message="status.phase never became Ended")
        def stepped_down():
            deadline = time.monotonic() + 25
            while time.monotonic() < deadline and trail.seen[-1] != "2":
                time.sleep(0.2)
            trail.stop()
            seen = [int(v) for v in trail.seen]
            ensure(seen[-1] == 2, f"replicas went {seen} in 25 s, never back to the pre-campaign 2")
            ensure(all(0 < a - b <= 2 for a, b in zip(seen, seen[1:])),
                   f"replicas went {seen}: more than the scale-down step (2 pods a period) at once")
            return seen
        seen = step("Ended: the Deployment steps down to its pre-campaign 2 replicas by the scale-down policy",
                    stepped_down)
        if seen:
            print(f"       replicas after endsAt: {' -> '.join(map(str, seen))}", flush=True)

        def redis_restored():
            got = (plat.redis.config_get("maxmemory"), plat.redis.config_get("maxmemory-policy"))
            return got if got == (ORIGINAL_MAXMEMORY, ORIGINAL_POLICY) else None
        step("Ended: Redis maxmemory / policy restored (CONFIG GET; the data fits)", wait_for, redis_restored, timeout=8,
             message=lambda: "not the original maxmemory 1gb / volatile-lru; " + redis_note(plat))
        step("a Restored Event", wait_for, lambda: [e for e in k.events(name) if e["reason"] == "Restored"],
             timeout=6, message="no Restored Event")
        step("Ready=True/Ended once the originals are back", wait_for,
             lambda: (c := k.condition("campaign", name, "Ready")).get("status") == "True" and c.get("reason") == "Ended",
             timeout=6, message=lambda: f"Ready is {k.condition('campaign', name, 'Ready')}")
        step("phases seen in order Scheduled -> Prewarming -> Active -> Ended", wait_for,
             lambda: phases.seen[:4] == ["Scheduled", "Prewarming", "Active", "Ended"] and phases.seen,
             timeout=3, message=lambda: f"kubectl get --watch saw phases {phases.seen}")
    finally:
        phases.stop()

    # -- deletion: the finalizer runs and the object goes -------------------------------------
    cp.kubectl("delete", "campaign", name, "-n", namespace, "--wait=false")
    step("deleted Campaign disappears (finalizer removed)", wait_for, lambda: k.obj("campaign", name) is None,
         timeout=15, message="the Campaign still exists (finalizer not removed)")
    replicas = k.replicas()
    step("replicas stay 2 after the deletion", ensure, replicas == 2, f"spec.replicas {replicas}")
    step.finish()


def test_deleting_a_live_campaign_restores_replicas_and_redis(cp, operator_factory, namespace, platform_factory):
    k = Cluster(cp, namespace)
    queue_id = f"drop-{secrets.token_hex(3)}"
    plat, op = start_event(cp, operator_factory, platform_factory, namespace, queue_id, "drop")
    name, lo, hi = "flash", 4, 6
    step = Steps(context_of(op, plat, k, name))
    now = datetime.now(timezone.utc)
    cp.apply([campaign(name, "drop", now - timedelta(minutes=1), now + timedelta(hours=1), "1m",
                       plat.prometheus.url, lo, hi)], "-n", namespace)
    step("Campaign Active", wait_for, lambda: k.status("campaign", name).get("phase") == "Active", timeout=10,
         message="status.phase never became Active")
    step(f"Deployment 2 -> minReplicas {lo}", wait_for, lambda: k.replicas() == lo, timeout=8,
         message="spec.replicas never became minReplicas")
    step("Redis maxmemory 256mb / noeviction set", wait_for,
         lambda: (plat.redis.config_get("maxmemory"), plat.redis.config_get("maxmemory-policy"))
         == (CAMPAIGN_MAXMEMORY_BYTES, "noeviction"), timeout=6,
         message=lambda: "CONFIG GET never showed the Campaign's values; now " + redis_note(plat))
    finalizers = (k.obj("campaign", name) or {}).get("metadata", {}).get("finalizers", [])
    step("the finalizer floodgate.dev/campaign is on the object", ensure,
         "floodgate.dev/campaign" in finalizers, f"finalizers {finalizers}")

    cp.kubectl("delete", "campaign", name, "-n", namespace, "--wait=false")
    step("deleted Campaign disappears (the finalizer ran)", wait_for, lambda: k.obj("campaign", name) is None,
         timeout=20, message="the Campaign still exists")
    step("Deployment back to its pre-campaign 2 replicas", wait_for, lambda: k.replicas() == 2, timeout=5,
         message=lambda: f"spec.replicas is {k.replicas()}, not 2")
    step("Redis maxmemory / policy back to the original 1gb / volatile-lru", wait_for,
         lambda: (plat.redis.config_get("maxmemory"), plat.redis.config_get("maxmemory-policy"))
         == (ORIGINAL_MAXMEMORY, ORIGINAL_POLICY), timeout=5,
         message=lambda: "not restored; " + redis_note(plat))
    step.finish()
