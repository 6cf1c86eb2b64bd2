"""The app, the trial databases and the helm test hook as rendered: probes on real routes,
draining, resources and spread, environment, secrets, non-root everywhere, network policies,
Redis eviction policy, ingress, PDB, persistence."""

from __future__ import annotations

import shutil

import helm_python
import pytest
import yaml

from conftest import CHART, NAMESPACE, PRODUCTION, RELEASE, REPO, SCENARIOS, deep_merge, find, one, render
from helpers import APP, FULL, OPERATOR, WORKLOAD_KINDS, app_routes, container, containers, env_of, pod_spec, secret_data


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_app_probes_hit_real_routes(rendered, scenario):
    routes = app_routes()
    assert {"/livez", "/readyz"} <= routes, f"app routes found: {sorted(routes)}"
    app = container(one(rendered[scenario], "Deployment", APP), "app")
    assert app["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert app["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert app["startupProbe"]["httpGet"]["path"] in routes
    port_names = {p["name"] for p in app["ports"]}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert app[probe]["httpGet"]["port"] in port_names


def test_helm_test_hook_calls_readyz(rendered):
    pod = one(rendered["default"], "Pod", f"{FULL}-test-readyz")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    svc = one(rendered["default"], "Service", APP)
    url = env_of(pod["spec"]["containers"][0])["URL"]["value"]
    assert url == f"http://{APP}.{NAMESPACE}.svc:{svc['spec']['ports'][0]['port']}/readyz"
    assert '"$URL"' in pod["spec"]["containers"][0]["args"][0]
    assert "/readyz" in app_routes()


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_app_drains_before_it_is_killed(rendered, scenario):
    values = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), SCENARIOS[scenario])
    doc = one(rendered[scenario], "Deployment", APP)
    spec = pod_spec(doc)
    app = container(doc, "app")
    env = env_of(app)
    sleep = app["lifecycle"]["preStop"]["sleep"]["seconds"]
    delay = int(env["FLOODGATE_SHUTDOWN_DELAY_SECS"]["value"])
    timeout = int(env["FLOODGATE_REQUEST_TIMEOUT_MS"]["value"]) // 1000
    assert sleep == values["app"]["preStopSleepSeconds"] and sleep > 0
    assert spec["terminationGracePeriodSeconds"] > sleep + delay + timeout
    assert doc["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_app_resources_spread_and_migrations(rendered):
    doc = one(rendered["default"], "Deployment", APP)
    spec = pod_spec(doc)
    for c in containers(doc):
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert c["resources"]["limits"]["memory"]
    keys = {t["topologyKey"] for t in spec["topologySpreadConstraints"]}
    assert keys == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for t in spec["topologySpreadConstraints"]:
        assert t["labelSelector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
    (init,) = spec["initContainers"]
    assert init["args"] == ["migrate"] and init["image"] == container(doc, "app")["image"]
    assert container(doc, "app")["args"] == ["serve"]
    assert spec["automountServiceAccountToken"] is False


def test_app_environment(rendered):
    app = container(one(rendered["default"], "Deployment", APP), "app")
    env = env_of(app)
    assert env["FLOODGATE_LISTEN_ADDR"]["value"] == "0.0.0.0:8080"
    assert app["ports"][0]["containerPort"] == 8080
    assert env["FLOODGATE_ENV"]["value"] == "production"
    assert env["FLOODGATE_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    for name in ("DATABASE_URL", "FLOODGATE_JWT_SECRET", "REDIS_URL"):
        assert "value" not in env[name], f"{name} must come from a Secret"
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == FULL
    for name in ("FLOODGATE_DB_POOL_SIZE", "RUST_LOG", "FLOODGATE_REDIS_PREFIX"):
        assert env[name]["value"]
    assert env["FLOODGATE_REDIS_MODE"]["value"] == "single"
    cluster = env_of(container(one(rendered["redis-cluster"], "Deployment", APP), "app"))
    assert cluster["FLOODGATE_REDIS_MODE"]["value"] == "cluster"
    # Every variable the chart sets is one the app reads.
    config = (REPO / "app" / "src" / "config.rs").read_text()
    for name in env:
        assert f'env = "{name}"' in config or name == "RUST_LOG", f"app does not read {name}"


def test_client_address_header_is_off_unless_trusted_proxies_are_set(chart, rendered):
    """The per-IP auth limit believes X-Forwarded-For only from listed proxies: by default the
    app reads no header (a forged one cannot escape the limit), and hashing is bounded to fit
    the memory limit (about 19 MiB per argon2 hash)."""
    env = env_of(container(one(rendered["default"], "Deployment", APP), "app"))
    assert "FLOODGATE_CLIENT_IP_HEADER" not in env and "FLOODGATE_TRUSTED_PROXIES" not in env
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    hashes = int(env["FLOODGATE_PASSWORD_HASH_CONCURRENCY"]["value"])
    limit = values["app"]["resources"]["limits"]["memory"]
    assert limit.endswith("Mi") and hashes * 19 < int(limit[:-2]) // 2
    behind = render(chart, {"app": {"trustedProxies": ["10.244.0.0/16", "fd00::/8"]}})
    env = env_of(container(one(behind, "Deployment", APP), "app"))
    assert env["FLOODGATE_TRUSTED_PROXIES"]["value"] == "10.244.0.0/16,fd00::/8"
    assert "FLOODGATE_CLIENT_IP_HEADER" not in env


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_non_root_everywhere(rendered, scenario):
    workloads = [m for m in rendered[scenario] if m.kind in WORKLOAD_KINDS]
    assert workloads
    for m in workloads:
        spec = pod_spec(m.doc)
        psc = spec.get("securityContext", {})
        assert psc.get("runAsNonRoot") is True, f"{m}: pod runAsNonRoot"
        assert psc.get("runAsUser", 1) != 0 and psc.get("runAsGroup", 1) != 0, m
        assert psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", m
        assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC"), m
        for c in containers(m.doc):
            sc = c.get("securityContext", {})
            where = f"{m} container {c['name']}"
            assert sc.get("runAsUser", psc.get("runAsUser", 1)) != 0, where
            assert sc.get("runAsNonRoot", True) is True, where
            assert sc.get("allowPrivilegeEscalation") is False, where
            assert sc.get("readOnlyRootFilesystem") is True, where
            assert not sc.get("privileged"), where
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not sc.get("capabilities", {}).get("add"), where


def test_generated_secret_wires_in_chart_databases(rendered):
    data = secret_data(one(rendered["default"], "Secret", FULL))
    assert len(data["jwt-secret"]) >= 32
    pw = data["postgres-password"]
    assert len(pw) >= 24
    assert data["database-url"] == f"postgres://floodgate:{pw}@{FULL}-postgresql:5432/floodgate"
    assert data["redis-url"] == f"redis://{FULL}-redis:6379"
    one(rendered["default"], "Service", f"{FULL}-postgresql")
    one(rendered["default"], "Service", f"{FULL}-redis")
    pg = container(one(rendered["default"], "StatefulSet", f"{FULL}-postgresql"), "postgresql")
    assert env_of(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": FULL, "key": "postgres-password"}


def test_external_databases_use_given_urls_and_no_statefulsets(rendered):
    manifests = rendered["external-databases"]
    assert not find(manifests, "StatefulSet")
    data = secret_data(one(manifests, "Secret", FULL))
    assert data["database-url"] == SCENARIOS["external-databases"]["secrets"]["databaseUrl"]
    assert data["redis-url"] == SCENARIOS["external-databases"]["secrets"]["redisUrl"]
    assert "postgres-password" not in data


def test_existing_secret_is_referenced_not_created(rendered):
    manifests = rendered["production"]
    assert not find(manifests, "Secret")
    assert not find(manifests, "StatefulSet")
    name = PRODUCTION["secrets"]["existingSecret"]
    for deploy in (APP, OPERATOR):
        for c in containers(one(manifests, "Deployment", deploy)):
            refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})}
            assert refs == {name}, (deploy, c["name"], refs)


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if SCENARIOS[s].get("redis", {}).get("enabled", True)])
def test_redis_cannot_evict_queue_keys(rendered, scenario):
    cm = one(rendered[scenario], "ConfigMap", f"{FULL}-redis")
    conf = dict(line.split(None, 1) for line in cm["data"]["redis.conf"].splitlines() if line and not line.startswith("#"))
    assert conf["maxmemory-policy"] == "noeviction"
    assert conf["maxmemory"]
    sts = one(rendered[scenario], "StatefulSet", f"{FULL}-redis")
    assert container(sts, "redis")["command"] == ["redis-server", "/etc/redis/redis.conf"]


def test_render_refuses_evicting_policies_even_without_schema(tmp_path):
    """The template guard holds on its own, for installs that skip schema validation."""
    copy = tmp_path / "floodgate"
    shutil.copytree(CHART, copy)
    (copy / "values.schema.json").unlink()
    with helm_python.Chart.load(str(copy)) as unchecked:
        for policy in ("allkeys-lru", "volatile-lru", "volatile-ttl"):
            with pytest.raises(helm_python.HelmRenderError, match=policy):
                unchecked.render({"redis": {"maxmemoryPolicy": policy}}, name=RELEASE, namespace=NAMESPACE)
        unchecked.render({"redis": {"maxmemoryPolicy": "noeviction"}}, name=RELEASE, namespace=NAMESPACE)


def test_network_policies_admit_only_the_clients(rendered):
    manifests = rendered["default"]
    pods = {m.name: m.doc["spec"]["template"]["metadata"]["labels"] for m in manifests if m.kind in {"Deployment", "StatefulSet"}}

    def admitted(policy: dict) -> set[str]:
        peers = [p["podSelector"]["matchLabels"] for rule in policy["spec"]["ingress"] for p in rule["from"]
                 if "namespaceSelector" not in p]
        return {name for name, labels in pods.items() if any(peer.items() <= labels.items() for peer in peers)}

    pg = one(manifests, "NetworkPolicy", f"{FULL}-postgresql")
    assert pg["spec"]["podSelector"]["matchLabels"].items() <= pods[f"{FULL}-postgresql"].items()
    assert admitted(pg) == {APP}
    redis = one(manifests, "NetworkPolicy", f"{FULL}-redis")
    assert redis["spec"]["podSelector"]["matchLabels"].items() <= pods[f"{FULL}-redis"].items()
    assert admitted(redis) == {APP, OPERATOR}
    # Named ports exist on the selected containers.
    assert pg["spec"]["ingress"][0]["ports"] == [{"port": "postgresql", "protocol": "TCP"}]
    assert container(one(manifests, "StatefulSet", f"{FULL}-redis"), "redis")["ports"][0]["name"] == "redis"
    # with managed databases, only the app's and the operator's own policies remain
    assert {m.name for m in find(rendered["external-databases"], "NetworkPolicy")} == {APP, OPERATOR}


def test_ingress(rendered):
    (ing,) = find(rendered["ingress"], "Ingress")
    spec = ing.doc["spec"]
    assert spec["ingressClassName"] == "nginx"
    assert spec["tls"] == [{"secretName": "shop-tls", "hosts": ["shop.example.com"]}]
    backend = spec["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": APP, "port": {"name": "http"}}
    assert not find(rendered["default"], "Ingress")


def test_pdb_modes(rendered):
    assert one(rendered["default"], "PodDisruptionBudget", APP)["spec"]["maxUnavailable"] == 1
    pdb = one(rendered["persistence-and-noeviction"], "PodDisruptionBudget", APP)["spec"]
    assert pdb["minAvailable"] == "50%" and "maxUnavailable" not in pdb


def test_persistence_uses_claims(rendered):
    for name in (f"{FULL}-postgresql", f"{FULL}-redis"):
        sts = one(rendered["persistence-and-noeviction"], "StatefulSet", name)
        (claim,) = sts["spec"]["volumeClaimTemplates"]
        assert claim["metadata"]["name"] == "data"
        assert "data" not in {v["name"] for v in pod_spec(sts)["volumes"]}
        default = one(rendered["default"], "StatefulSet", name)
        assert "volumeClaimTemplates" not in default["spec"] or name.endswith("postgresql")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_app_replicas_are_left_to_the_operator_when_it_owns_them(rendered, scenario):
    """With the operator on, the app Deployment has no spec.replicas at all: `helm upgrade`
    and GitOps syncs of `helm template` output (Argo CD, Flux) then never reset what
    Campaigns scaled. With the operator off, app.replicaCount. No `lookup` either way (it
    reads nothing under `helm template`)."""
    values = deep_merge(yaml.safe_load((CHART / "values.yaml").read_text()), SCENARIOS[scenario])
    spec = one(rendered[scenario], "Deployment", APP)["spec"]
    if values["operator"]["enabled"]:
        assert "replicas" not in spec, spec.get("replicas")
    else:
        assert spec["replicas"] == values["app"]["replicaCount"]
    assert "lookup" not in (CHART / "templates" / "app" / "deployment.yaml").read_text()


def test_app_replicas_are_set_when_the_operator_does_not_scale_the_app(chart):
    manifests = render(chart, {"operator": {"scalesApp": False}, "app": {"replicaCount": 3}})
    assert one(manifests, "Deployment", APP)["spec"]["replicas"] == 3
    assert one(manifests, "Deployment", OPERATOR)
