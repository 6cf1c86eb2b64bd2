"""The operator as rendered, checked against its code: command line, environment, the Redis
it shares with the app, leader election, and RBAC equal to the Kubernetes calls in
operator/src."""

from __future__ import annotations

import re

import helm_python
import pytest

from conftest import NAMESPACE, REPO, SCENARIOS, one
from helpers import APP, CLUSTER_ROLE, OPERATOR, RESOURCES_ROLE, container, env_of, operator_routes, pod_spec
import operator_calls


def test_operator_probes_and_metrics_port(rendered):
    routes = operator_routes()
    assert {"/healthz", "/readyz", "/metrics"} <= routes, f"operator routes found: {sorted(routes)}"
    doc = one(rendered["default"], "Deployment", OPERATOR)
    op = container(doc, "operator")
    (port,) = op["ports"]
    assert port["name"] == "metrics"
    assert op["args"] == [
        "controller", "--listen", f"0.0.0.0:{port['containerPort']}", "--lease-name", OPERATOR, "--watch-namespace", NAMESPACE,
    ]
    assert op["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert op["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    svc = one(rendered["default"], "Service", OPERATOR)
    assert svc["spec"]["ports"][0]["targetPort"] == "metrics"


def test_operator_command_line_is_one_the_binary_accepts(rendered):
    """The subcommand and every flag the chart passes exist in operator/src/main.rs (clap
    derive: variant `Controller` → `controller`, field `lease_name` → `--lease-name`)."""
    op = container(one(rendered["default"], "Deployment", OPERATOR), "operator")
    main = (REPO / "operator" / "src" / "main.rs").read_text()
    subcommand, *rest = op["args"]
    variant = "".join(w.capitalize() for w in subcommand.split("-"))
    assert re.search(rf"^\s*{variant}\s*\{{", main, re.M), f"no subcommand {subcommand}"
    for flag in [a for a in rest if a.startswith("--")]:
        field = flag[2:].replace("-", "_")
        assert re.search(rf"\b{field}\s*:", main), f"operator has no flag {flag}"


def test_operator_environment_is_read_by_the_operator(rendered):
    """Every variable the chart sets on the operator is one its code reads (a typo or a
    renamed flag would otherwise be silently ignored)."""
    op = container(one(rendered["default"], "Deployment", OPERATOR), "operator")
    src = "\n".join(p.read_text() for p in (REPO / "operator" / "src").rglob("*.rs"))
    for name in env_of(op):
        if name == "RUST_LOG":  # read by tracing-subscriber's EnvFilter
            continue
        assert f'"{name}"' in src, f"operator/src never reads {name}"


@pytest.mark.parametrize("scenario", [s for s in SCENARIOS if s != "operator-off"])
def test_operator_uses_the_apps_redis(rendered, scenario):
    manifests = rendered[scenario]
    app_env = env_of(container(one(manifests, "Deployment", APP), "app"))
    op_env = env_of(container(one(manifests, "Deployment", OPERATOR), "operator"))
    for name in ("REDIS_URL", "FLOODGATE_REDIS_PREFIX", "FLOODGATE_REDIS_MODE"):
        assert op_env[name] == app_env[name], name


def test_operator_off_renders_no_operator_objects(rendered):
    manifests = rendered["operator-off"]
    assert not [m for m in manifests if m.doc["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]


# scenario → the namespace the operator watches ("" = every namespace).
WATCHED = {"default": NAMESPACE, "operator-other-namespace": "tenants", "operator-cluster-wide": ""}


def resource_role(manifests, watched: str) -> tuple[dict, dict]:
    """The Role (or ClusterRole) for Campaigns, Deployments, pods... and its binding."""
    if watched:
        role, binding = (
            [m.doc for m in manifests if m.kind == kind and m.name == RESOURCES_ROLE] for kind in ("Role", "RoleBinding")
        )
        assert len(role) == len(binding) == 1, (role, binding)
        assert role[0]["metadata"]["namespace"] == binding[0]["metadata"]["namespace"] == watched
        return role[0], binding[0]
    return one(manifests, "ClusterRole", CLUSTER_ROLE), one(manifests, "ClusterRoleBinding", CLUSTER_ROLE)


@pytest.mark.parametrize("scenario", WATCHED)
def test_operator_watches_one_namespace_unless_told_otherwise(rendered, scenario):
    manifests = rendered[scenario]
    op = container(one(manifests, "Deployment", OPERATOR), "operator")
    # An argument, not only an environment variable: whoever runs the container's command
    # line gets the scope its RBAC was rendered for. Absent = every namespace.
    args = op["args"]
    scope = args[args.index("--watch-namespace") + 1] if "--watch-namespace" in args else ""
    assert scope == WATCHED[scenario], args
    assert "FLOODGATE_WATCH_NAMESPACE" not in env_of(op)
    cluster_wide = [m for m in manifests if m.kind in ("ClusterRole", "ClusterRoleBinding")
                    and m.doc["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
    if WATCHED[scenario]:
        assert not cluster_wide, "a namespaced install must not get cluster-wide rights"
    else:
        assert not [m for m in manifests if m.name == RESOURCES_ROLE]


def test_watch_namespace_and_watch_all_exclude_each_other(chart):
    with pytest.raises(helm_python.HelmError, match="exclude each other"):
        chart.render({"operator": {"watchNamespace": "tenants", "watchAllNamespaces": True}}, name="floodgate", namespace=NAMESPACE)


@pytest.mark.parametrize("scenario", WATCHED)
def test_operator_service_account_is_bound(rendered, scenario):
    manifests = rendered[scenario]
    doc = one(manifests, "Deployment", OPERATOR)
    sa = pod_spec(doc)["serviceAccountName"]
    one(manifests, "ServiceAccount", sa)
    subject = [{"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]
    binding = one(manifests, "RoleBinding", OPERATOR)
    assert binding["subjects"] == subject
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": OPERATOR}
    role, role_binding = resource_role(manifests, WATCHED[scenario])
    assert role_binding["subjects"] == subject
    assert role_binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"], "name": role["metadata"]["name"]}
    # The app gets no Kubernetes API access at all.
    app_sa = pod_spec(one(manifests, "Deployment", APP))["serviceAccountName"]
    bound = {s["name"] for m in manifests if m.kind.endswith("Binding") for s in m.doc["subjects"]}
    assert app_sa not in bound


@pytest.mark.parametrize("scenario", WATCHED)
def test_rbac_grants_exactly_what_the_operator_calls(rendered, scenario):
    manifests = rendered[scenario]
    resources = operator_calls.role_grants(resource_role(manifests, WATCHED[scenario])[0])
    lease = operator_calls.role_grants(one(manifests, "Role", OPERATOR))
    needed = operator_calls.scan(REPO / "operator" / "src")
    assert needed, "found no Kubernetes API call in operator/src"
    granted = {k: resources.get(k, set()) | lease.get(k, set()) for k in resources.keys() | lease.keys()}
    assert granted == needed, (
        "RBAC and operator code disagree:\n"
        f"  granted but unused: { {k: sorted(v - needed.get(k, set())) for k, v in granted.items() if v - needed.get(k, set())} }\n"
        f"  used but not granted: { {k: sorted(v - granted.get(k, set())) for k, v in needed.items() if v - granted.get(k, set())} }"
    )
    # The Lease stays in the release namespace; everything else is where the Campaigns are.
    assert set(lease) == {("coordination.k8s.io", "leases")}
    assert ("coordination.k8s.io", "leases") not in resources
    # The operator really scopes its watches: Api::namespaced for one namespace, Api::all
    # only when the watch namespace is empty.
    controller = (REPO / "operator" / "src" / "cluster" / "controller.rs").read_text()
    assert re.search(r"Some\(ns\) => Api::namespaced\(.*\),\s*None => Api::all\(", controller), "watch scoping changed"
    assert re.search(r"let campaigns: Api<Campaign> = watched\(", controller)
    assert re.search(r"let queues: Api<QueueConfig> = watched\(", controller)


def test_rbac_scanner_sees_calls(tmp_path):
    """The scanner is not vacuous: it finds the verbs of a small kube-rs snippet, with
    shadowed bindings, chained calls, the Entry API and test code left out."""
    (tmp_path / "a.rs").write_text(
        """
        async fn act(client: Client, ns: &str) {
            let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
            let d = deployments.get("floodgate-app").await?;
            Api::<Deployment>::namespaced(client.clone(), ns).patch_scale("floodgate-app", &pp, &patch).await?;
            let api = Api::<Campaign>::all(client.clone());
            Controller::new(api, Config::default());
            finalizer(&api, "floodgate.dev/cleanup", obj, |e| async {}).await;
            let api = Api::<QueueConfig>::namespaced(client.clone(), ns);
            api.patch_status("x", &pp, &status).await?;
            let recorder = Recorder::new(client, reporter);
            let scoped: Api<Pod> = watched(&client, Some(ns));
            scoped.list(&lp).await?;
        }
        fn watched<K>(client: &Client, ns: Option<&str>) -> Api<K> {
            match ns { Some(ns) => Api::namespaced(client.clone(), ns), None => Api::all(client.clone()) }
        }
        async fn lead(leases: &Api<Lease>) {
            match leases.entry("x").await? {
                Entry::Vacant(v) => v.insert(lease).commit(&pp).await,
                Entry::Occupied(mut o) => o.commit(&pp).await,
            };
        }
        #[cfg(test)]
        mod tests { fn t(pods: Api<Pod>) { pods.delete("x"); } }
        """
    )
    assert operator_calls.scan(tmp_path) == {
        ("apps", "deployments"): {"get"},
        ("apps", "deployments/scale"): {"patch"},
        ("floodgate.dev", "campaigns"): {"list", "watch", "patch"},
        ("floodgate.dev", "queueconfigs/status"): {"patch"},
        ("events.k8s.io", "events"): {"create", "patch"},
        ("coordination.k8s.io", "leases"): {"get", "create", "update"},
        ("", "pods"): {"list"},
    }
    assert operator_calls.cluster_scoped_types(tmp_path) == {"Campaign"}


def test_leader_election_lease_is_granted(rendered):
    doc = one(rendered["default"], "Deployment", OPERATOR)
    op = container(doc, "operator")
    assert env_of(op)["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env_of(op)["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
    # A new pod cannot become ready (leading) while the old one holds the Lease.
    assert doc["spec"]["strategy"] == {"type": "Recreate"}
    assert doc["spec"]["replicas"] <= 1
    grants = operator_calls.role_grants(one(rendered["default"], "Role", OPERATOR))
    assert {"get", "create", "update"} <= grants[("coordination.k8s.io", "leases")]


def test_rbac_scanner_skips_test_only_modules(tmp_path):
    """Modules declared under #[cfg(test)] (the mocked API server) are not the operator's calls."""
    (tmp_path / "lib.rs").write_text("pub mod real;\n#[cfg(test)]\nmod fixtures;\n#[cfg(test)]\nmod scenarios;\n")
    (tmp_path / "real.rs").write_text("async fn f(pods: Api<Pod>) { pods.list(&lp).await; }\n")
    (tmp_path / "fixtures.rs").write_text("async fn f(pods: Api<Pod>) { pods.delete(\"x\").await; }\n")
    (tmp_path / "scenarios").mkdir()
    (tmp_path / "scenarios" / "mod.rs").write_text("async fn f(pods: Api<Pod>) { pods.create(&pp, &p).await; }\n")
    assert operator_calls.scan(tmp_path) == {("", "pods"): {"list"}}
