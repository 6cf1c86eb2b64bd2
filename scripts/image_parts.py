#!/usr/bin/env python3
"""The parts of one Floodgate image that scripts/images.sh assembles without a Docker engine.

The Dockerfile is the one home of every image setting: this reads the runtime target's LABEL,
ENV, USER, EXPOSE, ENTRYPOINT, CMD and its `COPY --from=builder /out/<binary> <path>` line, and

  * writes the image's single layer (an uncompressed tar, reproducible: sorted, numeric root
    ownership, mtime from SOURCE_DATE_EPOCH): the binary at the Dockerfile's path, exactly the
    shared libraries `ldd` resolves for it (the dynamic loader included) at the paths the
    binary asks for, the host's CA bundle, /etc/passwd and /etc/group with root and the
    Dockerfile's USER, /etc/nsswitch.conf, /tmp, the user's home and, with --shell, a static
    busybox as /bin/sh;
  * prints the `crane mutate` flags that give the config those values (NUL-separated).

What the Dockerfile's base images provide and an empty base does not (PATH, SSL_CERT_FILE,
the home as working directory, the files above) is in BASE_* below, as distroless `nonroot`
has it. Standard library only.

  image_parts.py --dockerfile Dockerfile --target app --binary bin/floodgate-app \\
      --layer out/layer.tar --build-arg VERSION=0.1.0 --build-arg REVISION=<sha> [--shell busybox]
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shlex
import subprocess
import sys
import tarfile

BASE_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
}
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
USER_NAME = "nonroot"
ENGINE_ONLY = {"RUN", "ADD", "ONBUILD", "HEALTHCHECK", "SHELL", "VOLUME", "STOPSIGNAL"}


class DockerfileError(Exception):
    pass


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def substitute(value: str, args: dict[str, str]) -> str:
    def one(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        if name not in args:
            raise DockerfileError(f"${name} is not a declared ARG with a value (pass --build-arg {name}=...)")
        return args[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, value)


def runtime_stage(text: str, target: str, build_args: dict[str, str]) -> tuple[list[tuple[str, str]], dict]:
    """The instructions of stage `target` and the ARG values in scope there."""
    global_args: dict[str, str] = {}
    stage_body: list[tuple[str, str]] | None = None
    in_target = False
    for word, rest in instructions(text):
        if word == "FROM":
            if in_target:
                break
            in_target = bool(re.search(rf"\sAS\s+{re.escape(target)}$", rest, re.I))
            stage_body = [] if in_target else None
        elif word == "ARG" and stage_body is None and not in_target:
            key, _, value = rest.partition("=")
            global_args[key] = build_args.get(key, value)
        elif in_target:
            stage_body.append((word, rest))
    if stage_body is None:
        raise DockerfileError(f"no stage named {target}")
    scope: dict[str, str] = {}
    for word, rest in stage_body:
        if word == "ARG":
            key, _, default = rest.partition("=")
            value = build_args.get(key, global_args.get(key, default))
            if value == "":
                raise DockerfileError(f"ARG {key} of stage {target} has no value: pass --build-arg {key}=...")
            scope[key] = value
    return stage_body, scope


def pairs(rest: str, args: dict[str, str]) -> list[tuple[str, str]]:
    out = []
    for token in shlex.split(rest):
        key, sep, value = token.partition("=")
        if not sep:
            raise DockerfileError(f"only the KEY=VALUE form is supported: {rest}")
        out.append((key, substitute(value, args)))
    return out


def image_config(text: str, target: str, build_args: dict[str, str]) -> dict:
    body, args = runtime_stage(text, target, build_args)
    config = {"labels": {}, "env": dict(BASE_ENV), "ports": [], "copies": []}
    for word, rest in body:
        if word in ENGINE_ONLY:
            raise DockerfileError(f"stage {target}: {word} needs an engine; this assembly cannot do it")
        if word == "LABEL":
            config["labels"].update(pairs(rest, args))
        elif word == "ENV":
            config["env"].update(pairs(rest, args))
        elif word == "USER":
            config["user"] = substitute(rest, args)
        elif word == "EXPOSE":
            config["ports"] += [p if "/" in p else f"{p}/tcp" for p in rest.split()]
        elif word in {"ENTRYPOINT", "CMD"}:
            value = json.loads(rest)
            if not isinstance(value, list):
                raise DockerfileError(f"stage {target}: {word} must be in exec (JSON) form")
            config[word.lower()] = value
        elif word == "COPY":
            m = re.fullmatch(r"--from=builder\s+/out/(\S+)\s+(\S+)", rest)
            if not m:
                raise DockerfileError(f"stage {target}: only COPY --from=builder /out/<binary> <path>: {rest}")
            config["copies"].append((m.group(1), m.group(2)))
        elif word == "WORKDIR":
            config["workdir"] = substitute(rest, args)
    for needed in ("user", "entrypoint", "copies"):
        if not config.get(needed):
            raise DockerfileError(f"stage {target} sets no {needed.rstrip('s').upper()}")
    uid, _, gid = config["user"].partition(":")
    if not uid.isdigit() or int(uid) == 0 or (gid and not gid.isdigit()):
        raise DockerfileError(f"stage {target}: USER must be a numeric non-root uid[:gid], not {config['user']}")
    config["uid"], config["gid"] = int(uid), int(gid or uid)
    config.setdefault("workdir", f"/home/{USER_NAME}")
    return config


def csv_item(value: str) -> str:
    """crane reads list and map flags as one CSV record: quote what needs it."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="").writerow([value])
    return buf.getvalue()


def crane_flags(config: dict, platform: str) -> list[str]:
    flags = [f"--user={config['user']}", f"--workdir={config['workdir']}", f"--set-platform={platform}"]
    flags += [f"--env={k}={v}" for k, v in config["env"].items()]
    flags += [f"--label={csv_item(f'{k}={v}')}" for k, v in sorted(config["labels"].items())]
    flags += [f"--exposed-ports={p}" for p in config["ports"]]
    flags += [f"--entrypoint={csv_item(e)}" for e in config["entrypoint"]]
    flags += [f"--cmd={csv_item(c)}" for c in config.get("cmd", [])]
    return flags


def shared_libraries(binary: str) -> list[str]:
    """Every library the dynamic loader would map for `binary` (its own path included), as the
    paths the binary names them by; [] for a static binary. A library not found is an error."""
    run = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False)
    text = run.stdout + run.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if run.returncode != 0 or "not found" in text:
        raise DockerfileError(f"ldd {binary} failed:\n{text}")
    libs = []
    for line in run.stdout.splitlines():
        m = re.match(r"\s*(?:\S+ => )?(/\S+) \(0x", line)
        if m:
            libs.append(m.group(1))
        elif "linux-vdso" not in line and "=>" in line:
            raise DockerfileError(f"ldd {binary}: cannot read line {line!r}")
    return libs


class Layer:
    """A reproducible tar: parents before children, root-owned unless said otherwise."""

    def __init__(self, mtime: int):
        self.mtime = mtime
        self.entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, path: str, kind: bytes, mode: int, owner: tuple[int, int]) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.lstrip("/"))
        info.type, info.mode, info.mtime = kind, mode, self.mtime
        info.uid, info.gid = owner
        return info

    def directory(self, path: str, mode: int = 0o755, owner: tuple[int, int] = (0, 0)) -> None:
        """Add `path` and its parents; a directory already added keeps its mode and owner."""
        key = path.strip("/")
        if not key or key in self.entries:
            return
        self.directory(os.path.dirname(key))
        self.entries[key] = (self._info(key, tarfile.DIRTYPE, mode, owner), None)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self.directory(os.path.dirname(path))
        info = self._info(path, tarfile.REGTYPE, mode, (0, 0))
        info.size = len(data)
        self.entries[path.lstrip("/")] = (info, data)

    def symlink(self, path: str, target: str) -> None:
        self.directory(os.path.dirname(path))
        info = self._info(path, tarfile.SYMTYPE, 0o777, (0, 0))
        info.linkname = target
        self.entries[path.lstrip("/")] = (info, None)

    def write(self, out: str) -> None:
        with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.entries):
                info, data = self.entries[name]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def build_layer(config: dict, binaries: dict[str, str], shell: str | None, mtime: int) -> Layer:
    layer = Layer(mtime)
    uid, gid = config["uid"], config["gid"]
    home = config["workdir"]
    layer.directory("/tmp", 0o1777)
    layer.directory(home, 0o700, (uid, gid))
    layer.file("/etc/passwd", f"root:x:0:0:root:/root:/sbin/nologin\n{USER_NAME}:x:{uid}:{gid}:{USER_NAME}:{home}:/sbin/nologin\n".encode())
    layer.file("/etc/group", f"root:x:0:\n{USER_NAME}:x:{gid}:\n".encode())
    layer.file("/etc/nsswitch.conf", b"passwd: files\ngroup: files\nhosts: files dns\n")
    layer.file(CA_BUNDLE, read(CA_BUNDLE))
    executables = []
    for name, dest in config["copies"]:
        if name not in binaries:
            raise DockerfileError(f"the Dockerfile copies /out/{name}: pass --binary with that file name")
        layer.file(dest, read(binaries[name]), 0o755)
        executables.append(binaries[name])
    if shell:
        layer.file("/bin/busybox", read(shell), 0o755)
        layer.symlink("/bin/sh", "busybox")
        executables.append(shell)
    for exe in executables:
        for lib in shared_libraries(exe):
            layer.file(lib, read(os.path.realpath(lib)), 0o755)
    return layer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dockerfile", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--binary", action="append", required=True, help="a built binary; its file name is the /out/ name")
    parser.add_argument("--layer", required=True, help="where to write the layer tar")
    parser.add_argument("--build-arg", action="append", default=[])
    parser.add_argument("--shell", help="a static busybox to install as /bin/sh")
    parser.add_argument("--platform", default="linux/amd64")
    opts = parser.parse_args()
    build_args = dict(a.split("=", 1) for a in opts.build_arg)
    try:
        with open(opts.dockerfile, encoding="utf-8") as f:
            config = image_config(f.read(), opts.target, build_args)
        binaries = {os.path.basename(b): b for b in opts.binary}
        layer = build_layer(config, binaries, opts.shell, int(os.environ.get("SOURCE_DATE_EPOCH", "0")))
    except (DockerfileError, OSError) as err:
        print(f"image_parts: {err}", file=sys.stderr)
        return 1
    layer.write(opts.layer)
    sys.stdout.write("\0".join(crane_flags(config, opts.platform)) + "\0")
    return 0


if __name__ == "__main__":
    sys.exit(main())
