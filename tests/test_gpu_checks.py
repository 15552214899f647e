"""benchmarks/gpu_checks.sh's dry run on CPU (DEV=cpu), the part of the device checks CI can do: the checks
that mean something on CPU pass, and the CUDA-only ones say why they are skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _checks(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, DEV="cpu", PYTHON=sys.executable, OMP_NUM_THREADS="1")
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_checks.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)


def test_every_check_is_listed():
    names = _checks("--list").stdout.split()
    assert names == ["sim_float32_vs_float64", "sim_chunked_equals_whole", "sim_graphs_equal_eager", "bench_paper",
                     "bench_qubits10", "bench_without_graphs", "paper_step_target", "sync_free_training_steps",
                     "multi_gpu_launcher", "encoder"]


def test_the_cpu_dry_run_passes_and_skips_what_needs_cuda():
    proc = _checks("--only", "sim_float32_vs_float64,sim_chunked_equals_whole,sync_free_training_steps,encoder")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    lines = {line.split()[1].rstrip(":"): line.split()[0] for line in proc.stdout.splitlines()
             if line.split() and line.split()[0] in ("PASS", "FAIL", "SKIP")}
    assert lines == {"sim_float32_vs_float64": "PASS", "sim_chunked_equals_whole": "PASS",
                     "sync_free_training_steps": "SKIP", "encoder": "PASS"}
