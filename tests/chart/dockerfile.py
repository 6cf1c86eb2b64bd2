"""A small reader of the repository's Dockerfile for the tests (tests/chart/test_images.py and
tests/images): stages by name, each with its resolved base image and its instructions. It is
the tests' own reader, independent of scripts/image_parts.py, which assembles the images."""

from __future__ import annotations

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
# runtime target -> the binary it runs (and the image's name)
TARGETS = {"app": "floodgate-app", "operator": "floodgate-operator", "loadtest": "floodgate-loadtest"}


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages() -> dict[str, dict]:
    args: dict[str, str] = {}
    result: dict[str, dict] = {}
    current = None
    for word, rest in instructions(DOCKERFILE.read_text()):
        if word == "ARG" and current is None:
            key, _, value = rest.partition("=")
            args[key] = value
        elif word == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", rest, re.I)
            base = re.sub(r"\$\{(\w+)\}", lambda v: args.get(v.group(1), v.group(0)), m.group(1))
            current = {"base": base, "body": []}
            result[m.group(2) or f"stage{len(result)}"] = current
        elif current is not None:
            current["body"].append((word, rest))
    return result
