#!/usr/bin/env bash
# Device checks: the gpu-marked tests on DEV (pytest -m gpu --device DEV: the simulator in float32 on the
# device against float64 on the CPU, chunked against all at once, CUDA graphs against eager and the memory
# estimate against the allocator's peak; no host synchronisation inside training steps of every model; with
# 2 GPUs the NCCL launcher killed and resumed; the encoder), then benchmarks/bench_quixer.py on DEV, which
# prints its figures (the paper-sized model at batch 32 to 4096, n = 10, and without CUDA graphs).
#   bash benchmarks/gpu_checks.sh                     # on cuda (DEV defaults to cuda), about 5 minutes
#   DEV=cuda:1 bash benchmarks/gpu_checks.sh -k sim   # arguments go to pytest
#   DEV=cpu bash benchmarks/gpu_checks.sh             # the dry run: CUDA-only tests skip, one small benchmark
# Exits non-zero if a test or a benchmark configuration failed (the benchmark runs either way).
# PYTHON picks the interpreter (default: the checkout's .venv if present, else python3).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
DEV=${DEV:-cuda}
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
status=0

bench() {
    echo "\$ benchmarks/bench_quixer.py --device $DEV $*"
    "$PYTHON" benchmarks/bench_quixer.py --device "$DEV" "$@" || status=1
}

# gpu-marked tests live in tests/test_gpu_*.py and, sharing its cases, tests/test_quixer_sim.py
"$PYTHON" -m pytest -p no:cacheprovider -m gpu --device "$DEV" tests/test_quixer_sim.py tests/test_gpu_*.py "$@" \
    || status=1
case "$DEV" in
    cuda*)
        bench --vocab_sizes 9924 --steps 5                # batch 32, 256, 1024, 4096
        bench --vocab_sizes 512 --qubits 10 --steps 5
        bench --vocab_sizes 9924 --batch_sizes 32 1024 --cuda_graphs off --steps 5
        ;;
    *)
        bench --vocab_sizes 512 --batch_sizes 8 --steps 1
        ;;
esac
exit "$status"
