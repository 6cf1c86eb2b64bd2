"""The image tarballs that scripts/images.sh assembles without an engine: crane reads them,
their config is what the Dockerfile's runtime targets say, their one layer holds the binary and
exactly the libraries it needs, and the binary runs from the unpacked root filesystem (chroot:
nothing of the host is visible, so no host library can be used)."""

from __future__ import annotations

import json
import platform
import re
import subprocess
import tomllib

import pytest
import yaml

from dockerfile import REPO, TARGETS, stages

UID = 65532
LOADER = "/lib64/ld-linux-x86-64.so.2"


def workspace_version() -> str:
    return tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]["package"]["version"]


def dockerfile_values(target: str) -> dict:
    """What the Dockerfile's runtime target sets, read by the chart tests' own parser."""
    body = stages()[target]["body"]
    env, labels = {}, {}
    for word, rest in body:
        if word in {"ENV", "LABEL"}:
            for key, value in re.findall(r'(\S+?)=("[^"]*"|\S+)', rest):
                (env if word == "ENV" else labels)[key] = value.strip('"')
    last = lambda w: [r for x, r in body if x == w][-1]  # noqa: E731
    return {"env": env, "labels": labels, "user": last("USER"), "entrypoint": json.loads(last("ENTRYPOINT")),
            "cmd": json.loads(last("CMD")), "ports": {f"{p}/tcp" for w, r in body if w == "EXPOSE" for p in r.split()}}


@pytest.mark.parametrize("target", TARGETS)
def test_crane_reads_and_validates_the_tarball(target, images_dir, crane):
    out = subprocess.run([crane, "validate", "--tarball", str(images_dir / f"{TARGETS[target]}.tar")],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 0 and out.stdout.startswith("PASS:"), out.stdout + out.stderr


@pytest.mark.parametrize("target", TARGETS)
def test_config_is_the_dockerfiles(target, unpacked):
    image = unpacked(target)
    cfg, want = image.config["config"], dockerfile_values(target)
    version = workspace_version()
    assert image.manifest["RepoTags"] == [f"{image.name}:{version}"]
    assert cfg["User"] == want["user"] == f"{UID}:{UID}", "the image must run as the non-root user 65532"
    assert cfg["Entrypoint"] == want["entrypoint"] == [f"/usr/local/bin/{image.name}"]
    assert cfg["Cmd"] == want["cmd"]
    assert set(cfg.get("ExposedPorts", {})) == want["ports"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env.items() >= want["env"].items()
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"
    labels = cfg["Labels"]
    for key in ("title", "description", "licenses"):
        assert labels[f"org.opencontainers.image.{key}"] == want["labels"][f"org.opencontainers.image.{key}"]
    assert labels["org.opencontainers.image.title"] == image.name
    assert labels["org.opencontainers.image.version"] == version
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(rf"{head}(-dirty)?", labels["org.opencontainers.image.revision"]), labels
    assert (image.config["os"], image.config["architecture"]) == ("linux", {"x86_64": "amd64", "aarch64": "arm64"}[platform.machine()])


def test_tag_is_the_charts_app_version(unpacked):
    """The chart pulls appVersion when image.tag is empty: the tarballs must carry that tag."""
    app_version = yaml.safe_load((REPO / "charts" / "floodgate" / "Chart.yaml").read_text())["appVersion"]
    assert unpacked("app").manifest["RepoTags"] == [f"floodgate-app:{app_version}"]


@pytest.mark.parametrize("target", TARGETS)
def test_layer_holds_the_binary_and_exactly_the_libraries_it_needs(target, unpacked, in_image):
    image = unpacked(target)
    assert len(image.manifest["Layers"]) == 1
    files = {"/" + str(p.relative_to(image.rootfs)) for p in image.rootfs.rglob("*") if not p.is_dir()}
    listed = in_image(image, [LOADER, "--list", f"/usr/local/bin/{image.name}"])
    assert listed.returncode == 0, listed.stderr
    libs = set(re.findall(r"(/\S+) \(0x", listed.stdout))
    assert LOADER in libs and any("libc.so" in lib for lib in libs), listed.stdout
    base = {f"/usr/local/bin/{image.name}", "/etc/ssl/certs/ca-certificates.crt", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf"}
    shell = {"/bin/busybox", "/bin/sh"} if target == "loadtest" else set()
    want = base | libs | shell
    assert files == want, f"extra: {files - want}, missing: {want - files}"
    passwd = (image.rootfs / "etc" / "passwd").read_text()
    assert f":x:{UID}:{UID}:" in passwd
    assert image.owners["/home/nonroot"][:2] == (UID, UID), "the user's home belongs to the user"
    assert image.owners["/tmp"][2] & 0o1777 == 0o1777
    assert {o[:2] for path, o in image.owners.items() if path != "/home/nonroot"} == {(0, 0)}


@pytest.mark.parametrize("target", TARGETS)
def test_binary_runs_from_the_unpacked_rootfs(target, unpacked, in_image):
    image = unpacked(target)
    out = in_image(image, [*image.config["config"]["Entrypoint"], "--version"])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"{image.name} {workspace_version()}"


def test_loadtest_job_runs_through_the_images_shell(unpacked, in_image):
    """loadtest/k8s/job.yaml starts its containers with /bin/sh -c, finds the binary on PATH and
    maps exit 99 (a threshold crossed in one shard) to success with `test`."""
    image = unpacked("loadtest")
    commands = [c["command"][0] for doc in yaml.safe_load_all((REPO / "loadtest" / "k8s" / "job.yaml").read_text())
                if doc and doc["kind"] == "Job"
                for c in doc["spec"]["template"]["spec"]["containers"] if c["image"].startswith("floodgate-loadtest")]
    assert commands and set(commands) == {"/bin/sh"}
    out = in_image(image, ["/bin/sh", "-c", 'floodgate-loadtest --version && (exit 99) || test $? -eq 99'])
    assert out.returncode == 0 and out.stdout.strip() == f"floodgate-loadtest {workspace_version()}", out.stdout + out.stderr
    out = in_image(image, ["/bin/sh", "-c", "exec floodgate-loadtest merge /nonexistent/shard-*.json"])
    # the shell found the binary on PATH and left an unmatched glob as it is; the binary says so
    assert out.returncode == 1 and "reading /nonexistent/shard-*.json" in out.stderr, out.stderr
