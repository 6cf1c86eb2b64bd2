"""A Campaign's credentials from a Secret (#15), against the real control plane: the operator
runs as the chart's ServiceAccount with exactly the chart's RBAC (`get` on Secrets, nothing
more), reads the Secret its `scaling.metrics.prometheus.authRef` names, queries a real
Prometheus that demands basic auth (`--web.config.file`, bcrypt) and scales the Deployment on
a PromQL trigger; with the Secret deleted, MetricsAvailable=False names the Secret and the
Deployment keeps its size."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request

import bcrypt

from conftest import campaign, condition, deployment, free_port, terminate, wait_for

USER, PASSWORD = "ops", "s3cret-for-the-test"


def start_prometheus(workdir) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed (Debian: apt-get install prometheus; scripts/cluster-tests.sh installs it)"
    workdir.mkdir(parents=True, exist_ok=True)
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
    (workdir / "web.yml").write_text(json.dumps({"basic_auth_users": {USER: hashed}}))
    (workdir / "prometheus.yml").write_text(json.dumps({"global": {"scrape_interval": "1h"}}))
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--config.file={workdir / 'prometheus.yml'}", f"--web.config.file={workdir / 'web.yml'}",
         f"--storage.tsdb.path={workdir / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=(workdir / "prometheus.log").open("ab"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    auth = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()

    def ready():
        try:
            req = urllib.request.Request(f"{url}/-/ready", headers={"Authorization": auth})
            with urllib.request.urlopen(req, timeout=2) as r:
                return r.status == 200
        except OSError:
            return False
    wait_for(f"Prometheus at {url}", ready, 30)
    # Without the credentials it refuses: the operator can only read it through the Secret.
    try:
        urllib.request.urlopen(f"{url}/api/v1/query?query=vector(1)", timeout=2)
        raise AssertionError("Prometheus answered without credentials")
    except urllib.error.HTTPError as e:
        assert e.code == 401, e
    return proc, url


def secret(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque",
            "stringData": {"username": USER, "password": PASSWORD}}


def test_a_campaign_scales_on_a_promql_trigger_with_credentials_from_a_secret(
        cp, operator_factory, namespace, private_redis, tmp_path):
    proc, url = start_prometheus(tmp_path / "prometheus")
    try:
        cp.apply([deployment("shop", 2), secret("prom-auth")], "-n", namespace)
        cp.apply([campaign("sale", "shop", min_replicas=2, max_replicas=10, scaling={
            "scaleUp": {"stabilization": "0s", "maxStep": {"pods": 10, "percent": 500, "period": "1s"}},
            "metrics": {"prometheus": {"url": url, "authRef": {
                "secretName": "prom-auth", "usernameKey": "username", "passwordKey": "password"}}},
            "triggers": [{"name": "orders", "prometheus": {"query": "vector(60)", "threshold": 10}}],
        })], "-n", namespace)
        op = operator_factory(namespace, env={"REDIS_URL": private_redis.url})
        op.wait_ready()

        # 60 / 10 per replica = 6, read through the Secret's basic auth.
        wait_for("the Deployment at 6", lambda: cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 6)
        st = cp.get("campaign/sale", "-n", namespace)["status"]
        assert st["replicas"]["reason"].startswith("trigger orders 60 / 10 per replica = 6"), st["replicas"]
        assert "HTTP 401" not in condition({"status": st}, "MetricsAvailable").get("message", "")

        # The Secret goes: every Prometheus signal is unavailable, the condition names the
        # Secret (never its values), and the Deployment is not shrunk on a partial picture.
        cp.kubectl("-n", namespace, "delete", "secret", "prom-auth")
        missing = f"trigger orders: Secret {namespace}/prom-auth not found"
        cond = wait_for("MetricsAvailable naming the Secret", lambda: (
            c := condition(cp.get("campaign/sale", "-n", namespace), "MetricsAvailable")).get(
                "status") == "False" and missing in c.get("message", "") and c)
        assert PASSWORD not in json.dumps(cond) and PASSWORD not in op.log_text()
        time.sleep(2)
        assert cp.get("deployment/shop", "-n", namespace)["spec"]["replicas"] == 6

        # The Secret is back: the trigger is read again (a Secret is read on each resync).
        cp.apply([secret("prom-auth")], "-n", namespace)
        wait_for("the trigger read again", lambda: missing not in condition(
            cp.get("campaign/sale", "-n", namespace), "MetricsAvailable").get("message", ""))
    finally:
        terminate(proc)
