"""Offline validation of the CRDs and the example manifests.

kubectl cannot validate without an API server, so this checks what a server would check
structurally:
  * every crds/*.yaml is a valid apiextensions.k8s.io/v1 CustomResourceDefinition
    (kubernetes-validate ships the Kubernetes schemas);
  * every crds/examples/*.yaml validates against its CRD's own openAPIV3Schema;
  * every crds/examples/invalid/*.yaml is rejected, for the reasons named in the file.

Run: python3 -m pytest operator/tests   (needs: pip install jsonschema kubernetes-validate pytest pyyaml)
"""

import copy
import pathlib

import jsonschema
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRD_FILES = sorted((ROOT / "crds").glob("*.yaml"))
EXAMPLES = sorted((ROOT / "crds" / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "crds" / "examples" / "invalid").glob("*.yaml"))


def to_json_schema(schema):
    """OpenAPI v3.0 `nullable: true` becomes a JSON-schema type union; the x-kubernetes-*
    extensions and `format`s jsonschema does not know are left for it to ignore."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.pop("nullable", False) and "type" in node:
                node["type"] = [node["type"], "null"]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return schema


def load_crds():
    crds = {}
    for path in CRD_FILES:
        crd = yaml.safe_load(path.read_text())
        crds[crd["spec"]["names"]["kind"]] = crd
    return crds


def validator_for(manifest):
    crd = load_crds()[manifest["kind"]]
    version = next(v for v in crd["spec"]["versions"] if manifest["apiVersion"].endswith("/" + v["name"]))
    schema = to_json_schema(version["schema"]["openAPIV3Schema"])
    return jsonschema.Draft7Validator(schema)


def test_there_is_something_to_check():
    assert len(CRD_FILES) == 2
    assert len(EXAMPLES) >= 2
    assert len(INVALID) >= 1


@pytest.mark.parametrize("path", CRD_FILES, ids=lambda p: p.name)
def test_crd_is_a_valid_kubernetes_object(path):
    crd = yaml.safe_load(path.read_text())
    # strict: unknown fields anywhere in the CRD are errors, as `kubectl apply --validate=strict`.
    kubernetes_validate.validate(crd, "1.34", strict=True)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_matches_its_crd(path):
    manifest = yaml.safe_load(path.read_text())
    errors = sorted(validator_for(manifest).iter_errors(manifest), key=str)
    assert not errors, "\n".join(e.message for e in errors)


# Examples that break only cross-field (CEL) rules: structurally valid, so the schema alone
# must accept them; the real API server rejects them (tests/cluster/test_crds.py).
CEL_ONLY = {"campaign-cel-bad.yaml", "campaign-triggers-bad.yaml", "campaign-control-bad.yaml"}


@pytest.mark.parametrize("path", [p for p in INVALID if p.name in CEL_ONLY], ids=lambda p: p.name)
def test_cel_only_example_is_structurally_valid(path):
    manifest = yaml.safe_load(path.read_text())
    errors = sorted(validator_for(manifest).iter_errors(manifest), key=str)
    assert not errors, "\n".join(e.message for e in errors)


@pytest.mark.parametrize("path", [p for p in INVALID if p.name not in CEL_ONLY], ids=lambda p: p.name)
def test_invalid_example_is_rejected(path):
    manifest = yaml.safe_load(path.read_text())
    errors = list(validator_for(manifest).iter_errors(manifest))
    assert errors, f"{path.name} should be rejected"
    failing = {"/".join(str(p) for p in e.absolute_path) for e in errors}
    expected = {
        "campaign-bad.yaml": {
            "spec/schedule/prewarm",
            "spec/scaling/minReplicas",
            "spec/scaling/tolerance",
            "spec/redis/maxmemoryPolicy",
        },
        "queueconfig-bad.yaml": {"spec/queueId", "spec/admitPerMinute"},
    }[path.name]
    assert expected <= failing, f"missing rejections: {expected - failing}"
