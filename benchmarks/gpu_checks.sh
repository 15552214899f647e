#!/usr/bin/env bash
# Device checks (benchmarks/gpu_checks.py): PASS/FAIL per check, non-zero exit if any fails.
#   bash benchmarks/gpu_checks.sh                  # on cuda (DEV defaults to cuda)
#   DEV=cuda:1 bash benchmarks/gpu_checks.sh --only sim_float32_vs_float64,bench_paper
#   DEV=cpu bash benchmarks/gpu_checks.sh          # the dry run: same checks, small sizes, about a minute
# PYTHON picks the interpreter (default: the checkout's .venv if present, else python3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEV=${DEV:-cuda}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
export DEV
exec "$PYTHON" benchmarks/gpu_checks.py --device "$DEV" "$@"
