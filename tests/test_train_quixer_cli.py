"""train_quixer_hybrid.py end to end on tiny data: outputs, resume rules, --config precedence and
bad inputs that must end as one line on stderr."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import train_quixer_hybrid as script
from quixer_rna import training
from quixer_rna.formats.tokens import save_token_split

HAS_QUIXER = importlib.util.find_spec("quixer_rna.models.quixer") is not None
needs_quixer = pytest.mark.skipif(not HAS_QUIXER, reason="quixer_rna.models.quixer not present")
TINY = ["--qubits", "2", "--ansatz_layers", "1", "--embedding_dim", "8", "--qsvt_degree", "2"]


def write_data(folder: Path, vocab: int = 5, length: int = 4) -> Path:
    g = torch.Generator().manual_seed(0)
    for name, n in (("train", 48), ("val", 16), ("test", 16)):
        start = torch.randint(0, vocab, (n, 1), generator=g)
        seq = (start + torch.arange(length)) % vocab
        save_token_split(folder / f"{name}.pt", seq, vocab, sources=[f"{name}-tx{i // 2}" for i in range(n)])
    return folder


def argv(data: Path, out: Path, *extra: str) -> list[str]:
    common = ["--data_dir", str(data), "--output_dir", str(out), "--epochs", "2", "--batch_size", "16"]
    return [*common, "--device", "cpu", "--lr", "0.05", *TINY, *extra]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert ": error: " in err[0]
    return err[0]


@pytest.mark.slow
@needs_quixer
def test_cli_end_to_end_with_tiny_quixer(tmp_path, capsys):
    data, out = write_data(tmp_path / "data"), tmp_path / "run"
    assert script.main(argv(data, out, "--use_layerwise_training", "--layerwise_epochs", "1")) == 0
    assert "unigram" in capsys.readouterr().out
    args = json.loads((out / "args.json").read_text())
    assert args["status"] == "completed" and args["args"]["qubits"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "quixer" and metrics["model_config"]["layerwise_epochs"] == 1
    assert set(metrics["test"]) == {"loss", "perplexity", "accuracy", "top5_accuracy"}
    assert metrics["references"]["uniform_perplexity"] == 5.0 and metrics["references"]["unigram_perplexity"] > 1
    assert 0 < metrics["mean_postselection"] <= 1 and metrics["parameters"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["active_layers"] for r in rows] == [1, 1]
    for name in ("checkpoint_last.pt", "checkpoint_best.pt"):
        state = torch.load(out / name, weights_only=True)
        assert state["identity"]["model_config"]["qubits"] == 2
    preds = torch.load(out / "test_predictions.pt", weights_only=True)
    assert preds["nll"].shape == (16,) and preds["sources"][0] == "test-tx0"
    assert (out / "training_curves.png").stat().st_size > 1000

    # Rerunning a finished run reports it without training again.
    stamp = (out / "checkpoint_last.pt").stat().st_mtime_ns
    assert script.main(argv(data, out, "--use_layerwise_training", "--layerwise_epochs", "1")) == 0
    assert (out / "checkpoint_last.pt").stat().st_mtime_ns == stamp
    capsys.readouterr()
    # Other model sizes in the same folder are refused with a hint.
    assert script.main(argv(data, out, "--qubits", "3")) == 2
    line = one_error_line(capsys)
    assert "model_config.qubits: 2 -> 3" in line and "--overwrite" in line
    assert script.main(argv(data, out, "--qubits", "3", "--overwrite", "--epochs", "1")) == 0
    assert json.loads((out / "metrics.json").read_text())["model_config"]["qubits"] == 3


def test_config_file_is_overridden_by_command_line(tmp_path, capsys):
    cfg = tmp_path / "best_params.json"
    cfg.write_text(json.dumps({"lr": 0.01, "qubits": 3, "data_dir": "d", "use_layerwise_training": True}))
    args = script.build_parser().parse_args(["--config", str(cfg), "--lr", "0.5"])
    assert (args.lr, args.qubits, args.data_dir, args.use_layerwise_training) == (0.5, 3, "d", True)
    assert args.batch_size == 32 and args.init_strategy == "small_gaussian"

    cfg.write_text(json.dumps({"lr": 0.01, "n_heads": 4}))
    with pytest.raises(SystemExit) as exc:
        script.build_parser().parse_args(["--config", str(cfg), "--data_dir", "d"])
    assert exc.value.code == 2 and "unknown key(s) n_heads" in one_error_line(capsys)

    cfg.write_text(json.dumps({"epochs": 2.5}))
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(["--config", str(cfg), "--data_dir", "d"])
    assert "epochs=2.5 is not a valid value" in one_error_line(capsys)

    cfg.write_text(json.dumps({"init_strategy": "zeros"}))
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(["--config", str(cfg), "--data_dir", "d"])
    assert "init_strategy='zeros'" in one_error_line(capsys)


def _raw_split(path: Path, sequences: torch.Tensor, vocab: int) -> None:
    labels = torch.zeros(len(sequences), dtype=torch.long)
    torch.save({"sequences": sequences, "labels": labels, "vocab_size": vocab}, path)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda d: (d / "val.pt").unlink(), "missing split file(s) val.pt"),
        (lambda d: _raw_split(d / "test.pt", torch.full((4, 4), 7), 5), "vocabulary has 5 tokens"),
        (lambda d: _raw_split(d / "train.pt", torch.zeros(4, 1, dtype=torch.long), 5), "at least 2 are needed"),
    ],
)
def test_bad_data_is_one_stderr_line(tmp_path, capsys, damage, message):
    data = write_data(tmp_path / "data")
    damage(data)
    assert script.main(argv(data, tmp_path / "run")) == 2
    assert message in one_error_line(capsys)


class _NanModel(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * float("nan") * torch.ones(x.shape[0], 1)


def test_nan_loss_is_one_stderr_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(training, "build_model", lambda name, vocab, length, config: _NanModel(vocab))
    data = write_data(tmp_path / "data")
    assert script.main(argv(data, tmp_path / "run", "--log_level", "warning")) == 2
    assert "loss became NaN at epoch 1 step 1; lower --lr" in one_error_line(capsys)


@pytest.mark.slow
@needs_quixer
def test_two_gloo_processes_match_one_process(tmp_path):
    """torchrun with 2 CPU ranks splits each global batch; without dropout it must match 1 process."""
    data = write_data(tmp_path / "data")
    flags = ["--epochs", "1", "--dropout", "0", "--log_level", "warning"]
    assert script.main(argv(data, tmp_path / "one", *flags)) == 0
    root = Path(script.__file__).resolve().parent
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(
        [*command, str(root / "train_quixer_hybrid.py"), *argv(data, tmp_path / "two", *flags)],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    for key in ("loss", "accuracy", "top5_accuracy"):
        assert two["test"][key] == pytest.approx(one["test"][key], abs=1e-5)
    a = torch.load(tmp_path / "one" / "checkpoint_last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "two" / "checkpoint_last.pt", weights_only=True)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
