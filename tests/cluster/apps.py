"""The platform around the operator in the cluster tests: real `floodgate-app serve` processes
standing in for the app Deployment's pods, a private Redis, a real Prometheus scraping those
processes under the labels a Kubernetes service discovery would give them, and a decoy
exporter or two so that PromQL scoping is exercised.

The control plane has no kubelet, so the Deployment's Pods stay Pending and have no IPs. The
app runs as local processes instead; each one is registered in Prometheus as a target labelled
`namespace: <test namespace>` and `pod: <a pod name of the Deployment>` (the real Pending pods'
names when the caller passes them, else names shaped like a ReplicaSet's:
`<deployment>-<10 chars>-<5 chars>`), and reports that pod name as its replica id in
`<prefix>config:applied`, as the chart's pods do.

Used by tests/cluster/test_operator_lifecycle.py (fixture `platform_factory`) and, without
pytest, by tests/cluster/p7_cluster.py (the `Platform` class and `control_plane()`).

Nothing is skipped: a missing binary (floodgate-app, prometheus, redis-server) fails.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import os
import pathlib
import random
import secrets
import shutil
import socket
import string
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import conftest
from conftest import DATABASE_URL, ControlPlane, LocalProcess, RedisServer, free_port, run, terminate

# ----------------------------------------------------------------------------------------------
# >>> THE ONE PLACE where the operator's queue-depth source is chosen (tests and bench). <<<
#
# "prometheus" (default): no flag. Since 5f19e98 a Campaign that names a Prometheus
# (`scaling.metrics.prometheus.url`) reads queue depth from it too, scoped to its namespace and
# its Deployment's pods, and scrapes no pods (which have no IPs here anyway).
# "redis": `--queue-depth redis` reads the app's own waiting counter in Redis,
# `<prefix>{q:<queue>}:n` (app/src/queue/store.rs, KEYS[4] of join.lua): what the test used
# before Prometheus depth existed; FLOODGATE_TEST_QUEUE_DEPTH=redis selects it.
QUEUE_DEPTH_SOURCE = os.environ.get("FLOODGATE_TEST_QUEUE_DEPTH", "prometheus")
QUEUE_DEPTH_ARGS = {
    "prometheus": [],
    "redis": ["--queue-depth", "redis", "--redis-depth-key", "{prefix}{q:{queue}}:n"],
}
# ----------------------------------------------------------------------------------------------

POD_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the ReplicaSet controller uses
DECOY_WAITING = 99_999


def require_binary(name: str, path: str | os.PathLike | None = None) -> pathlib.Path:
    """The binary's path; raises (never skips) when it is missing."""
    found = pathlib.Path(path) if path else (pathlib.Path(p) if (p := shutil.which(name)) else None)
    if not found or not found.exists():
        raise AssertionError(f"{name} not found ({path or 'not on PATH'}): the cluster tests need it")
    return found


def control_plane() -> ControlPlane:
    """The same ControlPlane as conftest's `cp` fixture, for scripts run without pytest."""
    return conftest.start_control_plane()


def operator_extra_args(chart_args: list[str] = ()) -> list[str]:
    """Flags for `floodgate-operator controller` beyond what the chart renders (`chart_args`,
    which conftest's operator_factory already passes): the queue-depth source above."""
    return [] if "--queue-depth" in chart_args else list(QUEUE_DEPTH_ARGS[QUEUE_DEPTH_SOURCE])


def wait_for(probe, *, timeout: float, message, interval: float = 0.2):
    """Calls probe() until it returns something truthy and returns that; raises AssertionError
    with `message` (a string, or a callable giving one at the time of failure) and the last
    value (or exception) seen after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            value = probe()
            if value:
                return value
            last = value
        except Exception as e:  # noqa: BLE001 - reported below
            last = f"{type(e).__name__}: {e}"
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"{text} (waited {timeout:.0f} s; last seen: {last!r})")
        time.sleep(interval)


def pod_names(deployment: str, n: int) -> list[str]:
    """Names shaped like a ReplicaSet's pods: <deployment>-<10 chars>-<5 chars>."""
    template_hash = "".join(random.choices(POD_NAME_ALPHABET, k=10))
    return [f"{deployment}-{template_hash}-{''.join(random.choices(POD_NAME_ALPHABET, k=5))}" for _ in range(n)]


def mint_token(secret: str, user_id: int, ttl: int = 3600) -> str:
    """An HS256 access token the app accepts (scripts/bench_tokens.py's claims)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"sub": str(user_id), "roles": ["customer"], "iat": now, "exp": now + ttl,
              "iss": "floodgate", "aud": "floodgate-api"}
    body = b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = b64(hmac.new(secret.encode(), f"{header}.{body}".encode(), hashlib.sha256).digest())
    return f"{header}.{body}.{sig}"


def http_json(method: str, url: str, *, token: str | None = None, timeout: float = 5) -> tuple[int, dict]:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    if token:
        req.add_header("authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            body = r.read()
            return r.status, (json.loads(body) if body else {})
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, {"raw": body.decode(errors="replace")}


def _tail(path: pathlib.Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else "(no log)"


# ---------------------------------------------------------------------------------------- Redis

class Resp:
    """A minimal Redis client (RESP2 over one socket): the bench polls config:applied every few
    milliseconds, where a redis-cli process per read would cost more than what it measures."""

    def __init__(self, url: str):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 6379), timeout=5)
        self.file = self.sock.makefile("rb")
        self.lock = threading.Lock()
        if u.password:
            self(*(["AUTH", u.username, u.password] if u.username else ["AUTH", u.password]))
        if u.path and u.path.strip("/"):
            self("SELECT", u.path.strip("/"))

    def __call__(self, *args):
        out = [f"*{len(args)}\r\n".encode()]
        for a in args:
            b = str(a).encode()
            out.append(f"${len(b)}\r\n".encode() + b + b"\r\n")
        with self.lock:
            self.sock.sendall(b"".join(out))
            return self._reply()

    def _reply(self):
        line = self.file.readline()
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(f"redis: {rest.decode()}")
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self.file.read(n + 2)[:-2]
            return data.decode(errors="replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"redis: unexpected reply {line!r}")

    def close(self):
        self.file.close()
        self.sock.close()


# ------------------------------------------------------------------------------------------ app

@dataclass
class AppProcess(LocalProcess):
    """One `floodgate-app serve`, standing in for one pod of the app Deployment."""
    binary: pathlib.Path
    pod: str
    prefix: str
    redis_url: str
    database_url: str
    jwt_secret: str
    log: pathlib.Path
    port: int = 0
    extra_env: dict = field(default_factory=dict)
    launcher: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "AppProcess":
        self.port = self.port or free_port()
        env = dict(os.environ)
        env.update({
            "FLOODGATE_ENV": "dev",
            "FLOODGATE_LISTEN_ADDR": f"127.0.0.1:{self.port}",
            "FLOODGATE_REDIS_PREFIX": self.prefix,
            "REDIS_URL": self.redis_url,
            "DATABASE_URL": self.database_url,
            "FLOODGATE_JWT_SECRET": self.jwt_secret,
            "FLOODGATE_REPLICA_ID": self.pod,
            "FLOODGATE_DB_POOL_SIZE": "4",
            "FLOODGATE_AUTH_LIMIT_PER_IP": "100000000",
            "FLOODGATE_AUTH_LIMIT_PER_EMAIL": "100000000",
            "RUST_LOG": os.environ.get("FLOODGATE_APP_LOG", "warn"),
        })
        env.update(self.extra_env)
        self.proc = subprocess.Popen([*self.launcher, str(self.binary), "serve"], env=env,
                                     stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        return self

    def queue(self, queue_id: str) -> dict:
        status, body = http_json("GET", f"{self.url}/api/v1/queues/{queue_id}")
        assert status == 200, f"GET /api/v1/queues/{queue_id} on {self.pod}: {status} {body}"
        return body

    def join(self, queue_id: str, token: str) -> tuple[int, dict]:
        return http_json("POST", f"{self.url}/api/v1/queues/{queue_id}/tokens", token=token)

    def stop(self) -> None:
        terminate(self.proc)


# ---------------------------------------------------------------------------------------- decoy

class _DecoyHandler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - http.server's name
        server: DecoyExporter = self.server.owner  # type: ignore[attr-defined]
        body = server.exposition().encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain; version=0.0.4")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # quiet
        pass


class DecoyExporter:
    """A /metrics that looks like a Floodgate app in trouble: a huge queue and every request
    slower than the largest latency bucket. Registered in Prometheus as a pod the operator must
    NOT count (another namespace, or another Deployment in the same namespace). Its histogram
    only has the +Inf bucket, so whatever the app's buckets are, an unscoped
    `sum by (le)` puts p95 at the app's largest finite bound (10 s today)."""

    def __init__(self, queue_ids: list[str]):
        self.queue_ids = queue_ids
        self.count = 0
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _DecoyHandler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> "DecoyExporter":
        self.thread.start()
        return self

    def exposition(self) -> str:
        with self.lock:
            self.count += 1000
            n = self.count
        lines = ["# TYPE floodgate_runtime_config_version gauge", "floodgate_runtime_config_version 1",
                 "# TYPE floodgate_queue_waiting gauge"]
        lines += [f'floodgate_queue_waiting{{queue="{q}"}} {DECOY_WAITING}' for q in self.queue_ids]
        h = "floodgate_http_request_duration_seconds"
        labels = 'method="GET",route="/decoy",status="200"'
        lines += [f"# TYPE {h} histogram", f'{h}_bucket{{{labels},le="+Inf"}} {n}',
                  f"{h}_sum{{{labels}}} {n * 30.0}", f"{h}_count{{{labels}}} {n}"]
        return "\n".join(lines) + "\n"

    def stop(self) -> None:
        if self.thread.is_alive():
            self.httpd.shutdown()
        self.httpd.server_close()


# ----------------------------------------------------------------------------------- Prometheus

@dataclass
class Prometheus:
    """A real Prometheus (Debian's /usr/bin/prometheus) with static targets, scrape every 1 s."""
    workdir: pathlib.Path
    groups: list[dict]  # static_configs entries: {"targets": [...], "labels": {...}}
    port: int = 0
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Prometheus":
        binary = require_binary("prometheus")
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "floodgate-app", "metrics_path": "/metrics",
                                "static_configs": self.groups}],
        }
        (self.workdir / "prometheus.yml").write_text(json.dumps(config, indent=2))  # JSON is YAML
        self.proc = subprocess.Popen(
            [str(binary), f"--config.file={self.workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={self.workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{self.port}",
             "--web.enable-lifecycle", "--storage.tsdb.retention.time=1h", "--log.level=warn"],
            stdout=(self.workdir / "prometheus.log").open("ab"), stderr=subprocess.STDOUT)
        return self

    def api(self, path: str, **params) -> dict:
        url = f"{self.url}/api/v1/{path}" + (f"?{urllib.parse.urlencode(params)}" if params else "")
        with urllib.request.urlopen(url, timeout=3) as r:
            body = json.load(r)
        assert body.get("status") == "success", f"Prometheus {path}: {body}"
        return body["data"]

    def query(self, promql: str) -> list[dict]:
        return self.api("query", query=promql)["result"]

    def scalar(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def wait_targets_up(self, expected: int, seconds: float = 30) -> list[dict]:
        def up():
            if self.proc and self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{_tail(self.workdir / 'prometheus.log')}")
            targets = self.api("targets", state="active")["activeTargets"]
            healthy = [t for t in targets if t["health"] == "up"]
            return targets if len(targets) == expected and len(healthy) == expected else None
        return wait_for(up, timeout=seconds, interval=0.25,
                        message=f"Prometheus at {self.url} did not report {expected} targets up")

    def stop(self) -> None:
        terminate(self.proc)


def waiting_query(namespace: str, deployment: str, queue_id: str) -> str:
    """Queue depth as the operator is meant to read it from Prometheus (namespace-scoped, pods
    of the Deployment only, max over pods: every replica reports the same Redis count)."""
    return (f'max(floodgate_queue_waiting{{namespace="{namespace}",'
            f'pod=~"{deployment}-[a-z0-9]+-[a-z0-9]+",queue="{queue_id}"}})')


# ------------------------------------------------------------------------------------- platform

@dataclass
class Platform:
    """N app processes ("pods" of `deployment` in `namespace`), a Prometheus scraping them and
    two decoys, and (unless `redis_url` is given) a private Redis."""
    namespace: str
    prefix: str
    workdir: pathlib.Path
    deployment: str = "floodgate-app"
    replicas: int = 2
    pods: list[str] | None = None
    queue_ids: list[str] = field(default_factory=list)
    redis_url: str | None = None
    database_url: str = DATABASE_URL
    app_binary: pathlib.Path | None = None
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(24))
    redis: RedisServer | None = None
    apps: list[AppProcess] = field(default_factory=list)
    decoys: list[DecoyExporter] = field(default_factory=list)
    prometheus: Prometheus | None = None
    launcher: list[str] = field(default_factory=list)  # e.g. ["taskset", "-c", "0"] for the apps
    _resp: Resp | None = None

    def start(self) -> "Platform":
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> "Platform":
        self.workdir.mkdir(parents=True, exist_ok=True)
        binary = require_binary("floodgate-app", self.app_binary or conftest.cargo_binary("floodgate-app"))
        if self.redis_url is None:
            # a non-default maxmemory and policy, so a restore is distinguishable from "never changed"
            self.redis = RedisServer(self.workdir / "redis", maxmemory="1gb", policy="volatile-lru").start()
            self.redis_url = self.redis.url
        pods = list(self.pods or pod_names(self.deployment, self.replicas))[: self.replicas]
        assert len(pods) == self.replicas, f"{self.replicas} pod names needed, got {pods}"
        for pod in pods:
            self.apps.append(AppProcess(binary=binary, pod=pod, prefix=self.prefix, redis_url=self.redis_url,
                                        database_url=self.database_url, jwt_secret=self.jwt_secret,
                                        log=self.workdir / f"app-{pod}.log", launcher=self.launcher).start())
        for app in self.apps:
            app.wait_ready()
        other_ns_pod = pod_names(self.deployment, 1)[0]
        same_ns_other_deployment = pod_names(f"{self.deployment}-admin", 1)[0]
        self.decoys = [DecoyExporter(self.queue_ids).start(), DecoyExporter(self.queue_ids).start()]
        groups = [{"targets": [f"127.0.0.1:{a.port}"], "labels": {"namespace": self.namespace, "pod": a.pod}}
                  for a in self.apps]
        groups += [
            # the same Deployment name in another namespace
            {"targets": [f"127.0.0.1:{self.decoys[0].port}"],
             "labels": {"namespace": f"{self.namespace}-elsewhere", "pod": other_ns_pod}},
            # another Deployment in the same namespace whose name starts with this one's
            {"targets": [f"127.0.0.1:{self.decoys[1].port}"],
             "labels": {"namespace": self.namespace, "pod": same_ns_other_deployment}},
        ]
        self.prometheus = Prometheus(self.workdir / "prometheus", groups).start()
        self.prometheus.wait_targets_up(len(groups))
        return self

    # helpers for the tests and the bench
    def tokens(self, n: int, first_user: int | None = None) -> list[str]:
        start = first_user if first_user is not None else random.randint(10_000_000, 900_000_000)
        return [mint_token(self.jwt_secret, start + i) for i in range(n)]

    def join(self, queue_id: str, tokens: list[str], workers: int = 8) -> list[int]:
        """Each token joins once, spread round-robin over the app processes; the status codes."""
        def one(i_tok):
            i, tok = i_tok
            return self.apps[i % len(self.apps)].join(queue_id, tok)[0]
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, enumerate(tokens)))

    def resp(self) -> Resp:
        if self._resp is None:
            self._resp = Resp(self.redis_url)
        return self._resp

    def applied(self) -> dict[str, int]:
        """`<prefix>config:applied`: replica id -> runtime config version it applied."""
        vals = self.resp()("HGETALL", f"{self.prefix}config:applied") or []
        return {vals[i]: int(vals[i + 1]) for i in range(0, len(vals) - 1, 2)}

    def published_version(self) -> int:
        raw = self.resp()("GET", f"{self.prefix}config")
        return int(json.loads(raw).get("version", 0)) if raw else 0

    def waiting_query(self, queue_id: str) -> str:
        return waiting_query(self.namespace, self.deployment, queue_id)

    def logs(self) -> str:
        parts = [f"--- {a.log.name}\n{_tail(a.log, 1500)}" for a in self.apps]
        if self.prometheus:
            parts.append(f"--- prometheus.log\n{_tail(self.prometheus.workdir / 'prometheus.log', 1500)}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self._resp:
            self._resp.close()
            self._resp = None
        if self.prometheus:
            self.prometheus.stop()
        for d in self.decoys:
            d.stop()
        for a in self.apps:
            a.stop()
        if self.redis:
            self.redis.stop()


def pending_pod_names(cp: ControlPlane, namespace: str, deployment: str, n: int, timeout: float = 30) -> list[str]:
    """The names of the Deployment's (Pending) pods, once the ReplicaSet controller made n."""
    def names():
        rs = cp.get("replicasets", "-n", namespace)["items"]
        owned = {r["metadata"]["name"] for r in rs
                 if any(o.get("name") == deployment for o in r["metadata"].get("ownerReferences", []))}
        pods = cp.get("pods", "-n", namespace)["items"]
        found = sorted(p["metadata"]["name"] for p in pods
                       if any(o.get("name") in owned for o in p["metadata"].get("ownerReferences", [])))
        return found if len(found) >= n else None
    return wait_for(names, timeout=timeout, message=f"the ReplicaSet of {deployment} did not create {n} pods")[:n]


def app_deployment(name: str, replicas: int, image: str = "registry.k8s.io/pause:3.10") -> dict:
    """A Deployment named and labelled like the chart's app (it never runs: no kubelet)."""
    labels = {"app.kubernetes.io/name": "floodgate", "app.kubernetes.io/instance": "floodgate",
              "app.kubernetes.io/component": "app"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "app", "image": image,
                                                  "ports": [{"name": "http", "containerPort": 8080}]}]}},
        },
    }


@pytest.fixture
def platform_factory(tmp_path):
    """factory(namespace, prefix, queue_ids=[...], pods=None, replicas=2) -> a started Platform
    (debug floodgate-app, private Redis, Prometheus, decoys); everything stops at teardown."""
    started: list[Platform] = []

    def factory(namespace: str, prefix: str, **kwargs) -> Platform:
        p = Platform(namespace=namespace, prefix=prefix, workdir=tmp_path / f"platform-{len(started)}", **kwargs)
        started.append(p)
        return p.start()

    yield factory
    for p in started:
        p.stop()
