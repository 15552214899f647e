"""Every stage killed with SIGKILL at several moments, right after its run record appears included, then
rerun with the same command: it finishes, with the same outputs as a run never interrupted. And a second
process over a live run stops with one line naming the first."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")


def _run(argv: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _kill_when(argv: list[str], trigger: Path, timeout: float = 300) -> bool:
    """Start the command, SIGKILL it as soon as `trigger` exists; False when it ended first."""
    proc = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if trigger.exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                return True
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return False


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_kills(argv_for, triggers, compare, tmp_path) -> None:
    """Run uninterrupted into `ref`; for each trigger, a killed-then-rerun copy must compare equal."""
    ref = tmp_path / "ref"
    _run(argv_for(ref))
    killed_any = False
    for index, trigger in enumerate(triggers):
        out = tmp_path / f"killed{index}"
        killed = _kill_when(argv_for(out), trigger(out))
        killed_any |= killed
        if killed:
            record = out / "args.json" if out.is_dir() else out.with_name(out.name + ".args.json")
            if record.is_file():
                assert json.loads(record.read_text())["status"] == "running"  # what a dead run leaves behind
        _run(argv_for(out))
        compare(ref, out)
    assert killed_any, "every run ended before it could be killed: nothing was tested"


@pytest.fixture(scope="module")
def fasta(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fasta") / "rna.fasta"
    _run(["download_rna_sequences.py", "--source", "synthetic", "--max_sequences", "300", "--output", str(path)])
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, fasta) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "prepare"
    _run(["prepare_autoregressive_data.py", "--fasta", str(fasta), "--output_dir", str(out)])
    return out


@pytest.fixture(scope="module")
def tokens(tmp_path_factory, prepared) -> Path:
    out = tmp_path_factory.mktemp("tokens") / "raw"
    _run(["prepare_classical_benchmarks.py", "--data_dir", str(prepared), "--output_dir", str(out)])
    return out


def test_download(tmp_path):
    def argv(out: Path) -> list[str]:
        return ["download_rna_sequences.py", "--source", "synthetic", "--max_sequences", "3000", "--output", str(out)]

    def compare(ref: Path, out: Path) -> None:
        assert _digest(ref) == _digest(out)

    _check_kills(lambda d: argv(d / "rna.fasta"), [lambda d: d / "rna.fasta.args.json"],
                 lambda a, b: compare(a / "rna.fasta", b / "rna.fasta"), tmp_path)


def test_prepare(tmp_path, fasta):
    def argv(out: Path) -> list[str]:
        return ["prepare_autoregressive_data.py", "--fasta", str(fasta), "--output_dir", str(out), "--write_sentences"]

    def compare(ref: Path, out: Path) -> None:
        for split in ("train", "val", "test"):
            for name in ("kmers.bin", "segments.npy", "transcripts.tsv", "sentences.txt"):
                assert _digest(ref / split / name) == _digest(out / split / name), (split, name)
        assert json.loads((ref / "metadata.json").read_text())["splits"] == json.loads((out / "metadata.json").read_text())["splits"]

    _check_kills(argv, [lambda d: d / "args.json", lambda d: d / "train" / "kmers.bin"], compare, tmp_path)


def test_encode_and_quantize(tmp_path, prepared):
    def encode(out: Path) -> list[str]:
        return ["lambeq_encoder.py", "--data_dir", str(prepared), "--output_dir", str(out), "--device", "cpu"]

    _check_kills(encode, [lambda d: d / "args.json"],
                 lambda a, b: _digest(a / "table.npy") == _digest(b / "table.npy") or pytest.fail("table differs"),
                 tmp_path / "encode")

    def quantize(out: Path) -> list[str]:
        return ["quantize_lambeq_embeddings.py", "--embeddings_dir", str(tmp_path / "encode" / "ref"), "--output_dir",
                str(out), "--n_clusters", "64"]

    def compare(ref: Path, out: Path) -> None:
        assert _digest(ref / "kmer_tokens.npy") == _digest(out / "kmer_tokens.npy")

    _check_kills(quantize, [lambda d: d / "args.json"], compare, tmp_path / "quantize")


@pytest.mark.parametrize("model", ["quixer", "lstm"])
def test_trainer(tmp_path, tokens, model):
    """Killed right after its record appears (before any checkpoint) and after its first checkpoint."""
    def argv(out: Path) -> list[str]:
        common = ["--data_dir", str(tokens), "--output_dir", str(out), "--epochs", "2", "--max_steps_per_epoch", "6",
                  "--batch_size", "16", "--checkpoint_every", "2", "--device", "cpu", "--val_windows", "300"]
        if model == "quixer":
            return ["train_quixer_hybrid.py", *common, "--qubits", "2", "--ansatz_layers", "1", "--qsvt_degree", "2",
                    "--embedding_dim", "8"]
        return ["train_classical_baselines.py", *common, "--model", model, "--embedding_dim", "8"]

    def compare(ref: Path, out: Path) -> None:
        a, b = (json.loads((d / "metrics.json").read_text()) for d in (ref, out))
        assert a["test"] == pytest.approx(b["test"], rel=1e-9) and a["best_step"] == b["best_step"]
        history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        reference = [json.loads(line) for line in (ref / "metrics.jsonl").read_text().splitlines()]
        assert [r["val_loss"] for r in history] == pytest.approx([r["val_loss"] for r in reference], rel=1e-9)

    _check_kills(argv, [lambda d: d / "args.json", lambda d: d / "checkpoint_last.pt"], compare, tmp_path)


def test_ngram(tmp_path, tokens):
    def argv(out: Path) -> list[str]:
        return ["train_classical_baselines.py", "--data_dir", str(tokens), "--output_dir", str(out), "--model", "ngram"]

    def compare(ref: Path, out: Path) -> None:
        assert json.loads((ref / "metrics.json").read_text())["test"] == json.loads((out / "metrics.json").read_text())["test"]

    _check_kills(argv, [lambda d: d / "args.json"], compare, tmp_path)


def test_tuner(tmp_path, tokens):
    def argv(out: Path) -> list[str]:
        return ["tune_quixer_hybrid.py", "--data_dir", str(tokens), "--output_dir", str(out), "--model", "lstm",
                "--n_trials", "2", "--epochs_per_trial", "1", "--max_steps_per_epoch", "3", "--batch_size", "16",
                "--val_windows", "200", "--device", "cpu", "--heartbeat", "1",
                "--search_space", '{"embedding_dim": 8, "hidden_dim": 8, "num_layers": 1}']

    def compare(ref: Path, out: Path) -> None:
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["trials_by_state"]["COMPLETE"] == 2 and (out / "best_params.json").is_file()

    _check_kills(argv, [lambda d: d / "args.json", lambda d: d / "trials" / "0" / "args.json"], compare, tmp_path)


def test_a_live_run_is_not_taken_over(tmp_path, tokens):
    out = tmp_path / "lstm"
    argv = ["train_classical_baselines.py", "--data_dir", str(tokens), "--output_dir", str(out), "--model", "lstm",
            "--epochs", "50", "--embedding_dim", "8", "--device", "cpu"]
    first = subprocess.Popen([sys.executable, *argv], cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not (out / "args.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.02)
        second = subprocess.run([sys.executable, *argv], cwd=ROOT, env=_env(), capture_output=True, text=True,
                                timeout=120)
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 2
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and f"process {first.pid}" in lines[0] and "--output_dir" in lines[0], lines
