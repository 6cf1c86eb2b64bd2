"""TLS to the dependencies and PgBouncer as rendered: the CA Secrets (and the Redis client
certificate) mounted where the settings point, in the pods that use them; the pooler mode
with its direct migration URL; nothing mounted or set by default."""

from __future__ import annotations

import helm_python
import pytest

from conftest import find, one, render
from helpers import APP, FULL, OPERATOR, container, env_of, pod_spec, secret_data, validate_manifest

TLS = {
    "tls": {
        "postgresCaSecret": "pg-ca",
        "redisCaSecret": "redis-ca",
        "redisClientCertSecret": "redis-client",
        "prometheusCaSecret": "prom-ca",
    },
    "secrets": {"redisUrl": "rediss://redis.example:6380"},
}


def mounts(c: dict) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}


def secrets(doc: dict) -> dict[str, str]:
    return {v["name"]: v["secret"]["secretName"] for v in pod_spec(doc).get("volumes", []) if "secret" in v}


def test_tls_secrets_are_mounted_where_the_settings_point(chart):
    manifests = render(chart, TLS)
    app_doc = one(manifests, "Deployment", APP)
    op_doc = one(manifests, "Deployment", OPERATOR)
    for doc in (app_doc, op_doc):
        validate_manifest(doc)
    assert secrets(app_doc) == {"tls-postgres": "pg-ca", "tls-redis": "redis-ca", "tls-redis-client": "redis-client"}
    assert secrets(op_doc) == {"tls-redis": "redis-ca", "tls-redis-client": "redis-client", "tls-prometheus": "prom-ca"}
    for name in ("migrate", "app"):
        c = container(app_doc, name)
        tls = {k: v for k, v in mounts(c).items() if k.startswith("tls-")}
        assert tls == {
            "tls-postgres": "/etc/floodgate/tls/postgres",
            "tls-redis": "/etc/floodgate/tls/redis",
            "tls-redis-client": "/etc/floodgate/tls/redis-client",
        }, name
        env = env_of(c)
        assert env["FLOODGATE_REDIS_CA_FILE"]["value"] == "/etc/floodgate/tls/redis/ca.crt"
        assert env["FLOODGATE_REDIS_CLIENT_CERT_FILE"]["value"] == "/etc/floodgate/tls/redis-client/tls.crt"
        assert env["FLOODGATE_REDIS_CLIENT_KEY_FILE"]["value"] == "/etc/floodgate/tls/redis-client/tls.key"
    op = container(op_doc, "operator")
    env = env_of(op)
    assert env["FLOODGATE_PROMETHEUS_CA_FILE"]["value"] == "/etc/floodgate/tls/prometheus/ca.crt"
    assert env["FLOODGATE_REDIS_CA_FILE"]["value"] == "/etc/floodgate/tls/redis/ca.crt"
    assert mounts(op)["tls-prometheus"] == "/etc/floodgate/tls/prometheus"


def test_no_tls_material_by_default(rendered):
    for deploy in (APP, OPERATOR):
        doc = one(rendered["default"], "Deployment", deploy)
        assert not [v for v in secrets(doc) if v.startswith("tls-")]
        for c in pod_spec(doc)["containers"] + pod_spec(doc).get("initContainers", []):
            assert not [k for k in env_of(c) if k.endswith("_CA_FILE") or "CLIENT_CERT" in k]
    env = env_of(container(one(rendered["default"], "Deployment", APP), "app"))
    assert env["FLOODGATE_DB_POOLER"]["value"] == "none"
    assert "FLOODGATE_DB_MIGRATION_URL" not in env


def test_transaction_pooler_migrates_through_a_direct_url(chart):
    direct = "postgres://floodgate:pw@postgres.example:5432/floodgate"
    manifests = render(
        chart,
        {
            "app": {"dbPooler": "transaction"},
            "secrets": {"migrationDatabaseUrl": direct, "databaseUrl": "postgres://floodgate:pw@pgbouncer:6432/floodgate"},
        },
    )
    assert secret_data(one(manifests, "Secret", FULL))["database-migration-url"] == direct
    for name in ("migrate", "app"):
        env = env_of(container(one(manifests, "Deployment", APP), name))
        assert env["FLOODGATE_DB_POOLER"]["value"] == "transaction"
        ref = env["FLOODGATE_DB_MIGRATION_URL"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": FULL, "key": "database-migration-url"}


def test_schema_refuses_an_unknown_pooler_and_a_bad_secret_name(chart):
    for values in ({"app": {"dbPooler": "session"}}, {"tls": {"redisCaSecret": "Not A Name"}}):
        with pytest.raises(Exception, match="dbPooler|redisCaSecret"):
            render(chart, values)
