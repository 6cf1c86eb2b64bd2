"""A restart of the operator in the middle of the scale-down window must not shrink the
Deployment early (#15): the decision's memory (the stabilization recommendations, step history,
panic, failed reads) lives in `status.decision` and a new operator process loads it.

Real signals as in test_operator_lifecycle.py: app processes stand in for the Deployment's
pods, users join a real waiting room, a real Prometheus scrapes the apps and the operator reads
queue depth from it. The signal drops when the QueueConfig admits everyone; the operator is
restarted 20 s into the 60 s scale-down window; no scale-down may happen before the window
(which cannot end before 60 s after the drop), and one must happen after it.

    bash scripts/cluster-tests.sh -k scaling_restart
"""

from __future__ import annotations

import json
import secrets
import signal
import time

import apps as P
import conftest
from conftest import wait_for

platform_factory = P.platform_factory  # the fixture

DEPLOYMENT = "floodgate-app"
WINDOW_S = 60
WAITING_PER_REPLICA = 10
JOINERS = 60  # -> 6 replicas


def queue_config(queue_id: str, max_active: int, per_minute: int) -> dict:
    return {"apiVersion": "floodgate.dev/v1alpha1", "kind": "QueueConfig", "metadata": {"name": "doors"},
            "spec": {"queueId": queue_id, "maxActiveUsers": max_active, "admitPerMinute": per_minute,
                     "sessionTtl": "10m", "tokenTtl": "2h", "abandonAfter": "5m", "queueing": "fifo"}}


def campaign(prometheus: str) -> dict:
    now = time.time()
    return {
        "apiVersion": "floodgate.dev/v1alpha1", "kind": "Campaign", "metadata": {"name": "sale"},
        "spec": {
            "target": {"deployment": DEPLOYMENT},
            "schedule": {"startsAt": conftest.iso(now - 60), "endsAt": conftest.iso(now + 3600), "prewarm": "1m"},
            "queues": ["doors"],
            "scaling": {
                "minReplicas": 2, "maxReplicas": 10, "waitingPerReplica": WAITING_PER_REPLICA,
                # latency stays out of it: the queue alone decides
                "p95Target": "5s", "latencyMaxReplicas": 2,
                # the legacy spellings, so an operator built before #15 reads this Campaign too
                "scaleDown": {"stabilization": f"{WINDOW_S}s",
                              "maxStep": {"pods": 10, "percent": 100, "period": "1s"}},
                # 2 -> 6 is no burst: no panic hold mixes into the window
                "panic": {"window": "2s", "stableWindow": "10s", "threshold": 10},
                "metrics": {"prometheus": {"url": prometheus}, "window": "10s"},
            },
        },
    }


def test_a_restart_mid_window_does_not_scale_down_early(cp, operator_factory, namespace, platform_factory):
    queue_id = f"doors-{secrets.token_hex(3)}"
    cp.apply([P.app_deployment(DEPLOYMENT, 2)], "-n", namespace)
    pods = P.pending_pod_names(cp, namespace, DEPLOYMENT, 2)
    plat = platform_factory(namespace, operator_factory.prefix, pods=pods, queue_ids=[queue_id])
    # one admission a minute for one shopper at a time: everyone who joins waits
    cp.apply([queue_config(queue_id, 1, 1)], "-n", namespace)
    chart_args = conftest.operator_args(conftest.render_chart({}, namespace))
    extra = P.operator_extra_args(chart_args)
    start = lambda: operator_factory(namespace, args=extra, env={"REDIS_URL": plat.redis_url})  # noqa: E731
    op = start()
    op.wait_ready(60)
    cp.apply([campaign(plat.prometheus.url)], "-n", namespace)

    def status() -> dict:
        return cp.get("campaign/sale", "-n", namespace).get("status") or {}

    def replicas() -> int:
        return cp.get(f"deployment/{DEPLOYMENT}", "-n", namespace)["spec"]["replicas"]

    def context() -> str:
        return (f"status: {json.dumps(status(), indent=1)[:2500]}\n--- operator log\n{op.log_text()[-2500:]}")

    wait_for("the QueueConfig published to both apps",
             lambda: all(v > 0 for v in plat.applied().values()) and len(plat.applied()) == 2, 30)
    codes = plat.join(queue_id, plat.tokens(JOINERS))
    assert all(c in (200, 201) for c in codes), codes
    want = JOINERS // WAITING_PER_REPLICA
    wait_for(f"{want} replicas from {JOINERS} waiting", lambda: replicas() == want, 60)
    assert not status().get("panic"), context()

    # Drop the signal: admit everyone. The window cannot end before WINDOW_S after this.
    dropped = time.time()
    cp.kubectl("-n", namespace, "patch", "queueconfig", "doors", "--type=merge",
               "-p", json.dumps({"spec": {"maxActiveUsers": 1000, "admitPerMinute": 60000}}))
    wait_for("waiting 0 in the status", lambda: (status().get("observed") or {}).get("waiting") == 0, 20)
    assert replicas() == want, context()

    # Restart mid-window: a new process with an empty memory of its own.
    time.sleep(max(0.0, dropped + 20 - time.time()))
    op.stop(signal.SIGTERM)
    op = start()
    op.wait_ready(60)
    seen = [(time.time() - dropped, replicas())]
    while time.time() < dropped + WINDOW_S:
        r = replicas()
        if r != seen[-1][1]:
            seen.append((time.time() - dropped, r))
        assert r == want, f"scaled {want} -> {r} {time.time() - dropped:.1f} s after the drop, inside the " \
                          f"{WINDOW_S} s window (restarted at 20 s): {seen}\n{context()}"
        time.sleep(0.2)
    # What the restarted process loaded: the recommendations of the window, in the status.
    runs = (status().get("decision") or {}).get("recommendations") or []
    assert any(r["replicas"] >= want for r in runs), f"no recommendation of {want} in status.decision: {runs}"
    # ... and after the window it does scale down (the test can see one).
    wait_for("the scale-down after the window", lambda: replicas() == 2, 45, every=0.5)
    took = time.time() - dropped
    print(f"       down to 2 {took:.1f} s after the drop (window {WINDOW_S} s, restarted at 20 s)")
    assert took >= WINDOW_S, took
