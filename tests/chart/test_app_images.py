"""The app's goods image store as rendered (app.images): a local folder on a volume by
default, S3 with its bucket, region, endpoint and the key pair from a Secret reference, and
the render refusing S3 without a bucket."""

from __future__ import annotations

import helm_python
import pytest

from conftest import PRODUCTION, one, render
from helpers import APP, container, env_of, pod_spec

MOUNT = "/var/lib/floodgate/images"


def app_of(manifests):
    doc = one(manifests, "Deployment", APP)
    return doc, container(doc, "app")


def test_default_is_a_local_folder_on_a_volume(rendered):
    doc, app = app_of(rendered["default"])
    env = env_of(app)
    assert env["FLOODGATE_IMAGE_STORE"]["value"] == "local"
    assert env["FLOODGATE_IMAGE_DIR"]["value"] == MOUNT
    # the root filesystem is read-only: the folder must be a volume
    (mount,) = [m for m in app["volumeMounts"] if m["mountPath"] == MOUNT]
    (volume,) = [v for v in pod_spec(doc)["volumes"] if v["name"] == mount["name"]]
    assert volume["emptyDir"]["sizeLimit"] == "1Gi"
    assert int(env["FLOODGATE_IMAGE_MAX_BYTES"]["value"]) == 5 * 1024 * 1024
    assert "FLOODGATE_IMAGE_S3_BUCKET" not in env and "AWS_ACCESS_KEY_ID" not in env


def test_local_folder_on_a_claim(chart):
    doc, app = app_of(render(chart, {"app": {"images": {"local": {"existingClaim": "goods-images"}}}}))
    (mount,) = [m for m in app["volumeMounts"] if m["mountPath"] == MOUNT]
    (volume,) = [v for v in pod_spec(doc)["volumes"] if v["name"] == mount["name"]]
    assert volume["persistentVolumeClaim"]["claimName"] == "goods-images"


def test_s3_with_credentials_from_a_secret(chart):
    values = {
        "app": {
            "images": {
                "store": "s3",
                "maxBytes": 1048576,
                "s3": {
                    "bucket": "goods",
                    "region": "eu-west-1",
                    "endpoint": "http://minio.storage:9000",
                    "credentials": {"secretName": "s3-keys", "accessKeyIdKey": "id", "secretAccessKeyKey": "secret"},
                },
            }
        }
    }
    doc, app = app_of(render(chart, values))
    env = env_of(app)
    assert env["FLOODGATE_IMAGE_STORE"]["value"] == "s3"
    assert env["FLOODGATE_IMAGE_S3_BUCKET"]["value"] == "goods"
    assert env["FLOODGATE_IMAGE_S3_REGION"]["value"] == "eu-west-1"
    assert env["FLOODGATE_IMAGE_S3_ENDPOINT"]["value"] == "http://minio.storage:9000"
    assert env["FLOODGATE_IMAGE_MAX_BYTES"]["value"] == "1048576"
    for name, key in (("AWS_ACCESS_KEY_ID", "id"), ("AWS_SECRET_ACCESS_KEY", "secret")):
        assert "value" not in env[name], f"{name} must come from the Secret"
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "s3-keys", "key": key}
    assert "FLOODGATE_IMAGE_DIR" not in env
    assert all(m["mountPath"] != MOUNT for m in app["volumeMounts"])
    # the migrate init container gets the same environment
    assert env_of(container(doc, "migrate"))["FLOODGATE_IMAGE_S3_BUCKET"]["value"] == "goods"


def test_s3_store_opens_the_apps_network_policy_to_the_endpoint(chart):
    def app_egress(values):
        return one(render(chart, values), "NetworkPolicy", APP)["spec"]["egress"]

    s3 = {"app": {"images": {"store": "s3", "s3": {"bucket": "goods"}}}}
    assert {"ports": [{"port": 443, "protocol": "TCP"}]} in app_egress(s3)
    minio = {**s3, "networkPolicy": {"objectStore": {"to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}], "port": 9000}}}
    assert {"to": [{"ipBlock": {"cidr": "10.40.0.0/16"}}], "ports": [{"port": 9000, "protocol": "TCP"}]} in app_egress(minio)
    # a local folder needs no egress
    assert all(str(p["port"]) != "443" for r in app_egress({}) for p in r["ports"])


def test_s3_without_credentials_uses_the_pod_identity(chart):
    _, app = app_of(render(chart, {"app": {"images": {"store": "s3", "s3": {"bucket": "goods"}}}}))
    env = env_of(app)
    assert "AWS_ACCESS_KEY_ID" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert "FLOODGATE_IMAGE_S3_ENDPOINT" not in env


def test_production_example_uses_s3_and_lets_uploads_through_the_ingress(rendered):
    env = env_of(app_of(rendered["production"])[1])
    assert env["FLOODGATE_IMAGE_STORE"]["value"] == "s3"
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == PRODUCTION["secrets"]["existingSecret"]
    body = PRODUCTION["app"]["ingress"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert body.endswith("m") and int(body[:-1]) * 1024 * 1024 > int(env["FLOODGATE_IMAGE_MAX_BYTES"]["value"])


def test_s3_needs_a_bucket(chart):
    with pytest.raises(helm_python.HelmRenderError, match="app.images.s3.bucket"):
        render(chart, {"app": {"images": {"store": "s3"}}})


@pytest.mark.parametrize(
    "images",
    [{"store": "gcs"}, {"maxBytes": 0}, {"maxPerGoods": 1000}, {"s3": {"bucket": "Not A Bucket"}}, {"s3": {"endpoint": "minio:9000"}}],
)
def test_schema_refuses_bad_image_values(chart, images):
    with pytest.raises(helm_python.HelmError):
        render(chart, {"app": {"images": images}})


def test_notes_warn_when_local_images_cannot_be_shared(chart):
    def notes(values):
        return chart.render(values, name="floodgate", namespace="floodgate")["floodgate/templates/NOTES.txt"]

    warning = 'app.images.store is "local" on an emptyDir'
    assert warning in notes({})  # two replicas by default, and the operator scales them
    assert warning not in notes({"app": {"images": {"store": "s3", "s3": {"bucket": "goods"}}}})
    assert warning not in notes({"app": {"images": {"local": {"existingClaim": "goods-images"}}}})
    assert warning not in notes({"app": {"replicaCount": 1}, "operator": {"enabled": False}})
