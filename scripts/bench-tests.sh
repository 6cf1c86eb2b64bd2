#!/usr/bin/env bash
# Unit tests of the bench report's rules (scripts/bench_cpu.py, bench_conditions.py,
# bench_flow.py, bench_report.py, profile_statements.py): CPU per request, run conditions, P9
# steps, statement time per request. Under a second.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python3 -m unittest discover -s "$ROOT/tests/bench" -t "$ROOT/tests/bench"
