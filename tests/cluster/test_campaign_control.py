"""What a Campaign scales and when, against the real control plane (#15): a StatefulSet
target through its /scale subresource (and an HPA on it is a conflict), pause and resume
with `floodgate.dev/paused-replicas`, the ramp-down on deletion, the example manifest of
v1alpha1 applied unchanged, and the KEDA-like columns of `kubectl get campaigns`.

The operator runs as the chart's ServiceAccount with exactly the chart's RBAC (a 403 fails
the test). No kubelet: pods stay Pending, so no metrics are read and the campaigns scale on
minReplicas / fallbackReplicas, which is all these tests need.

    bash scripts/cluster-tests.sh -k campaign_control
"""

from __future__ import annotations

import calendar
import json
import subprocess
import threading
import time

import yaml

from conftest import REPO, campaign, condition, deployment, events, iso, wait_for

# A fast scale-down, so a resumed or ended campaign walks back within seconds.
QUICK = {"fallbackReplicas": 3,
         "scaleDown": {"stabilization": "0s", "maxStep": {"pods": 2, "percent": 10, "period": "1s"}},
         "scaleUp": {"stabilization": "0s", "maxStep": {"pods": 10, "percent": 100, "period": "1s"}}}


def statefulset(name: str, replicas: int) -> dict:
    labels = {"app.kubernetes.io/name": "shop", "app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "serviceName": name, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}},
    }


def hpa_on(kind: str, name: str) -> dict:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": f"{name}-hpa"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
                 "minReplicas": 1, "maxReplicas": 50,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 80}}}]},
    }


def replicas(cp, namespace: str, kind: str, name: str) -> int:
    return cp.get(f"{kind}/{name}", "-n", namespace)["spec"]["replicas"]


def camp(cp, namespace: str, name: str) -> dict:
    proc = cp.kubectl("get", "campaign", name, "-n", namespace, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


class ReplicaTrail:
    """Every distinct spec.replicas the API server reports for one object (kubectl --watch)."""

    def __init__(self, cp, namespace: str, kind: str, name: str):
        self.seen: list[int] = []
        self.proc = subprocess.Popen(
            [str(cp.bin / "kubectl"), "get", kind, name, "-n", namespace, "--watch", "-o",
             "jsonpath={.spec.replicas}{\"\\n\"}"], env=cp.env(), stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            if line.strip().isdigit() and (not self.seen or self.seen[-1] != int(line)):
                self.seen.append(int(line))

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)


def test_a_statefulset_target_is_scaled_through_scale_conflicts_with_an_hpa_and_is_restored(
        cp, operator_factory, namespace):
    cp.apply([statefulset("shop", 1)], "-n", namespace)
    c = campaign("sale", "unused", min_replicas=3, max_replicas=6, scaling=QUICK)
    c["spec"]["target"] = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "shop"}}
    cp.apply([c], "-n", namespace)
    op = operator_factory(namespace)
    op.wait_ready()

    wait_for("the StatefulSet scaled 1 -> minReplicas 3", lambda: replicas(cp, namespace, "statefulset", "shop") == 3)
    st = camp(cp, namespace, "sale")["status"]
    assert st["target"] == "StatefulSet/shop", st
    assert st["replicas"]["before"] == 1, st["replicas"]
    managers = cp.get("statefulset/shop", "-n", namespace, "--show-managed-fields")["metadata"]["managedFields"]
    assert any(m["manager"] == "floodgate-operator" and m.get("subresource") == "scale" for m in managers), managers

    # An HPA on the same StatefulSet: the campaign refuses (conflict detection for any kind).
    cp.apply([hpa_on("StatefulSet", "shop")], "-n", namespace)
    conflict = wait_for("Conflict=True naming the HPA",
                        lambda: (k := condition(camp(cp, namespace, "sale"), "Conflict")).get("status") == "True" and k)
    assert "HorizontalPodAutoscaler/shop-hpa" in conflict["message"] and "StatefulSet/shop" in conflict["message"], conflict
    cp.kubectl("delete", "hpa", "shop-hpa", "-n", namespace)
    wait_for("Conflict=False", lambda: condition(camp(cp, namespace, "sale"), "Conflict").get("status") == "False")

    # endsAt moved to now: restored to the pre-campaign 1 replica.
    cp.kubectl("patch", "campaign", "sale", "-n", namespace, "--type", "merge", "-p",
               json.dumps({"spec": {"schedule": {"endsAt": iso(time.time() + 1)}}}))
    wait_for("the StatefulSet back at 1", lambda: replicas(cp, namespace, "statefulset", "shop") == 1, 30)
    wait_for("Ready=True/Ended", lambda: condition(camp(cp, namespace, "sale"), "Ready").get("reason") == "Ended")


def test_pause_with_paused_replicas_holds_and_resumes(cp, operator_factory, namespace):
    cp.apply([deployment("shop", 2)], "-n", namespace)
    cp.apply([campaign("sale", "shop", min_replicas=3, max_replicas=8, scaling=QUICK)], "-n", namespace)
    op = operator_factory(namespace)
    op.wait_ready()
    wait_for("scaled to minReplicas 3", lambda: replicas(cp, namespace, "deployment", "shop") == 3)
    assert condition(camp(cp, namespace, "sale"), "Paused").get("status") == "False"

    # paused-replicas below minReplicas: without the pause the operator would scale straight
    # back to 3 (it scales up to minReplicas even with signals missing, as here).
    cp.kubectl("annotate", "campaign", "sale", "-n", namespace, "floodgate.dev/paused-replicas=1")
    wait_for("paused-replicas: scaled to 1", lambda: replicas(cp, namespace, "deployment", "shop") == 1)
    paused = wait_for("Paused=True/PausedAtReplicas",
                      lambda: (k := condition(camp(cp, namespace, "sale"), "Paused")).get("reason") == "PausedAtReplicas" and k)
    assert paused["status"] == "True" and "holding 1" in paused["message"], paused
    # minReplicas 3 says otherwise; the count holds.
    trail = ReplicaTrail(cp, namespace, "deployment", "shop")
    time.sleep(8)
    trail.stop()
    assert trail.seen == [1], f"replicas moved while paused: {trail.seen}"
    assert condition(camp(cp, namespace, "sale"), "Active").get("status") == "False"

    # A bad value: a condition with a precise message, the operator keeps running and holds.
    cp.kubectl("annotate", "--overwrite", "campaign", "sale", "-n", namespace, "floodgate.dev/paused-replicas=six")
    bad = wait_for("Paused reason InvalidPauseAnnotation",
                   lambda: (k := condition(camp(cp, namespace, "sale"), "Paused")).get("reason") == "InvalidPauseAnnotation" and k)
    assert 'floodgate.dev/paused-replicas: "six" is not a replica count' in bad["message"], bad
    wait_for("an InvalidPauseAnnotation Warning",
             lambda: [e for e in events(cp, namespace, "sale") if e.get("reason") == "InvalidPauseAnnotation"])
    time.sleep(3)
    assert replicas(cp, namespace, "deployment", "shop") == 1
    assert op.proc.poll() is None, "the operator exited on a bad annotation"

    # Removing the annotation resumes: back to minReplicas 3.
    cp.kubectl("annotate", "campaign", "sale", "-n", namespace, "floodgate.dev/paused-replicas-")
    wait_for("resumed: back to 3", lambda: replicas(cp, namespace, "deployment", "shop") == 3, 20)
    wait_for("Paused=False, Active=True", lambda: (
        condition(camp(cp, namespace, "sale"), "Paused").get("status") == "False"
        and condition(camp(cp, namespace, "sale"), "Active").get("status") == "True"))

    # floodgate.dev/paused: "true" holds the current count: no scale write at all.
    cp.kubectl("annotate", "campaign", "sale", "-n", namespace, "floodgate.dev/paused=true")
    wait_for("Paused=True/Paused", lambda: condition(camp(cp, namespace, "sale"), "Paused").get("reason") == "Paused")
    cp.kubectl("scale", "deployment", "shop", "-n", namespace, "--replicas=2")
    time.sleep(5)
    assert replicas(cp, namespace, "deployment", "shop") == 2, "the operator wrote the scale while paused"
    cp.kubectl("annotate", "campaign", "sale", "-n", namespace, "floodgate.dev/paused-")
    wait_for("resumed again: back to 3", lambda: replicas(cp, namespace, "deployment", "shop") == 3)


def test_deleting_with_a_ramp_down_walks_back_in_steps_before_the_object_goes(cp, operator_factory, namespace):
    cp.apply([deployment("shop", 1)], "-n", namespace)
    c = campaign("sale", "shop", min_replicas=7, max_replicas=9, scaling=dict(QUICK, fallbackReplicas=7))
    c["spec"]["restore"] = {"rampDown": {"pods": 2, "periodSeconds": 2}}
    cp.apply([c], "-n", namespace)
    op = operator_factory(namespace)
    op.wait_ready()
    wait_for("scaled to 7", lambda: replicas(cp, namespace, "deployment", "shop") == 7)
    trail = ReplicaTrail(cp, namespace, "deployment", "shop")
    wait_for("the watch started", lambda: trail.seen)
    cp.kubectl("delete", "campaign", "sale", "-n", namespace, "--wait=false")
    still_there = wait_for("the campaign kept while ramping (Ready reason RampingDown)",
                           lambda: condition(camp(cp, namespace, "sale"), "Ready").get("reason") == "RampingDown", 10)
    assert still_there
    wait_for("the campaign gone once the ramp is done", lambda: not camp(cp, namespace, "sale"), 40)
    time.sleep(1)
    trail.stop()
    assert trail.seen == [7, 5, 3, 1], f"replicas went {trail.seen}, not 7 -> 5 -> 3 -> 1"
    restored = [e for e in events(cp, namespace, "sale") if e.get("reason") in ("Scaled", "Restored")
                and "deleting: ramped" in (e.get("note") or "")]
    # (kube's Recorder folds repeated Scaled Events into a series: count the reasons)
    assert {e["reason"] for e in restored} == {"Scaled", "Restored"}, [e.get("note") for e in restored]
    assert any("from 3 to 1" in e["note"] for e in restored if e["reason"] == "Restored"), restored


def test_the_v1alpha1_example_applies_unchanged_and_kubectl_shows_the_columns(cp, operator_factory, namespace):
    # The example as written before #15 (target.deployment, startsAt/endsAt, no restore),
    # byte for byte: #15 left crds/examples/campaign.yaml unchanged.
    example = (REPO / "crds" / "examples" / "campaign.yaml").read_text()
    assert "deployment: floodgate-app" in example and "startsAt:" in example and "restore" not in example
    cp.apply([deployment("floodgate-app", 2)], "-n", namespace)
    cp.kubectl("apply", "-n", namespace, "-f", str(REPO / "crds" / "examples" / "queueconfig.yaml"))
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=example)
    op = operator_factory(namespace)
    op.wait_ready()
    doc = yaml.safe_load(example)
    name, sched = doc["metadata"]["name"], doc["spec"]["schedule"]
    # its dates are fixed: which phase (and Ready reason) is right depends on today
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    prewarm_from = iso(calendar.timegm(time.strptime(sched["startsAt"], "%Y-%m-%dT%H:%M:%SZ")) - 15 * 60)
    phase = ("Ended" if now >= sched["endsAt"] else "Active" if now >= sched["startsAt"]
             else "Prewarming" if now >= prewarm_from else "Scheduled")
    reason = {"Scheduled": "Scheduled", "Ended": "Ended"}.get(phase, "Commanding")
    ready = wait_for(f"the example reconciled: Ready=True/{reason}",
                     lambda: (k := condition(camp(cp, namespace, name), "Ready")).get("reason") == reason and k)
    st = camp(cp, namespace, name)["status"]
    assert st["phase"] == phase and st["target"] == "Deployment/floodgate-app", st
    assert st["window"] == {"startsAt": "2026-12-24T10:00:00Z", "endsAt": "2026-12-24T12:00:00Z"}, st
    assert ready["status"] == "True"
    spec = camp(cp, namespace, name)["spec"]
    assert spec["target"] == {"deployment": "floodgate-app"} and "restore" not in spec, spec
    if phase in ("Scheduled", "Ended"):
        assert replicas(cp, namespace, "deployment", "floodgate-app") == 2

    out = cp.kubectl("get", "campaigns", "-n", namespace).stdout.splitlines()
    header = out[0].split()
    assert header == ["NAME", "PHASE", "READY", "ACTIVE", "FALLBACK", "PAUSED", "CONFLICT", "DESIRED", "CURRENT",
                      "AGE"], out
    row = dict(zip(header, out[1].split()))
    assert row["NAME"] == name and row["PHASE"] == phase and row["READY"] == "True", row
    assert row["ACTIVE"] == ("True" if reason == "Commanding" else "False"), row
    assert row["PAUSED"] == "False" and row["FALLBACK"] in ("True", "False"), row
    wide = cp.kubectl("get", "campaigns", "-n", namespace, "-o", "wide").stdout.splitlines()[0].split()
    assert {"WAITING", "P95", "WORKLOAD"} <= set(wide), wide


def test_a_recurring_window_scales_up_each_occurrence_and_restores_between(cp, operator_factory, namespace):
    """schedule.recurrence: every minute (Europe/Berlin) for 20 s, 5 s of prewarm: the
    Deployment goes to minReplicas in each window and back to its own count after it, and
    status.window moves on to the next occurrence."""
    cp.apply([deployment("shop", 1)], "-n", namespace)
    c = campaign("weekly", "shop", min_replicas=3, max_replicas=5, scaling=QUICK, prewarm="5s")
    c["spec"]["schedule"] = {"recurrence": {"cron": "* * * * *", "timezone": "Europe/Berlin", "duration": "20s"},
                             "prewarm": "5s"}
    cp.apply([c], "-n", namespace)
    op = operator_factory(namespace)
    op.wait_ready()
    first = wait_for("status.window", lambda: (camp(cp, namespace, "weekly").get("status") or {}).get("window"), 10)
    trail = ReplicaTrail(cp, namespace, "deployment", "shop")
    wait_for("scaled to 3 in an occurrence", lambda: replicas(cp, namespace, "deployment", "shop") == 3, 70)
    wait_for("back to 1 after it", lambda: replicas(cp, namespace, "deployment", "shop") == 1, 40)
    later = wait_for("the next occurrence in status.window", lambda: (
        (w := (camp(cp, namespace, "weekly").get("status") or {}).get("window")) and w["startsAt"] > first["startsAt"] and w), 30)
    trail.stop()
    assert trail.seen[-2:] == [3, 1] and max(trail.seen) == 3, trail.seen
    assert later["startsAt"].endswith(":00Z"), later
    # Ended only until the restore is done, then Scheduled (or already the next prewarm)
    wait_for("phase Scheduled/Prewarming for the next occurrence",
             lambda: camp(cp, namespace, "weekly")["status"]["phase"] in ("Scheduled", "Prewarming", "Active"), 5)


def test_restore_to_original_replica_count_false_leaves_the_count_at_the_end_and_on_delete(
        cp, operator_factory, namespace):
    cp.apply([deployment("shop", 1)], "-n", namespace)
    c = campaign("sale", "shop", min_replicas=3, max_replicas=5, scaling=QUICK)
    c["spec"]["restore"] = {"toOriginalReplicaCount": False}
    cp.apply([c], "-n", namespace)
    op = operator_factory(namespace)
    op.wait_ready()
    wait_for("scaled to 3", lambda: replicas(cp, namespace, "deployment", "shop") == 3)
    cp.kubectl("patch", "campaign", "sale", "-n", namespace, "--type", "merge", "-p",
               json.dumps({"spec": {"schedule": {"endsAt": iso(time.time() + 1)}}}))
    wait_for("Ready=True/Ended", lambda: condition(camp(cp, namespace, "sale"), "Ready").get("reason") == "Ended", 15)
    wait_for("a NotRestored Event", lambda: [e for e in events(cp, namespace, "sale") if e.get("reason") == "NotRestored"])
    assert replicas(cp, namespace, "deployment", "shop") == 3
    assert (camp(cp, namespace, "sale")["status"]["replicas"] or {}).get("before") is None
    # deleting a live one (replicas.before still saved) leaves the count too
    cp.apply([deployment("shop2", 1)], "-n", namespace)
    live = campaign("live", "shop2", min_replicas=4, max_replicas=5, scaling=dict(QUICK, fallbackReplicas=4))
    live["spec"]["restore"] = {"toOriginalReplicaCount": False}
    cp.apply([live], "-n", namespace)
    wait_for("shop2 scaled to 4", lambda: replicas(cp, namespace, "deployment", "shop2") == 4)
    assert camp(cp, namespace, "live")["status"]["replicas"]["before"] == 1
    cp.kubectl("delete", "campaign", "live", "-n", namespace, "--wait=true", "--timeout=20s")
    time.sleep(1)
    assert replicas(cp, namespace, "deployment", "shop2") == 4, "deletion restored despite toOriginalReplicaCount false"
