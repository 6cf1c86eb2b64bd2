"""The CRDs as a platform team meets them: `kubectl apply -f crds/`, the examples, the
deliberately invalid examples (rejected by the API server itself, CEL rules included), the
printer columns of `kubectl get camp,qc` and the field docs of `kubectl explain`."""

from __future__ import annotations

import pathlib

import pytest
import yaml

from conftest import REPO

EXAMPLES = sorted((REPO / "crds" / "examples").glob("*.yaml"))
INVALID = sorted((REPO / "crds" / "examples" / "invalid").glob("*.yaml"))

# What the API server must say about each invalid example: one entry per broken field.
EXPECTED_REJECTIONS = {
    "campaign-bad.yaml": [
        "spec.schedule.prewarm: Invalid value",
        "spec.scaling.minReplicas: Invalid value: 0: spec.scaling.minReplicas in body should be greater than or equal to 1",
        "spec.scaling.tolerance: Invalid value: 1.5: spec.scaling.tolerance in body should be less than or equal to 1",
        'spec.redis.maxmemoryPolicy: Unsupported value: "evict-everything"',
    ],
    "campaign-cel-bad.yaml": [
        "endsAt must be after startsAt",
        "minReplicas must not exceed maxReplicas",
        "maxStep and policies are two spellings of the step limits: use one",
        "stabilization and stabilizationWindowSeconds are two spellings of the window: use one",
        "fallbackReplicas and fallback are two spellings of the fallback: use one",
    ],
    "campaign-triggers-bad.yaml": [
        "trigger names must be unique",
        "a trigger needs exactly one of prometheus or redisStream",
        "threshold must be above 0",
        "a redisStream trigger needs exactly one of pendingEntriesCount or lagCount",
        "use bearerTokenKey or usernameKey/passwordKey, not both",
    ],
    "campaign-control-bad.yaml": [
        "set exactly one of target.deployment and target.scaleTargetRef",
        "scaleTargetRef must be apps/v1 Deployment, apps/v1 StatefulSet or argoproj.io/v1alpha1 Rollout",
        "set either startsAt/endsAt or recurrence, not both and not neither",
        "rampDown takes exactly one of pods and percent",
    ],
    "queueconfig-bad.yaml": [
        'spec.queueId: Invalid value: "Concert_42"',
        "spec.admitPerMinute: Invalid value: 0: spec.admitPerMinute in body should be greater than or equal to 1",
    ],
}


def test_crds_are_established_with_accepted_names(cp, crds):
    for name in crds:
        crd = cp.get(f"crd/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", conditions
        assert conditions.get("NamesAccepted") == "True", conditions
        # a structural schema: the server would report NonStructuralSchema otherwise
        assert "NonStructuralSchema" not in conditions, conditions


def test_reapplying_the_crds_changes_nothing(cp, crds):
    out = cp.kubectl("apply", "-f", str(REPO / "crds")).stdout
    assert out.count("unchanged") == 2, out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_every_valid_example_applies(cp, crds, namespace, path: pathlib.Path):
    out = cp.kubectl("-n", namespace, "apply", "-f", str(path)).stdout
    assert "created" in out, out
    manifest = yaml.safe_load(path.read_text())
    stored = cp.get(f"{manifest['kind'].lower()}/{manifest['metadata']['name']}", "-n", namespace)
    # the server may fill in defaults; every field the user wrote is kept as written
    assert missing(manifest["spec"], stored["spec"]) == [], "pruned or changed by the server"


def missing(wanted, have, path="spec") -> list[str]:
    """Paths of `wanted` (recursively) that `have` lacks or holds with another value."""
    if isinstance(wanted, dict):
        if not isinstance(have, dict):
            return [path]
        return [m for k, v in wanted.items() for m in missing(v, have.get(k), f"{path}.{k}")]
    return [] if wanted == have else [f"{path}: {wanted!r} != {have!r}"]


def test_examples_cover_every_invalid_file():
    assert {p.name for p in INVALID} == set(EXPECTED_REJECTIONS), "name what the server must say for each"


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_examples_are_rejected_by_the_api_server(cp, crds, namespace, path: pathlib.Path):
    proc = cp.kubectl("-n", namespace, "apply", "-f", str(path), check=False)
    assert proc.returncode != 0, f"{path.name} was accepted:\n{proc.stdout}"
    for expected in EXPECTED_REJECTIONS[path.name]:
        assert expected in proc.stderr, f"{path.name}: {expected!r} not in\n{proc.stderr}"
    kind = yaml.safe_load(path.read_text())["kind"].lower()
    listed = cp.get(kind, "-n", namespace)
    assert listed["items"] == [], "nothing of a rejected manifest may be stored"


def test_get_shows_the_printer_columns(cp, crds, namespace):
    for path in EXAMPLES:
        cp.kubectl("-n", namespace, "apply", "-f", str(path))
    campaigns = cp.kubectl("-n", namespace, "get", "camp").stdout.splitlines()
    # KEDA-like Ready / Active / Fallback / Paused and Conflict from conditions (#15); Waiting,
    # P95 and Workload with -o wide
    assert campaigns[0].split() == ["NAME", "PHASE", "READY", "ACTIVE", "FALLBACK", "PAUSED", "CONFLICT",
                                    "DESIRED", "CURRENT", "AGE"], campaigns
    wide = cp.kubectl("-n", namespace, "get", "camp", "-o", "wide").stdout.splitlines()
    assert wide[0].split()[-4:] == ["WAITING", "P95", "WORKLOAD", "AGE"], wide
    assert sorted(line.split()[0] for line in campaigns[1:]) == [
        "sneaker-drop", "xmas-tickets", "xmas-tickets-behavior"], campaigns
    queues = cp.kubectl("-n", namespace, "get", "qc").stdout.splitlines()
    assert queues[0].split() == ["NAME", "QUEUE", "WAITING", "ACTIVE", "ADMIT/MIN", "PAUSED", "AGE"], queues
    row = queues[1].split()
    assert row[0] == "concert-42" and row[1] == "concert-42", row
    # the category lists both kinds at once
    both = cp.kubectl("-n", namespace, "get", "floodgate", "-o", "name").stdout.split()
    assert sorted(both) == ["campaign.floodgate.dev/sneaker-drop", "campaign.floodgate.dev/xmas-tickets",
                            "campaign.floodgate.dev/xmas-tickets-behavior",
                            "queueconfig.floodgate.dev/concert-42"], both


def test_explain_shows_the_field_docs(cp, crds):
    spec = cp.kubectl("explain", "campaign.spec").stdout
    for field in ("target", "schedule", "scaling", "redis", "queues"):
        assert f"{field}\t" in spec or f"  {field} " in spec or f"{field} <" in spec, f"{field} missing:\n{spec}"
    crd = yaml.safe_load((REPO / "crds" / "campaign.yaml").read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    scaling = cp.kubectl("explain", "campaign.spec.scaling.waitingPerReplica").stdout
    first_words = " ".join(schema["scaling"]["properties"]["waitingPerReplica"]["description"].split()[:4])
    assert first_words in " ".join(scaling.split()), scaling
    qc = cp.kubectl("explain", "queueconfig.spec.queueId").stdout
    assert "DESCRIPTION" in qc and len(qc.split("DESCRIPTION:", 1)[1].strip()) > 10, qc
