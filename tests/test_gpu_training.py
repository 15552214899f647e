"""Training on CUDA (gpu-marked; they skip without `--device cuda`, see benchmarks/gpu_checks.sh):

(a) no host synchronisation inside a training step of any model: 4 steps after 3 warm-up steps (CUDA
    graph captures synchronise once) under torch.cuda.set_sync_debug_mode("error"), which raises on any;
(b) with 2 or more GPUs, run_train_gpu.sh 0,1 (torchrun, NCCL, one GPU per rank) killed after its first
    checkpoint and rerun equals the uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from fixtures import write_token_folder
from quixer_rna import checkpoint as ckpt
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.training import TrainConfig, train_model

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 64
MODELS = {"quixer": {"qubits": 6, "ansatz_layers": 4, "qsvt_degree": 3, "embedding_dim": 128},
          "lstm": {"embedding_dim": 96}, "transformer": {"embedding_dim": 96}, "fnet": {"embedding_dim": 96}}


def _token_folder(root: Path, sizes: dict[str, int], window: int) -> Path:
    """Random windows of `window` tokens, 64 windows per transcript."""
    gen = torch.Generator().manual_seed(0)
    splits = {name: torch.randint(0, VOCAB, (n, window), generator=gen) for name, n in sizes.items()}
    sources = {name: [f"{name}{i // 64}" for i in range(n)] for name, n in sizes.items()}
    return write_token_folder(root, splits, VOCAB, sources=sources)


@pytest.fixture(scope="module")
def tokens(device: torch.device, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """9 steps of 256 windows of 32 context tokens, and a small validation and test split."""
    if device.type != "cuda":
        pytest.skip("needs CUDA: pytest -m gpu --device cuda (benchmarks/gpu_checks.sh)")
    return _token_folder(tmp_path_factory.mktemp("tokens"), {"train": 9 * 256, "val": 256, "test": 256}, 33)


class _Enough(Exception):
    """Ends the run once the checked steps are done."""


@pytest.mark.parametrize("model", MODELS)
def test_training_steps_never_synchronise_with_the_host(cuda_device, tokens, tmp_path, model):
    def step(global_step: int) -> None:
        if global_step == 3:
            torch.cuda.synchronize(cuda_device)
            torch.cuda.set_sync_debug_mode("error")
        if global_step == 7:
            torch.cuda.set_sync_debug_mode("default")
            raise _Enough

    config = TrainConfig(epochs=1, batch_size=256, max_steps_per_epoch=9, device=str(cuda_device),
                         checkpoint_every=0, val_windows=256)
    try:
        with pytest.raises(_Enough):
            train_model(model, MODELS[model], open_tokens(tokens), config, tmp_path / model, step_callback=step,
                        resume=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _launch(out: Path, flags: list[str], kill_at: Path | None = None, timeout: float = 600) -> None:
    """run_train_gpu.sh 0,1 quixer OUT FLAGS; with kill_at, SIGKILL its whole process group once that file
    appears."""
    env = dict(os.environ, PYTHON=sys.executable)
    proc = subprocess.Popen(["bash", str(ROOT / "run_train_gpu.sh"), "0,1", "quixer", str(out), *flags], cwd=ROOT,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout
    try:
        while kill_at is not None and proc.poll() is None and not kill_at.exists():
            assert time.monotonic() < deadline, f"no {kill_at.name} after {timeout:.0f} s"
            time.sleep(0.05)
        if kill_at is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_two_gpus_under_nccl_killed_and_resumed_equal_one_run(cuda_device, tmp_path):
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 or more GPUs")
    data = _token_folder(tmp_path / "data", {"train": 4096, "val": 1000, "test": 512}, 17)
    flags = ["--data_dir", str(data), "--epochs", "2", "--max_steps_per_epoch", "8", "--batch_size", "512",
             "--checkpoint_every", "2", "--val_windows", "1000", "--qubits", "4", "--embedding_dim", "32"]
    _launch(tmp_path / "whole", flags)
    _launch(tmp_path / "killed", flags, kill_at=tmp_path / "killed" / ckpt.LAST)
    _launch(tmp_path / "killed", flags)
    whole, resumed = (json.loads((tmp_path / name / "metrics.json").read_text()) for name in ("whole", "killed"))
    assert whole["world_size"] == 2
    assert resumed["test"] == pytest.approx(whole["test"], rel=1e-6, abs=1e-6)
