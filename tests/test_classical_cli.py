"""End-to-end runs of prepare_classical_benchmarks.py, train_classical_baselines.py, run_classical_prep.sh and
run_train_gpu.sh on tiny data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import prepare_classical_benchmarks
import train_classical_baselines
from fixtures import write_token_folder
from quixer_rna.formats.kmer_stream import open_stream_data
from quixer_rna.ngram import KneserNeyModel
from quixer_rna.formats.predictions import load_predictions
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.kmers import kmer_to_id

ROOT = Path(__file__).resolve().parents[1]
# "TTTT" occurs once, "AAAA" many times: ids must not depend on frequency.
WINDOWS = {
    "train": [["AAAA", "AAAA", "CGTA", "AAAA"], ["AAAA", "CGTA", "AAAA", "TTTT"]],
    "val": [["GGGG", "AAAA", "CGTA", "ACGT"]],
    "test": [["ACGT", "AAAA", "AAAA", "GGGG"]],
}


def main_code(main, argv: list[str]) -> int:
    """A script's exit code; a parser error exits through SystemExit."""
    try:
        return main(argv)
    except SystemExit as exc:
        return exc.code


def _stream(root: Path) -> Path:
    """root/kmers: a k-mer stream of 4-mers whose windows are WINDOWS (each split one transcript)."""
    ids = {split: torch.tensor([[kmer_to_id(kmer) for kmer in window] for window in windows])
           for split, windows in WINDOWS.items()}
    write_token_folder(root, ids, 256, sources={split: [f"NM_{split}.1"] * len(w) for split, w in WINDOWS.items()})
    return root / "kmers"


def test_raw_kmer_ids_are_fixed_by_the_kmer_and_stable(tmp_path):
    stream = _stream(tmp_path / "data")
    for out in ("a", "b"):
        assert prepare_classical_benchmarks.main(["--data_dir", str(stream), "--output_dir", str(tmp_path / out)]) == 0
    first, second = open_tokens(tmp_path / "a"), open_tokens(tmp_path / "b")
    assert first.meta.kind == "identity" and first.tokenizer == "raw k-mers"
    assert first.vocab_size == 256 and first.k == 4 and first.fingerprint == second.fingerprint
    for split, windows in WINDOWS.items():
        expected = torch.tensor([[kmer_to_id(kmer) for kmer in window] for window in windows])
        index = torch.arange(len(windows))
        assert torch.equal(first[split].batch(index), expected)
        assert torch.equal(second[split].batch(index), expected)
        accessions = first[split].stream.transcripts.accessions
        assert [accessions[t] for t in first[split].window_transcripts()] == [f"NM_{split}.1"] * len(windows)
    assert torch.equal(first["train"].target_counts()[[0, 255]], torch.tensor([1, 1]))
    vocab = json.loads((tmp_path / "a" / "vocab.json").read_text())
    assert vocab == json.loads((tmp_path / "b" / "vocab.json").read_text())
    assert vocab["k"] == 4 and vocab["vocab_size"] == 256
    # The stream's separator k-mers (id 0 between windows, never in a window) are not stored, so the seen
    # k-mers are exactly the windows' ones.
    assert vocab["id_to_kmer"] == {"0": "AAAA", "27": "ACGT", "108": "CGTA", "170": "GGGG", "255": "TTTT"}
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert metrics["train_windows"] == 2 and metrics["vocab_size"] == 256 and metrics["seen_kmers"] == 5
    meta = json.loads((tmp_path / "a" / "metadata.json").read_text())
    assert meta["splits"]["val"] == {"windows": 1, "transcripts": 1, "distinct_kmers": 4}
    assert meta["stream"]["sha256"] == open_stream_data(stream).checksums()
    assert json.loads((tmp_path / "a" / "args.json").read_text())["role"] == "raw_tokens"
    assert not (tmp_path / "a" / "train.pt").exists()


def test_prepare_refuses_a_non_empty_output_and_a_missing_stream(tmp_path, capsys):
    stream = _stream(tmp_path / "data")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("x")
    assert prepare_classical_benchmarks.main(["--data_dir", str(stream), "--output_dir", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert prepare_classical_benchmarks.main(["--data_dir", str(tmp_path / "nope"), "--output_dir",
                                              str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "folder not found" in err[0]
    assert not (tmp_path / "o2").exists()


def _token_files(root: Path, vocab: int = 16) -> Path:
    """A learnable cycle (each token follows from the previous one) cut into windows of 6; returns the token
    folder (root/tokens, beside its stream root/kmers)."""
    generator = torch.Generator().manual_seed(0)
    cycle = torch.randperm(vocab, generator=generator)[:11]
    windows, sources = {}, {}
    for split, count in (("train", 96), ("val", 24), ("test", 24)):
        starts = torch.randint(0, len(cycle), (count,), generator=generator)
        windows[split] = cycle[(starts[:, None] + torch.arange(6)) % len(cycle)]
        sources[split] = [f"T{i // 4}" for i in range(count)]
    return write_token_folder(root, windows, vocab, sources=sources)


def test_ngram_end_to_end(tmp_path, capsys):
    data = _token_files(tmp_path / "data")
    out = tmp_path / "ngram"
    argv = ["--data_dir", str(data), "--model", "ngram", "--order", "2", "--output_dir", str(out)]
    assert train_classical_baselines.main(argv) == 0
    assert "perplexity" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "ngram" and metrics["tokens"]["vocab_size"] == 16
    assert metrics["tokens"]["fingerprint"] == open_tokens(data).fingerprint
    assert metrics["windows"] == {"train": 96, "val": 24, "test": 24}
    assert metrics["test"]["perplexity"] < 0.5 * metrics["references"]["unigram_perplexity"]
    tuning = metrics["discount_tuning"]
    assert tuning["tuned_val_cross_entropy"] <= tuning["textbook_val_cross_entropy"]
    predictions = load_predictions(out / "test_predictions.npz")
    assert len(predictions) == 24 and predictions.transcript.tolist() == [i // 4 for i in range(24)]
    assert predictions.nll.mean() == pytest.approx(metrics["test"]["loss"], rel=1e-5)
    assert predictions.correct.mean() == pytest.approx(metrics["test"]["accuracy"])
    assert KneserNeyModel.load(out / "ngram_model.npz").order == 2
    assert json.loads((out / "args.json").read_text())["status"] == "completed"
    # A rerun reports the completed run instead of counting again; --overwrite counts again.
    before = (out / "metrics.json").read_bytes()
    capsys.readouterr()
    assert train_classical_baselines.main(argv) == 0
    assert "already holds a completed run" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before
    assert train_classical_baselines.main(argv[:-2] + ["--order", "3", "--output_dir", str(out), "--overwrite"]) == 0
    assert json.loads((out / "metrics.json").read_text())["model_config"]["order"] == 3


def test_a_rerun_under_a_more_patient_rule_continues_the_stopped_run(tmp_path, capsys):
    data = _token_files(tmp_path / "data")
    out = tmp_path / "lstm"
    # 96 windows of 16: 6 steps an epoch; lr 1e-9 never improves on the start (step 0)
    argv = ["--data_dir", str(data), "--model", "lstm", "--embedding_dim", "8", "--epochs", "10", "--batch_size", "16",
            "--eval_every", "3", "--lr", "1e-9", "--device", "cpu", "--output_dir", str(out), "--patience", "1"]
    assert train_classical_baselines.main([*argv, "--patience_epochs", "0"]) == 0
    first = json.loads((out / "metrics.json").read_text())
    assert (first["steps"], first["best_step"], first["stopped_by"]) == (3, 0, "patience")
    capsys.readouterr()
    assert train_classical_baselines.main([*argv, "--patience_epochs", "2"]) == 0
    assert "continuing under {'patience': 1, 'patience_epochs': 2.0, 'plateau_margin': 0.0}" in capsys.readouterr().err
    second = json.loads((out / "metrics.json").read_text())
    assert (second["steps"], second["best_step"], second["stopped_by"]) == (12, 0, "patience")
    record = json.loads((out / "args.json").read_text())
    assert record["status"] == "completed" and record["args"]["patience_epochs"] == 2.0
    # a rule that ends the run where it ended: tested again and recorded under it, then reported as it stands
    capsys.readouterr()
    assert train_classical_baselines.main([*argv, "--patience_epochs", "1.9"]) == 0
    assert "ends at step 12 under {'patience': 1, 'patience_epochs': 1.9" in capsys.readouterr().err
    third = json.loads((out / "metrics.json").read_text())
    assert third["test"] == second["test"] and (third["steps"], third["train_config"]["patience_epochs"]) == (12, 1.9)
    assert json.loads((out / "args.json").read_text())["args"]["patience_epochs"] == 1.9
    assert train_classical_baselines.main([*argv, "--patience_epochs", "1.9"]) == 0
    assert "already holds a completed run" in capsys.readouterr().err


def test_bad_flags_are_one_line(tmp_path, capsys):
    data = _token_files(tmp_path / "data")
    base = ["--data_dir", str(data), "--output_dir", str(tmp_path / "out")]
    cases = [
        (["--model", "transformer", "--embedding_dim", "10", "--num_heads", "3"], "--num_heads"),
        (["--model", "lstm", "--num_layers", "0"], "--num_layers"),
        (["--model", "ngram", "--order", "7"], "--order"),
        (["--model", "rnn"], "--model"),
        (["--model", "lstm", "--normalise_features"], "--normalise_features"),  # the bottleneck's, not ignored
        (["--model", "ngram", "--features", "6"], "--features"),
    ]
    for extra, flag in cases:
        assert main_code(train_classical_baselines.main, base + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and flag in err[0], err
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    torch.save({"sequences": torch.zeros(2, 6, dtype=torch.int64), "vocab_size": 16}, legacy / "train.pt")
    assert main_code(train_classical_baselines.main, ["--data_dir", str(legacy), "--model", "ngram", "--output_dir",
                                                      str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "earlier version" in err[0] and "quantize_lambeq_embeddings.py" in err[0]
    assert not (tmp_path / "out").exists()


def test_lstm_end_to_end_subprocess(tmp_path):
    data = _token_files(tmp_path / "data")
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
    assert metrics["model"] == "lstm" and metrics["tokens"]["vocab_size"] == 16 and metrics["epochs_run"] == 3
    assert metrics["model_config"] == {"embedding_dim": 16, "num_layers": 2, "dropout": 0.0, "hidden_dim": 16}
    assert metrics["parameters"] > 0 and metrics["train"]["windows"] == 96
    assert metrics["test"]["perplexity"] < metrics["references"]["unigram_perplexity"]
    for name in ("args.json", "metrics.jsonl", "training_curves.png", "test_predictions.npz"):
        assert (out / name).is_file(), name
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        torch.load(out / name, weights_only=True)
    assert len(load_predictions(out / "test_predictions.npz")) == 24


def test_run_classical_prep_usage_line_on_bad_arguments(tmp_path):
    script = ROOT / "run_classical_prep.sh"
    for argv in ([], ["only_one"], [str(tmp_path / "missing.fa"), str(tmp_path / "out")]):
        result = subprocess.run(["bash", str(script), *argv], capture_output=True, text=True, timeout=30)
        assert result.returncode == 2
        assert "usage: run_classical_prep.sh FASTA OUT_DIR" in result.stderr
    assert not (tmp_path / "out").exists()


def test_run_classical_prep_end_to_end(tmp_path, capsys):
    generator = torch.Generator().manual_seed(1)
    sequences = {}
    records = []
    for i in range(12):
        bases = "".join("ACGT"[int(b)] for b in torch.randint(0, 4, (240,), generator=generator))
        sequences[f"NM_{1000 + i}.1"] = bases
        records.append(f">NM_{1000 + i}.1 Homo sapiens test gene (GENE{i}), mRNA\n{bases}\n")
    fasta = tmp_path / "tiny.fa"
    fasta.write_text("".join(records))
    out = tmp_path / "prep"
    env = {**os.environ, "PYTHON": sys.executable}
    command = ["bash", str(ROOT / "run_classical_prep.sh"), str(fasta), str(out), "--k", "3", "--window_size", "8"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    data = open_tokens(out)  # OUT_DIR resolves to OUT_DIR/tokens
    assert data.folder == out / "tokens" and data.vocab_size == 64 and data.meta.kind == "identity"
    assert json.loads((out / "kmers" / "metadata.json").read_text())["k"] == 3
    total = 0
    for split, part in data.splits.items():
        accessions = part.stream.transcripts.accessions
        rows = part.window_transcripts()
        tokens = part.batch(torch.arange(part.num_windows))
        for accession in set(accessions):
            kmers = [sequences[accession][i:i + 3] for i in range(0, 240 - 2, 3)]
            expected = [[kmer_to_id(km) for km in kmers[s:s + 8]] for s in range(len(kmers) - 7)]
            mine = torch.from_numpy(rows == accessions.index(accession))
            assert tokens[mine].tolist() == expected
            total += len(expected)
    assert total == 12 * (80 - 8 + 1)
    # A rerun skips both completed steps.
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert again.stdout.count("already completed; skipped") == 2
    # The trainers take OUT_DIR itself.
    assert train_classical_baselines.main(["--data_dir", str(out), "--model", "ngram", "--order", "2",
                                           "--output_dir", str(tmp_path / "ng")]) == 0
    assert json.loads((tmp_path / "ng" / "metrics.json").read_text())["tokens"]["vocab_size"] == 64


def test_run_train_gpu_usage_line_on_bad_arguments(tmp_path):
    script = ROOT / "run_train_gpu.sh"
    for args in ([], ["cpu", "lstm"], ["gpu0", "lstm", "out"], ["cpu", "rnn", "out"], ["0,x", "lstm", "out"]):
        result = subprocess.run(["bash", str(script), *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, args
        assert result.stderr.startswith("usage: bash run_train_gpu.sh DEVICES MODEL OUTPUT_DIR"), result.stderr
    assert not (tmp_path / "out").exists()


def test_run_train_gpu_trains_on_cpu_and_a_rerun_reports_the_finished_run(tmp_path):
    data = _token_files(tmp_path / "data")
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
    assert np.isfinite(metrics["test"]["loss"])
