"""benchmarks/gpu_checks.sh's dry run on CPU (DEV=cpu), the part of the device checks CI can do: the
script runs the gpu-marked tests on the CPU (here only the checks of the model-sized simulator in float32
and of chunking: this session runs every gpu-marked test on the CPU anyway), those that need CUDA say so as
they skip, and the benchmark prints its row."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_cpu_dry_run_passes_and_skips_what_needs_cuda():
    env = dict(os.environ, DEV="cpu", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    only = "float32_model_pipeline or memory_budget_chunking or test_gpu_"
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_checks.sh"), "-rs", "-k", only], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout
    assert proc.returncode == 0, out[-3000:] + proc.stderr[-2000:]
    skipped = [line for line in out.splitlines() if line.startswith("SKIPPED")]
    assert skipped and all("needs CUDA" in line for line in skipped), skipped
    for name in ("test_gpu_training.py", "test_gpu_encoder.py"):     # every CUDA-only test module ran
        assert any(name in line for line in skipped), name
    summary = next(line for line in out.splitlines() if " passed" in line and " skipped" in line)
    assert summary.startswith("5 passed, 6 skipped, "), summary
    assert "$ benchmarks/bench_quixer.py --device cpu" in out
    row = out.splitlines()[-1].split()
    assert row[:2] == ["512", "8"] and row[-1] == "cpu", out[-1000:]
