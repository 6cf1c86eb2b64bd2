"""Fixtures for the tests against a real Kubernetes control plane (etcd, kube-apiserver with
RBAC and service-account tokens, kube-controller-manager), started by
scripts/control-plane.sh. Nothing here is mocked: if the control plane cannot start, every
test errors with the reason.

Run: bash scripts/cluster-tests.sh   (what `make test` runs)
"""

from __future__ import annotations

import json
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field

import helm_python
import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "floodgate"
CONTROL_PLANE = REPO / "scripts" / "control-plane.sh"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:63799")
DATABASE_URL = os.environ.get("DATABASE_URL", "postgres://floodgate:floodgate@127.0.0.1:54329/floodgate")
# prometheus-operator's CRDs, for validating the chart's monitoring objects on the server
# (its Go module at this version ships them; fetched with `go mod download`).
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.85.0"


def run(cmd: list[str], *, input: str | None = None, env: dict | None = None, check: bool = True,
        timeout: float = 120) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, input=input, capture_output=True, text=True, env=env, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


@dataclass
class ControlPlane:
    bin: pathlib.Path
    admin_kubeconfig: pathlib.Path
    audit_log: pathlib.Path

    def audit(self, since: int = 0) -> list[dict]:
        """The API server's audit events (writes to floodgate.dev, deployments and their
        scale, leases, events) from byte offset `since` of the log, in order."""
        with self.audit_log.open("rb") as f:
            f.seek(since)
            return [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]

    def audit_offset(self) -> int:
        return self.audit_log.stat().st_size if self.audit_log.exists() else 0

    def env(self, kubeconfig: pathlib.Path | None = None) -> dict:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.admin_kubeconfig)
        env["PATH"] = f"{self.bin}:{env['PATH']}"
        return env

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                kubeconfig: pathlib.Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return run([str(self.bin / "kubectl"), *args], input=input, check=check,
                   env=self.env(kubeconfig), timeout=timeout)

    def get(self, *args: str, kubeconfig: pathlib.Path | None = None) -> dict:
        return json.loads(self.kubectl("get", *args, "-o", "json", kubeconfig=kubeconfig).stdout)

    def apply(self, docs, *args: str, check: bool = True, kubeconfig: pathlib.Path | None = None):
        text = docs if isinstance(docs, str) else yaml.safe_dump_all(docs)
        return self.kubectl("apply", "-f", "-", *args, input=text, check=check, kubeconfig=kubeconfig)

    def service_account_kubeconfig(self, namespace: str, name: str, path: pathlib.Path) -> pathlib.Path:
        run(["bash", str(CONTROL_PLANE), "operator-kubeconfig", namespace, name, str(path)])
        return path


def start_control_plane() -> ControlPlane:
    """Builds (first time) and starts the control plane; raises with the script's reason."""
    proc = subprocess.run(["bash", str(CONTROL_PLANE), "up"], capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"the Kubernetes control plane did not start:\n{proc.stderr[-4000:]}")
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in run(["bash", str(CONTROL_PLANE), "env"]).stdout.splitlines()
    )
    bin_dir = pathlib.Path(exports["PATH"].split(":")[0])
    return ControlPlane(bin=bin_dir, admin_kubeconfig=pathlib.Path(exports["KUBECONFIG"]),
                        audit_log=pathlib.Path(exports["FLOODGATE_AUDIT_LOG"]))


@pytest.fixture(scope="session")
def cp() -> ControlPlane:
    """The control plane; every test using it fails (never skips) when it cannot start."""
    try:
        return start_control_plane()
    except RuntimeError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def crds(cp: ControlPlane) -> list[str]:
    """The project's CRDs, applied as a user would (`kubectl apply -f crds/`), Established."""
    cp.kubectl("apply", "-f", str(REPO / "crds"))
    names = ["campaigns.floodgate.dev", "queueconfigs.floodgate.dev"]
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in names])
    return names


@pytest.fixture(scope="session")
def monitoring_crds(cp: ControlPlane) -> None:
    """prometheus-operator's ServiceMonitor, PodMonitor and PrometheusRule CRDs."""
    out = run(["go", "mod", "download", "-json", PROMETHEUS_OPERATOR], timeout=600)
    folder = pathlib.Path(json.loads(out.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    names = ["servicemonitors", "podmonitors", "prometheusrules"]
    for name in names:
        cp.kubectl("apply", "--server-side", "-f", str(folder / f"monitoring.coreos.com_{name}.yaml"))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s",
               *[f"crd/{n}.monitoring.coreos.com" for n in names])


@pytest.fixture
def namespace(cp: ControlPlane, request) -> str:
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    base = "".join(c if c.isalnum() else "-" for c in request.node.name.lower())[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    cp.kubectl("create", "namespace", name)
    # the namespace is usable once the serviceaccount controller made its default account
    for _ in range(100):
        if cp.kubectl("-n", name, "get", "serviceaccount", "default", check=False).returncode == 0:
            break
        time.sleep(0.1)
    yield name
    delete_namespace(cp, name)


def delete_namespace(cp: ControlPlane, name: str) -> None:
    """Deletes a namespace and waits until it is gone: one that hangs in Terminating is a
    finalizer that never completes, which fails the test (operators still running by then
    have had their chance: operator_factory deletes the Campaigns and QueueConfigs first)."""
    proc = cp.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=true", "--timeout=90s",
                      check=False, timeout=120)
    if proc.returncode != 0:
        left = cp.kubectl("-n", name, "get", "campaigns,queueconfigs", "-o", "name", check=False).stdout
        raise AssertionError(f"namespace {name} did not terminate in 90 s ({proc.stderr.strip()}); left: {left}")


def render_chart(values: dict, namespace: str, release: str = "floodgate") -> list[dict]:
    chart = helm_python.Chart.load(str(CHART))
    try:
        rendered = chart.render(values, name=release, namespace=namespace)
    finally:
        chart.close()
    docs = []
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def operator_rbac(docs: list[dict]) -> list[dict]:
    """The operator's ServiceAccount and the roles and bindings the chart gives it, exactly."""
    out = []
    for d in docs:
        if d["kind"] not in RBAC_KINDS:
            continue
        component = d["metadata"].get("labels", {}).get("app.kubernetes.io/component")
        # by component; the name only for an object without one (never the aggregated
        # ClusterRoles or `helm test` account, whose names may hold "operator" by namespace)
        if component == "operator" or (component is None and "operator" in d["metadata"]["name"]):
            out.append(d)
    assert any(d["kind"] == "ServiceAccount" for d in out), "chart renders no operator ServiceAccount"
    return out


def operator_args(docs: list[dict]) -> list[str]:
    """The operator container's arguments as the chart renders them, minus `--listen` (the
    test picks a free port) and the leading subcommand."""
    dep = next(d for d in docs if d["kind"] == "Deployment"
               and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "operator")
    (container,) = [c for c in dep["spec"]["template"]["spec"]["containers"] if c["name"] == "operator"] or \
        dep["spec"]["template"]["spec"]["containers"][:1]
    args = list(container.get("args", []))
    assert args and args[0] == "controller", args
    out, skip = [], False
    for a in args[1:]:
        if skip:
            skip = False
        elif a == "--listen":
            skip = True
        elif not a.startswith("--listen="):
            out.append(a)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cargo_binary(name: str) -> pathlib.Path:
    """A workspace binary, built (debug) if needed; cargo is a no-op when it is fresh.
    FLOODGATE_OPERATOR_BIN / FLOODGATE_APP_BIN run another build instead (for example the
    release binaries, or an older build to show a test fails without a fix)."""
    override = os.environ.get({"floodgate-operator": "FLOODGATE_OPERATOR_BIN", "floodgate-app": "FLOODGATE_APP_BIN"}[name])
    if override:
        return pathlib.Path(override)
    package = {"floodgate-operator": "floodgate-operator", "floodgate-app": "floodgate-app"}[name]
    run(["cargo", "build", "-q", "-p", package, "--bin", name], timeout=1800)
    path = TARGET / "debug" / name
    assert path.exists(), f"{path} missing after cargo build"
    return path


def http_get(url: str, timeout: float = 2) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def metric(text: str, name: str, labels: dict | None = None) -> float | None:
    """The value of one sample in a Prometheus text exposition, None when absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, _, value = line.rpartition(" ")
        series, _, rest = head.partition("{")
        if series != name:
            continue
        if labels and not all(f'{k}="{v}"' in rest for k, v in labels.items()):
            continue
        return float(value)
    return None


class LocalProcess:
    """A server process of ours: `url`, `proc` and `log` are the subclass's; /readyz says ready."""

    def ready(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.url}/readyz", timeout=1)
            return True
        except Exception:
            return False

    def wait_ready(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"{self.url} exited {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if self.ready():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.url} not ready in {seconds} s:\n{self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def terminate(proc: subprocess.Popen | None, sig: int = signal.SIGTERM, wait: float = 10) -> int | None:
    """Signals a process and waits for it, killing it when it does not exit in time."""
    if not proc:
        return None
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(5)


@dataclass
class Operator(LocalProcess):
    """One `floodgate-operator controller` process, authenticated by `kubeconfig`."""
    kubeconfig: pathlib.Path
    log: pathlib.Path
    lease_namespace: str
    prefix: str
    args: list[str] = field(default_factory=list)
    env: dict = field(default_factory=dict)
    identity: str = ""
    port: int = 0
    proc: subprocess.Popen | None = None

    def start(self) -> "Operator":
        self.port = self.port or free_port()
        self.identity = self.identity or f"op-{secrets.token_hex(3)}"
        env = dict(os.environ)
        env.update({
            "KUBECONFIG": str(self.kubeconfig),
            "REDIS_URL": REDIS_URL,
            "FLOODGATE_REDIS_PREFIX": self.prefix,
            "POD_NAMESPACE": self.lease_namespace,
            "POD_NAME": self.identity,
            "FLOODGATE_OPERATOR_LISTEN": f"127.0.0.1:{self.port}",
            "RUST_LOG": env.get("FLOODGATE_OPERATOR_LOG", "info,kube=warn"),
        })
        env.update(self.env)
        self.proc = subprocess.Popen([str(cargo_binary("floodgate-operator")), "controller", *self.args],
                                     env=env, stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> str:
        return http_get(f"{self.url}/metrics")

    def send(self, sig: int) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, wait: float = 15) -> int | None:
        return terminate(self.proc, sig, wait)

    def forbidden(self) -> list[str]:
        """Log lines where the authorizer refused the operator (least privilege broken): RBAC's
        "User ... cannot <verb> resource ...". Admission refusals such as writes into a
        terminating namespace are not authorization failures."""
        return [l for l in self.log_text().splitlines() if "cannot " in l and "resource" in l
                and ("403" in l or "forbidden" in l.lower())]


@pytest.fixture
def operator_factory(cp: ControlPlane, crds, namespace, tmp_path):
    """Starts operators as the chart's ServiceAccount with exactly the chart's RBAC.

    factory(namespace, values={}, args=[]) renders the chart into `namespace`, applies the
    operator's ServiceAccount, roles and bindings, and starts a process with the arguments the
    chart gives the operator container (plus `args`), authenticated by a token of that
    account. Every operator is stopped afterwards (before the test's namespace is deleted),
    and any authorization failure in its log fails the test."""
    started: list[Operator] = []
    prefix = f"fgcp-{secrets.token_hex(4)}:"

    def factory(namespace: str, values: dict | None = None, args: list[str] | None = None,
                env: dict | None = None) -> Operator:
        docs = render_chart(values or {}, namespace)
        rbac = operator_rbac(docs)
        cp.apply(rbac)
        sa = next(d["metadata"]["name"] for d in rbac if d["kind"] == "ServiceAccount")
        kubeconfig = cp.service_account_kubeconfig(namespace, sa, tmp_path / f"{sa}-{len(started)}.kubeconfig")
        op = Operator(kubeconfig=kubeconfig, log=tmp_path / f"operator-{len(started)}.log",
                      lease_namespace=namespace, prefix=prefix, args=operator_args(docs) + (args or []),
                      env=env or {})
        started.append(op.start())
        return op

    factory.prefix = prefix
    factory.namespaces = {namespace}  # tests add the other namespaces they create
    yield factory
    # While the operators still run, their finalizers complete: delete what they manage first,
    # so neither this namespace nor another test's is left Terminating behind a finalizer.
    for ns in sorted(factory.namespaces):
        cp.kubectl("-n", ns, "delete", "campaigns,queueconfigs", "--all", "--wait=true", "--timeout=60s",
                   check=False, timeout=90)
    for op in started:
        op.stop()
    refused = [line for op in started for line in op.forbidden()]
    run(["bash", "-c", f"redis-cli -u {REDIS_URL} --scan --pattern '{prefix}*' | xargs -r redis-cli -u {REDIS_URL} del"],
        check=False)
    assert not refused, "the API server refused the operator (403):\n" + "\n".join(refused[:20])


def wait_for(what: str, probe, seconds: float = 30, every: float = 0.1):
    """Polls `probe()` until it returns something truthy; fails naming `what` and the last value."""
    deadline = time.monotonic() + seconds
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {seconds} s waiting for {what}; last: {last!r}")


@dataclass
class RedisServer:
    """A private redis-server on a free port (no persistence), for tests that let the operator
    CONFIG SET (global to a Redis; the shared one serves every other test) or that stop Redis."""
    workdir: pathlib.Path
    maxmemory: str = "0"
    policy: str = "noeviction"
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> "RedisServer":
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--maxmemory", self.maxmemory, "--maxmemory-policy", self.policy],
            stdout=(self.workdir / "redis.log").open("ab"), stderr=subprocess.STDOUT)
        wait_for(f"redis-server on port {self.port}", lambda: self.cli("ping", check=False) == "PONG", 10)
        return self

    def cli(self, *args: str, check: bool = True) -> str:
        return run(["redis-cli", "-u", self.url, *args], check=check, timeout=10).stdout.strip()

    def config_get(self, name: str) -> str:
        lines = self.cli("config", "get", name).split()
        return lines[1] if len(lines) > 1 else ""

    def stop(self) -> None:
        terminate(self.proc)


@pytest.fixture
def private_redis(tmp_path):
    """A RedisServer with noeviction and no maxmemory, stopped afterwards."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


def deployment(name: str, replicas: int) -> dict:
    """A Deployment like the chart's app (never runs here: no kubelet)."""
    labels = {"app.kubernetes.io/name": "floodgate", "app.kubernetes.io/component": "app",
              "app.kubernetes.io/instance": name}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                 "template": {"metadata": {"labels": labels},
                              "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}}},
    }


def iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def campaign(name: str, target: str, *, starts_in: float = -60, ends_in: float = 3600, prewarm: str = "1m",
             min_replicas: int = 4, max_replicas: int = 20, queues: list[str] | None = None,
             scaling: dict | None = None, redis: dict | None = None) -> dict:
    now = time.time()
    spec = {
        "target": {"deployment": target},
        "schedule": {"startsAt": iso(now + starts_in), "endsAt": iso(now + ends_in), "prewarm": prewarm},
        "queues": queues or [],
        "scaling": {"minReplicas": min_replicas, "maxReplicas": max_replicas, **(scaling or {})},
    }
    if redis:
        spec["redis"] = redis
    return {"apiVersion": "floodgate.dev/v1alpha1", "kind": "Campaign", "metadata": {"name": name}, "spec": spec}


def queue_config(name: str, queue_id: str | None = None, **spec) -> dict:
    return {"apiVersion": "floodgate.dev/v1alpha1", "kind": "QueueConfig", "metadata": {"name": name},
            "spec": {"queueId": queue_id or name, **spec}}


def condition(obj: dict, kind: str) -> dict:
    """One status condition of an object ({} when absent)."""
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c["type"] == kind:
            return c
    return {}


def events(cp: ControlPlane, namespace: str, name: str) -> list[dict]:
    """events.k8s.io Events regarding one object, oldest first."""
    items = cp.get("events.events.k8s.io", "-n", namespace)["items"]
    return [e for e in items if (e.get("regarding") or {}).get("name") == name]
