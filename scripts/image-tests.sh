#!/usr/bin/env bash
# Checks of the OCI image tarballs without an engine (tests/images): scripts/images.sh
# assembles them from the DEBUG binaries the test suite has already built (the same assembly
# code path as `make images`, which uses release binaries) into a temp dir; then crane reads
# and validates each one, its config is checked against the Dockerfile (user 65532,
# entrypoint, cmd, env, labels incl. version and revision), its layer is unpacked into a
# root filesystem that must hold exactly the binary, the libraries it loads, CA certificates
# and passwd/group, and the binary runs from it under chroot (`--version`; the loadtest
# image through its own /bin/sh, as its Indexed Job does).
#
#   bash scripts/image-tests.sh                                  build and check
#   FLOODGATE_IMAGES_DIR=.data/images bash scripts/image-tests.sh  check `make images` output
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV=$(bash "$ROOT/scripts/venv.sh")
cd "$ROOT"
exec "$VENV/bin/python" -m pytest -p no:cacheprovider -q "$ROOT/tests/images" "$@"
