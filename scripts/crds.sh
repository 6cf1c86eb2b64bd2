#!/usr/bin/env bash
# The CRDs have one source: the Rust types in crds/src/v1alpha1. This regenerates
# crds/*.yaml from them (`floodgate-operator crd`) and copies them byte for byte into the
# chart (charts/floodgate/files/crds/, which templates/crds.yaml installs), so neither copy
# is ever edited by hand. Tests fail when either drifts (operator/src/crd.rs for crds/,
# tests/chart/test_chart.py for the chart).
#
#   bash scripts/crds.sh        (or: make crds)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
cargo run -q -p floodgate-operator -- crd --out-dir crds
mkdir -p charts/floodgate/files/crds
rm -f charts/floodgate/files/crds/*.yaml
cp crds/*.yaml charts/floodgate/files/crds/
echo "crds/*.yaml regenerated and copied to charts/floodgate/files/crds/" >&2
