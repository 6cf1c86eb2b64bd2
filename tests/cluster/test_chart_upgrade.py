"""The chart's upgrade path with real Helm (helm-python-sdk: Helm's Go library, the same code
as the helm CLI) against the real API server: the CRDs ship in templates behind
`crds.install` with `helm.sh/resource-policy: keep`, so `helm upgrade` changes them, and a
release of the 0.1 chart (CRDs in crds/, which Helm installs once and never owns) moves to
them with the adoption step docs/deploy.md gives."""

from __future__ import annotations

import pathlib
import shutil
import subprocess

import helm_python
import pytest
import yaml

from conftest import CHART, REPO, ControlPlane

CRDS = ["campaigns.floodgate.dev", "queueconfigs.floodgate.dev"]
RELEASE = "floodgate"


def helm(cp: ControlPlane, namespace: str) -> helm_python.Config:
    return helm_python.Config(kubeconfig_path=str(cp.admin_kubeconfig), namespace=namespace)


def chart_copy(tmp_path: pathlib.Path, name: str) -> pathlib.Path:
    dest = tmp_path / name / "floodgate"
    shutil.copytree(CHART, dest)
    return dest


def old_layout(tmp_path: pathlib.Path) -> pathlib.Path:
    """The chart as 0.1.0 shipped its CRDs: in crds/, which Helm creates on the first install
    (skipping ones that exist) and never updates, with no ownership metadata."""
    chart = chart_copy(tmp_path, "old")
    if (chart / "templates" / "crds.yaml").exists():
        (chart / "templates" / "crds.yaml").unlink()
        shutil.copytree(chart / "files" / "crds", chart / "crds")
    return chart


def crd_file(chart: pathlib.Path) -> pathlib.Path:
    """Where a chart copy holds the Campaign CRD it installs."""
    for sub in ("files/crds", "crds"):
        if (chart / sub / "campaign.yaml").exists():
            return chart / sub / "campaign.yaml"
    raise AssertionError(f"no campaign.yaml in {chart}")


def with_target_column(tmp_path: pathlib.Path) -> pathlib.Path:
    """The current chart with one CRD change, as a later chart version would bring it: a
    TARGET printer column and a new description on Campaign."""
    chart = chart_copy(tmp_path, "next")
    path = crd_file(chart)
    crd = yaml.safe_load(path.read_text())
    version = crd["spec"]["versions"][0]
    version["additionalPrinterColumns"].insert(
        0, {"name": "Target", "type": "string", "jsonPath": ".spec.target.deployment"})
    version["schema"]["openAPIV3Schema"]["description"] = "Upgraded: a sales event."
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    return chart


def documented_adoption(namespace: str) -> tuple[str, str]:
    """The commands of docs/deploy.md, "Upgrading from chart 0.1", for a release in
    `namespace`: what runs before the `helm upgrade` line and what runs after it. Helm's field
    manager is "helm" for the CLI and the process name, "python", for helm-python-sdk."""
    doc = (REPO / "docs" / "deploy.md").read_text()
    section = doc.split("### Upgrading from chart 0.1", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    before, after = block.split("\nhelm upgrade ", 1)
    after = after.split("\n", 1)[1]
    before = before.replace("meta.helm.sh/release-namespace=floodgate", f"meta.helm.sh/release-namespace={namespace}")
    assert f"meta.helm.sh/release-name={RELEASE}" in before and "managedFields" in after, block
    return before, after.replace('.manager == "helm"', '.manager == "python"')


def run_documented(cp: ControlPlane, script: str) -> None:
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=cp.env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, f"{script}\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture
def restore_crds(cp: ControlPlane, crds):
    """This test changes the cluster-wide CRDs: put them back as the `crds` fixture left them
    (exactly crds/*.yaml, applied by kubectl) for the tests that follow."""
    yield
    cp.kubectl("replace", "-f", str(REPO / "crds"))
    cp.kubectl("apply", "-f", str(REPO / "crds"))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=60s", *[f"crd/{n}" for n in CRDS])


def columns(cp: ControlPlane) -> list[str]:
    crd = cp.get(f"crd/{CRDS[0]}")
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


@pytest.fixture
def releases(cp: ControlPlane, namespace):
    """Helm releases a test installs, as (namespace, name): uninstalled afterwards whatever
    happened, before the namespace goes, and their aggregated ClusterRoles (cluster-wide,
    named after the namespace) deleted even when the release record is gone."""
    installed: list[tuple[str, str]] = []
    yield installed
    for ns, name in installed:
        helm(cp, ns).uninstall(name, ignore_not_found=True, timeout=120)
    roles = cp.kubectl("get", "clusterroles", "-l", "app.kubernetes.io/component=rbac", "-o", "name").stdout.split()
    left = [r for r in roles for ns, _ in installed if r.split("/", 1)[1].startswith(ns[:40])]
    if left:
        cp.kubectl("delete", *sorted(set(left)), "--ignore-not-found")


def test_upgrade_from_0_1_adopts_then_updates_the_crds(cp, crds, restore_crds, namespace, releases, tmp_path):
    h = helm(cp, namespace)
    releases.append((namespace, RELEASE))
    # rev 1: the 0.1 layout; the CRDs exist already (as on any cluster that ran 0.1)
    h.install(str(old_layout(tmp_path)), RELEASE, {}, namespace=namespace, timeout=120)
    assert "Target" not in columns(cp)

    # rev 2: today's chart. Helm refuses to take over objects another tool created...
    with pytest.raises(helm_python.HelmError, match="invalid ownership metadata"):
        h.upgrade(str(CHART), RELEASE, {}, namespace=namespace, timeout=120)
    # ...until the documented adoption step; then the release owns and keeps them
    adopt, after_upgrade = documented_adoption(namespace)
    run_documented(cp, adopt)
    h.upgrade(str(CHART), RELEASE, {}, namespace=namespace, timeout=120)
    run_documented(cp, after_upgrade)
    for name in CRDS:
        meta = cp.get(f"crd/{name}")["metadata"]
        assert meta["annotations"].get("helm.sh/resource-policy") == "keep", meta
        assert meta["annotations"].get("meta.helm.sh/release-namespace") == namespace, meta
        assert meta["labels"].get("app.kubernetes.io/managed-by") == "Helm", meta

    # rev 3: a chart whose CRD changed; `helm upgrade` alone brings the change
    h.upgrade(str(with_target_column(tmp_path)), RELEASE, {}, namespace=namespace, timeout=120)
    assert columns(cp)[0] == "Target", columns(cp)
    crd = cp.get(f"crd/{CRDS[0]}")
    assert crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["description"] == "Upgraded: a sales event."
    cp.kubectl("-n", namespace, "apply", "-f", str(REPO / "crds" / "examples" / "campaign.yaml"))
    header = cp.kubectl("-n", namespace, "get", "camp").stdout.splitlines()[0].split()
    assert header[:2] == ["NAME", "TARGET"], header
    history = h.history(RELEASE)
    assert [r.get("version", r.get("revision")) for r in history] == [1, 2, 3], history

    # uninstall keeps the CRDs (and so every Campaign and QueueConfig in the cluster)
    h.uninstall(RELEASE, timeout=120)
    for name in CRDS:
        assert cp.kubectl("get", f"crd/{name}", check=False).returncode == 0, f"{name} was deleted"
    assert cp.get("camp", "-n", namespace)["items"], "the Campaign went with the release"


def test_second_release_leaves_the_crds_to_the_first(cp, crds, restore_crds, namespace, releases, tmp_path):
    """Several releases share one cluster's CRDs: the one with crds.install=true owns them,
    the others install with crds.install=false and do not touch them."""
    run_documented(cp, documented_adoption(namespace)[0])
    h = helm(cp, namespace)
    h.install(str(CHART), RELEASE, {}, namespace=namespace, timeout=120)
    other = f"{namespace}-b"
    cp.kubectl("create", "namespace", other)
    releases.extend([(namespace, RELEASE), (other, RELEASE)])
    try:
        with pytest.raises(helm_python.HelmError, match="invalid ownership metadata"):
            helm(cp, other).install(str(CHART), RELEASE, {}, namespace=other, timeout=120)
        helm(cp, other).install(str(CHART), RELEASE, {"crds": {"install": False}}, namespace=other, timeout=120)
        meta = cp.get(f"crd/{CRDS[0]}")["metadata"]
        assert meta["annotations"]["meta.helm.sh/release-namespace"] == namespace, meta
        helm(cp, other).uninstall(RELEASE, timeout=120)
    finally:
        cp.kubectl("delete", "namespace", other, "--ignore-not-found", "--wait=false")
    h.uninstall(RELEASE, timeout=120)
