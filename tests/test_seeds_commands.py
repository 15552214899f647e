"""The seeds' commands, as the two documents print them, on files at their paths (a synthetic FASTA stands in
for NCBI's download; epochs are cut short with extra flags): they are the user's manual."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--epochs", "1", "--max_steps_per_epoch", "2", "--val_windows", "500", "--device", "cpu"]

pytestmark = pytest.mark.slow


def _run(cwd: Path, *command: str) -> subprocess.CompletedProcess:
    """A seeds' command line: `python X.py ...` or `bash X.sh ...`, with the scripts of this checkout."""
    program, script, *rest = command
    argv = [sys.executable if program == "python" else program, str(ROOT / script), *rest]
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1")
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{' '.join(command)}\n{proc.stderr[-2500:]}"
    return proc


def test_the_seeds_pipeline_runs_as_printed(tmp_path):
    _run(tmp_path, "python", "download_rna_sequences.py", "--source", "synthetic", "--max_sequences", "60",
         "--output", "GRCh38_genomic_dataset/rna_sequences.fasta")
    _run(tmp_path, "python", "prepare_autoregressive_data.py", "--fasta", "GRCh38_genomic_dataset/rna_sequences.fasta",
         "--output_dir", "autoregressive_data", "--k", "6", "--window_size", "32", "--min_length", "200")
    _run(tmp_path, "python", "lambeq_encoder.py", "--data_dir", "autoregressive_data", "--output_dir",
         "lambeq_embeddings_autoregressive", "--k", "6", "--max_kmers", "32", "--embedding_dim", "64")
    _run(tmp_path, "python", "quantize_lambeq_embeddings.py", "--embeddings_dir", "lambeq_embeddings_autoregressive",
         "--output_dir", "quantized_embeddings_autoregressive", "--n_clusters", "512", "--seq_len", "32")
    _run(tmp_path, "python", "tune_quixer_hybrid.py", "--data_dir", "quantized_embeddings_autoregressive", "--n_trials",
         "1", "--epochs_per_trial", "1", "--init_strategy", "small_gaussian", "--use_layerwise_training",
         "--max_steps_per_epoch", "2", "--val_windows", "200", "--search_space",
         '{"qubits": 2, "ansatz_layers": 1, "qsvt_degree": 1, "embedding_dim": 64}', "--device", "cpu")
    _run(tmp_path, "python", "train_quixer_hybrid.py", "--data_dir", "quantized_embeddings_autoregressive", "--task",
         "autoregressive", "--epochs", "50", "--init_strategy", "small_gaussian", "--use_layerwise_training", *SHORT)
    quixer = json.loads((tmp_path / "runs" / "quixer" / "metrics.json").read_text())
    assert quixer["tokens"]["vocab_size"] == 512 and quixer["model_config"]["use_layerwise_training"] is True

    _run(tmp_path, "bash", "run_classical_prep.sh", "GRCh38_genomic_dataset/rna_sequences.fasta",
         "classical_benchmarks_data")
    for model in ("lstm", "transformer"):
        _run(tmp_path, "python", "train_classical_baselines.py", "--data_dir", "classical_benchmarks_data", "--model",
             model, "--epochs", "100", *SHORT)
        result = json.loads((tmp_path / "runs" / model / "metrics.json").read_text())
        assert result["tokens"]["tokenizer"] == "raw k-mers" and result["tokens"]["vocab_size"] == 4096
    # Rerunning the classical preparation skips what completed with the same arguments.
    again = _run(tmp_path, "bash", "run_classical_prep.sh", "GRCh38_genomic_dataset/rna_sequences.fasta",
                 "classical_benchmarks_data")
    assert again.stdout.count("already completed; skipped") == 2
