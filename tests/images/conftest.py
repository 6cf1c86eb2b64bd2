"""Fixtures of the image tarball checks (scripts/image-tests.sh): the tarballs that
scripts/images.sh assembles, each unpacked into a root filesystem, and a way to run a command
inside one with chroot, so that only the files of the image are visible to it."""

from __future__ import annotations

import io
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "chart"))
from dockerfile import REPO, TARGETS  # noqa: E402  (the tests' Dockerfile reader, tests/chart)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=False, **kw)


@pytest.fixture(scope="session")
def crane() -> str:
    out = run(["bash", str(REPO / "scripts" / "images.sh"), "--crane-path"])
    assert out.returncode == 0, f"crane is needed to read the tarballs:\n{out.stderr}"
    return out.stdout.strip()


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory) -> pathlib.Path:
    """FLOODGATE_IMAGES_DIR (for example .data/images after `make images`), or else the same
    assembly from the debug binaries into a temp dir."""
    given = os.environ.get("FLOODGATE_IMAGES_DIR")
    if given:
        return pathlib.Path(given)
    out_dir = tmp_path_factory.mktemp("images")
    build = run(["bash", str(REPO / "scripts" / "images.sh"), "--profile", "debug", "--out", str(out_dir)], cwd=REPO)
    assert build.returncode == 0, f"scripts/images.sh failed:\n{build.stderr[-4000:]}"
    return out_dir


@dataclass
class Image:
    target: str
    name: str
    tarball: pathlib.Path
    manifest: dict
    config: dict
    rootfs: pathlib.Path
    owners: dict[str, tuple[int, int, int]]  # path in the image -> (uid, gid, mode), from the layer


def read_tarball(path: pathlib.Path) -> tuple[dict, dict]:
    with tarfile.open(path) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        assert len(manifest) == 1, manifest
        config = json.load(tar.extractfile(manifest[0]["Config"]))
    return manifest[0], config


@pytest.fixture(scope="session")
def unpacked(images_dir, crane, tmp_path_factory):
    cache: dict[str, Image] = {}

    def get(target: str) -> Image:
        if target not in cache:
            name = TARGETS[target]
            tarball = images_dir / f"{name}.tar"
            assert tarball.is_file(), f"no {tarball}"
            manifest, config = read_tarball(tarball)
            rootfs = tmp_path_factory.mktemp(f"rootfs-{target}")
            rootfs.chmod(0o755)  # an image's / is 0755; pytest makes its temp dirs 0700
            with open(tarball, "rb") as f:
                export = subprocess.run([crane, "export", "-", "-"], stdin=f, capture_output=True, check=False)
            assert export.returncode == 0, export.stderr.decode()
            untar = subprocess.run(["tar", "-x", "-C", str(rootfs)], input=export.stdout, capture_output=True, check=False)
            assert untar.returncode == 0, untar.stderr.decode()
            with tarfile.open(fileobj=io.BytesIO(export.stdout)) as tar:
                owners = {"/" + m.name.lstrip("./"): (m.uid, m.gid, m.mode) for m in tar.getmembers()}
            cache[target] = Image(target, name, tarball, manifest, config, rootfs, owners)
        return cache[target]

    return get


def chroot_command(image: Image, argv: list[str]) -> list[str]:
    """argv run inside the image's root filesystem, with the image's environment only. As root:
    chroot as the image's user. Otherwise: chroot in a user namespace (as its root). A
    machine that allows neither fails the test with the reason, it is not skipped."""
    env = ["env", "-i", *image.config["config"].get("Env", [])]
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    if os.geteuid() == 0:
        return [*env, chroot, f"--userspec={image.config['config']['User']}", str(image.rootfs), *argv]
    return [*env, shutil.which("unshare") or "/usr/bin/unshare", "--map-root-user", chroot, str(image.rootfs), *argv]


@pytest.fixture
def in_image():
    def go(image: Image, argv: list[str]) -> subprocess.CompletedProcess:
        return run(chroot_command(image, argv))

    return go
