"""Defects only a real API server shows, each pinned by a test against the control plane:
the operator runs as the chart's ServiceAccount with exactly the chart's RBAC (any 403 fails
the test, see conftest.operator_factory)."""

from __future__ import annotations

import json
import time

import pytest

from conftest import (campaign, condition, delete_namespace, deployment, events, metric,
                      queue_config, render_chart, wait_for)

ACTIVE_RESYNC_S = 2
QUEUE_RESYNC_S = 10


def campaign_obj(cp, namespace, name="sale"):
    return cp.get(f"campaign/{name}", "-n", namespace)


def reconciles(op, kind: str) -> float:
    return metric(op.metrics(), "floodgate_operator_reconciles_total", {"kind": kind}) or 0


def test_reconciles_per_minute_equal_the_resync_rate(cp, operator_factory, namespace, private_redis):
    """Status writes must not trigger reconciles: during an Active campaign the operator
    reconciles once per resync (2 s), not once per status write (hundreds a minute)."""
    cp.apply([deployment("shop", 2)], "-n", namespace)
    cp.apply([queue_config("q1", maxActiveUsers=10),
              campaign("sale", "shop", queues=["q1"])], "-n", namespace)
    op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
    op.wait_ready()
    wait_for("the campaign to be Active", lambda: (campaign_obj(cp, namespace).get("status") or {}).get("phase") == "Active")
    time.sleep(3)
    c0, q0 = reconciles(op, "Campaign"), reconciles(op, "QueueConfig")
    window = 30
    time.sleep(window)
    campaigns, queues = reconciles(op, "Campaign") - c0, reconciles(op, "QueueConfig") - q0
    expected = window / ACTIVE_RESYNC_S
    assert campaigns <= expected * 1.5 + 2, f"{campaigns} Campaign reconciles in {window} s (resync every 2 s: ~{expected})"
    assert campaigns >= expected * 0.5, f"only {campaigns} Campaign reconciles in {window} s: resync not running"
    # the QueueConfig resyncs every 10 s, plus a nudge when a campaign naming it changes phase
    assert queues <= window / QUEUE_RESYNC_S * 2 + 2, f"{queues} QueueConfig reconciles in {window} s"


def test_missing_target_is_a_condition_and_recovers_when_the_deployment_appears(cp, operator_factory, namespace, private_redis):
    cp.apply([campaign("sale", "shop", min_replicas=3)], "-n", namespace)
    op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
    op.wait_ready()
    ready = wait_for("Ready=False/TargetNotFound",
                     lambda: (c := condition(campaign_obj(cp, namespace), "Ready")).get("reason") == "TargetNotFound" and c)
    assert ready["status"] == "False" and "shop" in ready["message"], ready
    warned = wait_for("a TargetNotFound Warning Event",
                      lambda: [e for e in events(cp, namespace, "sale") if e["reason"] == "TargetNotFound"])
    assert warned[0]["type"] == "Warning", warned
    described = cp.kubectl("-n", namespace, "describe", "campaign", "sale").stdout
    assert "TargetNotFound" in described, described

    t0 = time.monotonic()
    cp.apply([deployment("shop", 1)], "-n", namespace)
    wait_for("the Deployment scaled to minReplicas",
             lambda: cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 3, seconds=15)
    took = time.monotonic() - t0
    assert took <= 10, f"recovered {took:.1f} s after the Deployment appeared"
    assert condition(campaign_obj(cp, namespace), "Ready")["status"] == "True"
    # one warning per transition, not one per pass
    assert len([e for e in events(cp, namespace, "sale") if e["reason"] == "TargetNotFound"]) == 1


def test_a_scheduled_campaign_with_a_missing_target_is_not_ready(cp, operator_factory, namespace, private_redis):
    cp.apply([campaign("sale", "nowhere", starts_in=7200, ends_in=9000)], "-n", namespace)
    op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
    op.wait_ready()
    ready = wait_for("Ready=False while Scheduled",
                     lambda: (c := condition(campaign_obj(cp, namespace), "Ready")).get("reason") == "TargetNotFound" and c)
    assert campaign_obj(cp, namespace)["status"]["phase"] == "Scheduled"
    assert ready["status"] == "False"


def test_deleting_never_hangs_on_a_missing_target_or_a_dead_redis(cp, operator_factory, namespace, private_redis):
    cp.apply([deployment("shop", 2), deployment("short-lived", 2)], "-n", namespace)
    cp.apply([campaign("gone-target", "short-lived", min_replicas=3),
              campaign("dead-redis", "shop", redis={"maxmemory": "64mb", "maxmemoryPolicy": "noeviction"})],
             "-n", namespace)
    op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
    op.wait_ready()
    wait_for("both campaigns took over", lambda: (
        cp.get("deployment/short-lived", "-n", namespace)["spec"]["replicas"] == 3
        and private_redis.cli("config", "get", "maxmemory").endswith("67108864")))

    # the target vanishes under a live campaign, then the campaign is deleted
    cp.kubectl("-n", namespace, "delete", "deployment", "short-lived")
    cp.kubectl("-n", namespace, "delete", "campaign", "gone-target", "--wait=true", "--timeout=20s")
    # Redis dies under a live campaign, then the campaign is deleted
    private_redis.stop()
    cp.kubectl("-n", namespace, "delete", "campaign", "dead-redis", "--wait=true", "--timeout=30s")

    incomplete = {e["regarding"]["name"]: e for e in events(cp, namespace, "gone-target") + events(cp, namespace, "dead-redis")
                  if e["reason"] == "RestoreIncomplete"}
    assert set(incomplete) == {"gone-target", "dead-redis"}, incomplete
    assert incomplete["gone-target"]["type"] == "Warning" and "short-lived" in incomplete["gone-target"]["note"], incomplete
    assert "redis" in incomplete["dead-redis"]["note"].lower(), incomplete["dead-redis"]["note"]
    # the replicas it could restore, it did
    assert cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 2


def test_deleting_the_namespace_completes(cp, operator_factory, namespace, private_redis):
    """An app namespace deleted with a live Campaign in it: the operator (installed in its own
    namespace, watching all) runs the finalizer, so the namespace goes away."""
    ns = f"{namespace[:40]}-doomed"
    cp.kubectl("create", "namespace", ns)
    operator_factory.namespaces.add(ns)
    try:
        wait_for("default ServiceAccount", lambda: cp.kubectl("-n", ns, "get", "sa", "default", check=False).returncode == 0)
        cp.apply([deployment("shop", 2)], "-n", ns)
        cp.apply([queue_config("q1"), campaign("sale", "shop", queues=["q1"])], "-n", ns)
        op = operator_factory(namespace, values={"operator": {"watchAllNamespaces": True}},
                              env={"REDIS_URL": private_redis.url})
        op.wait_ready()
        wait_for("the campaign to scale", lambda: cp.get("deployment/shop", "-n", ns)["spec"]["replicas"] == 4)
        cp.kubectl("delete", "namespace", ns, "--wait=true", "--timeout=60s")
    finally:
        delete_namespace(cp, ns)


def test_originals_are_in_status_before_the_first_scale_patch(cp, operator_factory, namespace, private_redis):
    cp.apply([deployment("shop", 3)], "-n", namespace)
    since = cp.audit_offset()
    cp.apply([campaign("sale", "shop", min_replicas=6,
                       redis={"maxmemory": "32mb", "maxmemoryPolicy": "noeviction"})], "-n", namespace)
    op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
    op.wait_ready()
    wait_for("the scale patch", lambda: cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 6)
    time.sleep(1)
    audit = [e for e in cp.audit(since)
             if e.get("objectRef", {}).get("namespace") == namespace and e.get("stage") == "ResponseComplete"]
    scale = [i for i, e in enumerate(audit)
             if e["objectRef"].get("resource") == "deployments" and e["objectRef"].get("subresource") == "scale"
             and e["verb"] == "patch" and "floodgate-operator" in e["user"]["username"]]
    assert scale, "no scale patch by the operator in the audit log"
    first = scale[0]
    before_writes = [e for e in audit[:first]
                     if e["objectRef"].get("resource") == "campaigns" and e["objectRef"].get("subresource") == "status"
                     and e["responseStatus"]["code"] < 300]
    recorded = [json.dumps(e.get("requestObject", {})) for e in before_writes]
    assert any('"before": 3' in r or '"before":3' in r for r in recorded), (
        "no successful status write carrying replicas.before=3 before the first scale patch:\n" + "\n".join(recorded))
    assert any("redisBefore" in r for r in recorded), "redisBefore not recorded before acting"
    st = campaign_obj(cp, namespace)["status"]
    assert st["replicas"]["before"] == 3


EVICTING = ["volatile-lru", "volatile-lfu", "volatile-random", "volatile-ttl",
            "allkeys-lru", "allkeys-lfu", "allkeys-random"]


def test_every_evicting_redis_policy_is_refused(cp, operator_factory, namespace, private_redis):
    cp.apply([deployment("shop", 2)], "-n", namespace)
    cp.apply([campaign(f"sale-{p}", "shop", redis={"maxmemory": "64mb", "maxmemoryPolicy": p}) for p in EVICTING[:1]],
             "-n", namespace)
    op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
    op.wait_ready()
    for policy in EVICTING:
        name = f"sale-{policy}"
        cp.apply([campaign(name, "shop", redis={"maxmemory": "64mb", "maxmemoryPolicy": policy})], "-n", namespace)
        refused = wait_for(f"{policy} refused", lambda: (
            c := condition(campaign_obj(cp, namespace, name), "RedisConfigured")).get("reason") == "EvictionPolicyRefused" and c)
        print(policy, refused)
        assert refused["status"] == "False" and policy in refused["message"], refused
        assert private_redis.cli("config", "get", "maxmemory-policy").splitlines()[-1] == "noeviction"
        cp.kubectl("-n", namespace, "delete", "campaign", name, "--wait=true", "--timeout=20s")


def test_at_ends_at_the_step_down_follows_the_scale_down_policy(cp, operator_factory, namespace, private_redis):
    cp.apply([deployment("shop", 2)], "-n", namespace)
    private_redis.cli("config", "set", "maxmemory", "4mb")
    scaling = {"scaleDown": {"stabilization": "0s", "maxStep": {"pods": 2, "percent": 10, "period": "3s"}}}
    cp.apply([campaign("sale", "shop", min_replicas=8, max_replicas=8, scaling=scaling,
                       redis={"maxmemory": "64mb", "maxmemoryPolicy": "noeviction"})], "-n", namespace)
    op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
    op.wait_ready()
    wait_for("8 replicas", lambda: cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 8)
    wait_for("maxmemory 64mb", lambda: private_redis.cli("config", "get", "maxmemory").endswith("67108864"))
    # 8 MB of data: more than the 4 MB maxmemory to restore
    private_redis.cli("eval", "redis.call('set', KEYS[1], string.rep('x', 8*1024*1024)) return 1", "1", "ballast")

    # the scale-down step is relative to the count at the period's start (HPA's rule): let
    # the scale-up to 8 leave the 3 s period first, or going back to 2 at once is within it
    time.sleep(4)
    cp.kubectl("-n", namespace, "patch", "campaign", "sale", "--type=merge",
               "-p", json.dumps({"spec": {"schedule": {"endsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 1))}}}))
    seen = [8]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 40 and seen[-1] != 2:
        r = cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"]
        if r != seen[-1]:
            seen.append(r)
        time.sleep(0.1)
    assert seen[-1] == 2, f"never got back to 2: {seen}"
    steps = [a - b for a, b in zip(seen, seen[1:])]
    assert all(0 < s <= 2 for s in steps), f"stepped {seen}: more than 2 pods per period"
    assert seen == [8, 6, 4, 2], seen
    # maxmemory stays while 8 MB of data would not fit under 4 MB; restored once it fits
    deferred = wait_for("restore deferred", lambda: (c := condition(campaign_obj(cp, namespace), "RedisConfigured")).get("reason") == "RestoreDeferred" and c)
    assert deferred["status"] == "False", deferred
    assert private_redis.cli("config", "get", "maxmemory").endswith("67108864")
    private_redis.cli("del", "ballast")
    wait_for("maxmemory restored to 4mb", lambda: private_redis.cli("config", "get", "maxmemory").endswith("4194304"), seconds=20)


def test_one_operator_per_namespace_scope(cp, operator_factory, namespace, private_redis, tmp_path):
    """The chart's default scope is the release namespace: its operator leaves other
    namespaces' Campaigns alone, so two installs never merge into one Redis."""
    other = f"{namespace[:40]}-other"
    cp.kubectl("create", "namespace", other)
    operator_factory.namespaces.add(other)
    try:
        cp.apply([deployment("shop", 2)], "-n", other)
        cp.apply([queue_config("q1"), campaign("sale", "shop", queues=["q1"])], "-n", other)
        cp.apply([queue_config("q1")], "-n", namespace)
        op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
        op.wait_ready()
        wait_for("own QueueConfig published", lambda: "q1" in private_redis.cli("get", f"{op.prefix}config"))
        time.sleep(4)
        foreign = cp.get("campaign/sale", "-n", other)
        assert not foreign.get("status"), foreign.get("status")
        assert not foreign["metadata"].get("finalizers"), foreign["metadata"]
        assert cp.get("deployment/shop", "-n", other)["spec"]["replicas"] == 2
    finally:
        delete_namespace(cp, other)


def test_cluster_wide_duplicate_queue_ids_are_refused_not_merged(cp, operator_factory, namespace, private_redis):
    other = f"{namespace[:40]}-b"
    cp.kubectl("create", "namespace", other)
    operator_factory.namespaces.add(other)
    try:
        cp.apply([queue_config("tickets", maxActiveUsers=11)], "-n", namespace)
        cp.apply([queue_config("tickets", maxActiveUsers=22)], "-n", other)
        op = operator_factory(namespace, values={"operator": {"watchAllNamespaces": True}},
                              env={"REDIS_URL": private_redis.url})
        op.wait_ready()
        losers = wait_for("one DuplicateQueueId", lambda: [
            ns for ns in (namespace, other)
            if condition(cp.get("queueconfig/tickets", "-n", ns), "ConfigPublished").get("reason") == "DuplicateQueueId"])
        assert len(losers) == 1, losers
        doc = json.loads(private_redis.cli("get", f"{op.prefix}config"))
        published = json.dumps(doc)
        assert published.count('"tickets"') == 1, published
    finally:
        delete_namespace(cp, other)


def test_gitops_sync_does_not_reset_the_replicas_the_operator_set(cp, namespace, crds):
    """`helm template | kubectl apply` (Argo CD, Flux) on every sync: with the operator on,
    the chart must not carry the app's replica count, or each sync fights the operator."""
    docs = [d for d in render_chart({}, namespace) if d["kind"] not in ("Campaign", "QueueConfig")]
    app = next(d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-app"))
    assert "replicas" not in app["spec"], "the chart sets the app's replicas while the operator owns them"
    cp.apply(docs, "-n", namespace)
    name = app["metadata"]["name"]
    cp.kubectl("-n", namespace, "scale", f"deployment/{name}", "--replicas=7")
    cp.apply(docs, "-n", namespace)  # the next sync
    assert cp.get(f"deployment/{name}", "-n", namespace)["spec"]["replicas"] == 7


def test_a_prometheus_that_matches_no_series_is_unavailable_not_idle(cp, operator_factory, namespace, private_redis, tmp_path):
    """A real Prometheus that scrapes only some other namespace's app: the Campaign's scoped
    queries match no series, which must read as "unavailable" (MetricsAvailable=False, the
    fallback replicas) rather than as an idle app that may be scaled down to minReplicas."""
    import apps

    decoy = apps.DecoyExporter(["q1"]).start()
    prom = apps.Prometheus(tmp_path / "prometheus", [{
        "targets": [f"127.0.0.1:{decoy.port}"], "labels": {"namespace": f"{namespace}-elsewhere", "pod": "shop-5d8f7c9b6d-x2x4z"},
    }]).start()
    try:
        prom.wait_targets_up(1)
        cp.apply([deployment("shop", 6)], "-n", namespace)
        cp.apply([queue_config("q1"), campaign("sale", "shop", queues=["q1"], min_replicas=2, max_replicas=10, scaling={
            "fallbackReplicas": 5, "metrics": {"prometheus": {"url": prom.url}},
            "scaleDown": {"stabilization": "0s", "maxStep": {"pods": 10, "percent": 100, "period": "1s"}}})],
            "-n", namespace)
        op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
        op.wait_ready()
        metrics = wait_for("MetricsAvailable=False", lambda: (
            c := condition(campaign_obj(cp, namespace), "MetricsAvailable")).get("status") == "False" and c)
        assert "matched no series" in metrics["message"], metrics
        st = wait_for("the fallback", lambda: (s := campaign_obj(cp, namespace).get("status") or {}).get("fallbackActive") and s)
        assert st["replicas"]["desired"] == 5, st["replicas"]
        wait_for("the Deployment at the fallback count",
                 lambda: cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 5)
        time.sleep(3)
        assert cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 5, "went below the fallback"
    finally:
        prom.stop()
        decoy.stop()
