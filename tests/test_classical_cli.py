"""End-to-end runs of prepare_classical_benchmarks.py, train_classical_baselines.py and
run_classical_prep.sh on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import prepare_classical_benchmarks
import train_classical_baselines
from quixer_rna.formats.sentences import write_sentence_split
from quixer_rna.formats.tokens import load_token_dataset, save_token_split
from quixer_rna.kmers import kmer_to_id
from quixer_rna.runio import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
# "TTTT" occurs once, "AAAA" many times: ids must not depend on frequency.
WINDOWS = {
    "train": [["AAAA", "AAAA", "CGTA", "AAAA"], ["AAAA", "CGTA", "AAAA", "TTTT"]],
    "val": [["GGGG", "AAAA", "CGTA", "ACGT"]],
    "test": [["ACGT", "AAAA", "AAAA", "GGGG"]],
}


def _sentences(folder: Path) -> Path:
    for split, windows in WINDOWS.items():
        write_sentence_split(folder, split, windows, [f"NM_{split}.1"] * len(windows))
    atomic_write_json(folder / "metadata.json", {"k": 4, "window_size": 4})
    return folder


def test_raw_kmer_ids_are_fixed_by_the_kmer_and_stable(tmp_path):
    sentences = _sentences(tmp_path / "sentences")
    for out in ("a", "b"):
        assert prepare_classical_benchmarks.main(["--data_dir", str(sentences), "--output_dir", str(tmp_path / out)]) == 0
    first, second = load_token_dataset(tmp_path / "a"), load_token_dataset(tmp_path / "b")
    for split, windows in WINDOWS.items():
        expected = torch.tensor([[kmer_to_id(kmer) for kmer in window] for window in windows])
        assert torch.equal(first[split].sequences, expected)
        assert torch.equal(second[split].sequences, expected)
        assert first[split].vocab_size == 256
        assert first[split].sources == [f"NM_{split}.1"] * len(windows)
    vocab = json.loads((tmp_path / "a" / "vocab.json").read_text())
    assert vocab == json.loads((tmp_path / "b" / "vocab.json").read_text())
    assert vocab["k"] == 4 and vocab["vocab_size"] == 256
    assert vocab["id_to_kmer"] == {"0": "AAAA", "27": "ACGT", "108": "CGTA", "170": "GGGG", "255": "TTTT"}
    assert json.loads((tmp_path / "a" / "metrics.json").read_text())["train_windows"] == 2


def test_prepare_refuses_a_non_empty_output(tmp_path, capsys):
    sentences = _sentences(tmp_path / "sentences")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert prepare_classical_benchmarks.main(["--data_dir", str(sentences), "--output_dir", str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err


def _token_files(folder: Path, vocab: int = 16) -> Path:
    """A learnable cycle (each token follows from the previous one) cut into windows of 6."""
    generator = torch.Generator().manual_seed(0)
    cycle = torch.randperm(vocab, generator=generator)[:11]
    for split, count in (("train", 96), ("val", 24), ("test", 24)):
        starts = torch.randint(0, len(cycle), (count,), generator=generator)
        windows = cycle[(starts[:, None] + torch.arange(6)) % len(cycle)]
        save_token_split(folder / f"{split}.pt", windows, vocab, sources=[f"T{i % 5}" for i in range(count)])
    return folder


def test_ngram_end_to_end(tmp_path, capsys):
    data = _token_files(tmp_path / "tokens")
    out = tmp_path / "ngram"
    argv = ["--data_dir", str(data), "--model", "ngram", "--order", "2", "--output_dir", str(out)]
    assert train_classical_baselines.main(argv) == 0
    assert "perplexity" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "ngram" and metrics["vocab_size"] == 16
    assert metrics["test"]["perplexity"] < 0.5 * metrics["references"]["unigram_perplexity"]
    tuning = metrics["discount_tuning"]
    assert tuning["tuned_val_cross_entropy"] <= tuning["textbook_val_cross_entropy"]
    predictions = torch.load(out / "test_predictions.pt", weights_only=True)
    assert predictions["nll"].shape == (24,) and len(predictions["sources"]) == 24
    assert predictions["nll"].mean().item() == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    assert torch.load(out / "ngram_model.pt", weights_only=True)["order"] == 2
    assert json.loads((out / "args.json").read_text())["status"] == "completed"
    assert train_classical_baselines.main(argv) == 2  # refuses to overwrite silently


def test_bad_flags_are_one_line(tmp_path, capsys):
    data = _token_files(tmp_path / "tokens")
    base = ["--data_dir", str(data), "--output_dir", str(tmp_path / "out")]
    cases = [
        (["--model", "transformer", "--embedding_dim", "10", "--num_heads", "3"], "--num_heads"),
        (["--model", "lstm", "--num_layers", "0"], "--num_layers"),
        (["--model", "ngram", "--order", "7"], "--order"),
    ]
    for extra, flag in cases:
        assert train_classical_baselines.main(base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0]


def test_lstm_end_to_end_subprocess(tmp_path):
    data = _token_files(tmp_path / "tokens")
    out = tmp_path / "lstm"
    command = [
        sys.executable, str(ROOT / "train_classical_baselines.py"), "--data_dir", str(data), "--model", "lstm",
        "--epochs", "3", "--batch_size", "16", "--lr", "0.02", "--embedding_dim", "16", "--dropout", "0",
        "--output_dir", str(out), "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "lstm" and metrics["vocab_size"] == 16 and metrics["epochs_run"] == 3
    assert metrics["model_config"] == {"embedding_dim": 16, "num_layers": 2, "dropout": 0.0, "hidden_dim": 16}
    assert metrics["parameters"] > 0
    assert metrics["test"]["perplexity"] < metrics["references"]["unigram_perplexity"]
    for name in ("args.json", "metrics.jsonl", "training_curves.png", "test_predictions.pt"):
        assert (out / name).is_file(), name
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        torch.load(out / name, weights_only=True)


def test_run_classical_prep_usage_line_on_bad_arguments(tmp_path):
    script = ROOT / "run_classical_prep.sh"
    for argv in ([], ["only_one"], [str(tmp_path / "missing.fa"), str(tmp_path / "out")]):
        result = subprocess.run(["bash", str(script), *argv], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert "usage: run_classical_prep.sh FASTA OUT_DIR" in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_classical_prep_end_to_end(tmp_path):
    generator = torch.Generator().manual_seed(1)
    records = []
    for i in range(12):
        bases = "".join("ACGT"[int(b)] for b in torch.randint(0, 4, (240,), generator=generator))
        records.append(f">NM_{1000 + i}.1 Homo sapiens test gene (GENE{i}), mRNA\n{bases}\n")
    fasta = tmp_path / "tiny.fa"
    fasta.write_text("".join(records))
    out = tmp_path / "prep"
    env = {**os.environ, "PYTHON": sys.executable}
    result = subprocess.run(
        ["bash", str(ROOT / "run_classical_prep.sh"), str(fasta), str(out), "--k", "3", "--window_size", "8"],
        capture_output=True, text=True, timeout=120, env=env,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    data = load_token_dataset(out / "tokens")
    assert data["train"].vocab_size == 64 and data["train"].sequences.shape[1] == 8
    assert json.loads((out / "sentences" / "metadata.json").read_text())["k"] == 3
    first = (out / "sentences" / "train" / "sentences.txt").read_text().split("\n")[0].split()
    assert data["train"].sequences[0].tolist() == [kmer_to_id(kmer) for kmer in first]


def test_run_train_gpu_usage_line_on_bad_arguments(tmp_path):
    script = ROOT / "run_train_gpu.sh"
    for args in ([], ["cpu", "lstm"], ["gpu0", "lstm", "out"], ["cpu", "rnn", "out"], ["0,x", "lstm", "out"]):
        result = subprocess.run(["bash", str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, args
        assert result.stderr.startswith("usage: bash run_train_gpu.sh DEVICES MODEL OUTPUT_DIR"), result.stderr
    assert not (tmp_path / "out").exists()


def test_run_train_gpu_trains_on_cpu_and_a_rerun_reports_the_finished_run(tmp_path):
    data = _token_files(tmp_path / "tokens")
    out = tmp_path / "lstm"
    command = ["bash", str(ROOT / "run_train_gpu.sh"), "cpu", "lstm", str(out),
               "--data_dir", str(data), "--epochs", "1", "--embedding_dim", "8"]
    env = dict(os.environ, PYTHON=sys.executable)
    for _ in range(2):
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-2000:]
    log = (out / "train.log").read_text()
    assert log.count("run_train_gpu.sh: lstm on cpu, 1 process(es)") == 2
    assert "already holds a completed run" in log
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "lstm" and metrics["epochs_run"] == 1
