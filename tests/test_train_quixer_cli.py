"""train_quixer_hybrid.py end to end on tiny data: outputs, resume rules, --config precedence and
bad inputs that must end as one line on stderr, and two gloo processes (what torchrun starts) against one."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import train_quixer_hybrid as script
from fixtures import write_token_folder
from quixer_rna import checkpoint as ckpt
from quixer_rna.formats.predictions import load_predictions
from quixer_rna.formats.results import read_result
from quixer_rna.formats.tokens import open_tokens
from quixer_rna.runio import read_json
from quixer_rna.training import loop

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(script.__file__).resolve().parent
TINY = ["--qubits", "2", "--ansatz_layers", "1", "--embedding_dim", "8", "--qsvt_degree", "2"]


def windows(n: int, vocab: int, length: int, g: torch.Generator) -> torch.Tensor:
    start = torch.randint(0, vocab, (n, 1), generator=g)
    return (start + torch.arange(length)) % vocab


def write_data(root: Path, vocab: int = 5, length: int = 4) -> Path:
    """A token folder (under root/tokens; its k-mer stream under root/kmers) of counting windows."""
    g = torch.Generator().manual_seed(0)
    splits = {name: windows(n, vocab, length, g) for name, n in (("train", 48), ("val", 16), ("test", 16))}
    sources = {name: [f"{name}-tx{i // 2}" for i in range(len(w))] for name, w in splits.items()}
    return write_token_folder(root, splits, vocab, sources=sources)


def argv(data: Path, out: Path, *extra: str) -> list[str]:
    common = ["--data_dir", str(data), "--output_dir", str(out), "--epochs", "2", "--batch_size", "16"]
    return [*common, "--device", "cpu", "--lr", "0.05", *TINY, *extra]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    assert ": error: " in err[0]
    return err[0]


@pytest.mark.slow
def test_cli_end_to_end_with_tiny_quixer(tmp_path, capsys):
    data, out = write_data(tmp_path / "data"), tmp_path / "run"
    layerwise = ["--use_layerwise_training", "--layerwise_epochs", "1", "--eval_every", "2", "--ansatz_layers", "2"]
    assert script.main(argv(data, out, *layerwise)) == 0
    printed = capsys.readouterr().out
    assert "quixer: test loss" in printed and "unigram" in printed
    record = json.loads((out / "args.json").read_text())
    assert record["status"] == "completed" and record["args"]["qubits"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["format"] == "quixer-rna-result" and metrics["model"] == "quixer"
    assert metrics["model_config"]["layerwise_epochs"] == 1 and metrics["model_config"]["use_layerwise_training"]
    assert metrics["train_config"]["eval_every"] == 2 and metrics["world_size"] == 1
    result = read_result(out)
    assert set(result.test) == {"loss", "perplexity", "accuracy", "top5_accuracy"}
    assert result.references["uniform_perplexity"] == 5.0 and result.references["unigram_perplexity"] > 1
    assert 0 < result.metrics["mean_postselection"] <= 1 and result.parameters > 0
    assert result.tokens["vocab_size"] == 5 and result.tokens["fingerprint"] == open_tokens(data).fingerprint
    start, *rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 48 windows / 16 = 3 steps per epoch; evaluations at the start, steps 2, 3 (end), 4, 6 (end)
    assert (start["step"], start["active_layers"]) == (0, 1) and "postselection" not in start
    assert [(r["step"], r["epoch_end"]) for r in rows] == [(2, False), (3, True), (4, False), (6, True)]
    assert [r["active_layers"] for r in rows] == [1, 1, 2, 2]  # one more ansatz layer each epoch
    assert all(0 < r["postselection"] <= 1 for r in rows)
    for name in (ckpt.LAST, ckpt.BEST):
        assert ckpt.load_checkpoint(out / name)["identity"]["model_config"]["qubits"] == 2
    preds = load_predictions(out / "test_predictions.npz")
    assert len(preds) == 16 and preds.nll.mean() == pytest.approx(result.test["loss"], rel=1e-5)
    accessions = open_tokens(data)["test"].stream.transcripts.accessions
    assert [accessions[t] for t in preds.transcript[:4]] == ["test-tx0", "test-tx0", "test-tx1", "test-tx1"]
    assert (out / "training_curves.png").stat().st_size > 1000

    # Rerunning a finished run reports it without training again.
    stamp = (out / ckpt.LAST).stat().st_mtime_ns
    assert script.main(argv(data, out, *layerwise)) == 0
    assert (out / ckpt.LAST).stat().st_mtime_ns == stamp
    assert "quixer: test loss" in capsys.readouterr().out
    # --overwrite trains afresh with other sizes.
    assert script.main(argv(data, out, "--qubits", "3", "--overwrite", "--epochs", "1")) == 0
    assert json.loads((out / "metrics.json").read_text())["model_config"]["qubits"] == 3
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2  # the start and the one epoch


def test_completed_run_with_other_sizes_is_refused(tmp_path, capsys):
    data, out = write_data(tmp_path / "data"), tmp_path / "run"
    assert script.main(argv(data, out, "--epochs", "1", "--log_level", "warning")) == 0
    capsys.readouterr()
    assert script.main(argv(data, out, "--epochs", "1", "--log_level", "warning", "--qubits", "3")) == 2
    line = one_error_line(capsys)
    assert "model_config.qubits: 2 -> 3" in line and "--overwrite" in line


def test_killed_run_resumes_from_its_checkpoint(tmp_path, capsys, monkeypatch):
    """A run interrupted mid-epoch (Ctrl-C: exit 130) and rerun with the same command ends as an uninterrupted one."""
    data = write_data(tmp_path / "data")
    flags = ["--epochs", "1", "--batch_size", "8", "--checkpoint_every", "2", "--log_level", "warning"]
    assert script.main(argv(data, tmp_path / "ref", *flags)) == 0
    real_step = loop.Trainer._check_finite

    def interrupt(self, epoch, step):
        real_step(self, epoch, step)
        if step == 5:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop.Trainer, "_check_finite", interrupt)
    assert script.main(argv(data, tmp_path / "cut", *flags)) == 130
    monkeypatch.undo()
    assert ckpt.load_checkpoint(tmp_path / "cut" / ckpt.LAST)["state"]["next_step"] == 4
    assert json.loads((tmp_path / "cut" / "args.json").read_text())["status"] == "interrupted"
    capsys.readouterr()
    # resuming with other sizes is refused with a hint, and leaves the checkpoint alone
    assert script.main(argv(data, tmp_path / "cut", *flags, "--qubits", "3")) == 2
    line = one_error_line(capsys)
    assert "model_config.qubits: 2 -> 3" in line and "--overwrite" in line
    assert script.main(argv(data, tmp_path / "cut", *flags, "--lr", "0.01")) == 2
    assert "lr: 0.05 -> 0.01" in one_error_line(capsys)
    assert ckpt.load_checkpoint(tmp_path / "cut" / ckpt.LAST)["state"]["next_step"] == 4
    assert script.main(argv(data, tmp_path / "cut", *flags)) == 0
    a, b = read_result(tmp_path / "ref"), read_result(tmp_path / "cut")
    assert a.test == b.test and a.val_loss == b.val_loss
    wa, wb = (ckpt.load_checkpoint(p / ckpt.LAST)["model"] for p in (tmp_path / "ref", tmp_path / "cut"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_config_file_is_overridden_by_command_line(tmp_path, capsys):
    cfg = tmp_path / "best_params.json"
    cfg.write_text(json.dumps({"lr": 0.01, "qubits": 3, "data_dir": "d", "use_layerwise_training": True,
                               "postselection_weight": 0.5, "log_every": "30s"}))
    args = script.build_parser().parse_args(["--config", str(cfg), "--lr", "0.5", "--log_every", "7"])
    assert (args.lr, args.qubits, args.data_dir, args.use_layerwise_training) == (0.5, 3, "d", True)
    assert args.postselection_weight == 0.5 and args.log_every.steps == 7
    assert args.batch_size is None and args.init_strategy == "small_gaussian" and args.eval_every == 0
    assert script.build_parser().parse_args(["--config", str(cfg)]).log_every.seconds == 30

    cfg.write_text(json.dumps({"lr": 0.01, "n_heads": 4}))
    with pytest.raises(SystemExit) as exc:
        script.build_parser().parse_args(["--config", str(cfg), "--data_dir", "d"])
    assert exc.value.code == 2 and "unknown key(s) n_heads" in one_error_line(capsys)

    cfg.write_text(json.dumps({"epochs": 2.5}))
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(["--config", str(cfg), "--data_dir", "d"])
    assert "epochs=2.5 is not a valid value" in one_error_line(capsys)

    cfg.write_text(json.dumps({"lr": -1}))
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(["--config", str(cfg), "--data_dir", "d"])
    assert "lr=-1 is not a valid value (expected a number > 0" in one_error_line(capsys)

    cfg.write_text(json.dumps({"init_strategy": "zeros"}))
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(["--config", str(cfg), "--data_dir", "d"])
    assert "init_strategy='zeros'" in one_error_line(capsys)

    # the classification task is gone: only the autoregressive one is accepted
    with pytest.raises(SystemExit):
        script.build_parser().parse_args(["--data_dir", "d", "--task", "classification"])
    assert "--task" in one_error_line(capsys)


def _drop_val(token_dir: Path) -> None:
    shutil.rmtree(token_dir.parent / "kmers" / "val")


def _damage_kmers(token_dir: Path) -> None:
    path = token_dir.parent / "kmers" / "test" / "kmers.bin"
    path.write_bytes(path.read_bytes()[:-3])


def _legacy(token_dir: Path) -> None:
    shutil.rmtree(token_dir)
    token_dir.mkdir()
    torch.save({"sequences": torch.zeros(4, 4, dtype=torch.long), "vocab_size": 5}, token_dir / "train.pt")


def _rewrite_stream(token_dir: Path) -> None:
    meta = read_json(token_dir / "metadata.json")
    meta["stream"]["sha256"]["train"]["kmers.bin"] = "0" * 64
    (token_dir / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "damage, message",
    [
        (_drop_val, "val/kmers.bin: missing"),
        (_damage_kmers, "truncated or damaged"),
        (_legacy, "written by an earlier version"),
        (_rewrite_stream, "was rewritten after this folder was made (split train differs)"),
        (lambda d: shutil.rmtree(d), "folder not found"),
    ],
)
def test_bad_data_is_one_stderr_line(tmp_path, capsys, damage, message):
    data = write_data(tmp_path / "data")
    damage(data)
    assert script.main(argv(data, tmp_path / "run")) == 2
    assert message in one_error_line(capsys)


def test_token_outside_the_vocabulary_is_one_stderr_line(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    splits = {name: windows(8, 5, 4, g) for name in ("train", "val", "test")}
    splits["test"][0, 1] = 7  # a k-mer (vocabulary 5) without a token
    data = write_token_folder(tmp_path / "data", splits, 5)
    assert script.main(argv(data, tmp_path / "run")) == 2
    assert "a k-mer of split test has no token" in one_error_line(capsys)


def test_windows_of_one_token_are_one_stderr_line(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    splits = {name: windows(8, 5, 1, g) for name in ("train", "val", "test")}
    data = write_token_folder(tmp_path / "data", splits, 5)
    assert script.main(argv(data, tmp_path / "run")) == 2
    assert "at least 2" in one_error_line(capsys)


class _NanModel(nn.Module):
    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(vocab_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * float("nan") * torch.ones(x.shape[0], 1)


def test_nan_loss_is_one_stderr_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(loop, "build_model", lambda name, vocab, length, config: _NanModel(vocab))
    data = write_data(tmp_path / "data")
    assert script.main(argv(data, tmp_path / "run", "--log_level", "warning")) == 2
    line = one_error_line(capsys)
    assert "loss became NaN at epoch 1 (steps 1..1 of it); lower --lr (now 0.05)" in line
    assert json.loads((tmp_path / "run" / "args.json").read_text())["status"] != "completed"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_ranks(args: list[str], timeout: float = 240) -> list[tuple[str, str]]:
    """The trainer as 2 CPU ranks given the environment torchrun gives; both must exit 0."""
    port = str(_free_port())
    procs = []
    for rank in range(2):
        env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "train_quixer_hybrid.py"), *args], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
        outputs = [p.communicate(timeout=timeout) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    return outputs


@pytest.mark.slow
def test_a_rank_without_windows_in_a_step_keeps_in_step(tmp_path):
    """33 train windows at batch 16: the epoch's last step has 1 window, none for rank 1, right after a
    mid-epoch evaluation. Every rank must still take part in the same reductions (it used to hang)."""
    g = torch.Generator().manual_seed(0)
    splits = {name: windows(n, 5, 4, g) for name, n in (("train", 33), ("val", 8), ("test", 8))}
    data = write_token_folder(tmp_path / "data", splits, 5)
    _two_ranks([*argv(data, tmp_path / "two", "--epochs", "1", "--eval_every", "2", "--log_level", "warning")],
               timeout=120)
    history = [json.loads(line) for line in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [0, 2, 3]
    assert all(np.isfinite(row["postselection"]) for row in history[1:])


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    """Two CPU ranks (the environment torchrun gives: RANK, WORLD_SIZE, MASTER_ADDR/PORT) split each global
    batch; without dropout they must match 1 process, and only rank 0 writes the result."""
    data = write_data(tmp_path / "data")
    flags = ["--epochs", "1", "--dropout", "0", "--log_level", "warning", "--eval_every", "2"]
    assert script.main(argv(data, tmp_path / "one", *flags)) == 0
    outputs = _two_ranks(argv(data, tmp_path / "two", *flags))
    assert "quixer: test loss" in outputs[0][0]
    one = read_result(tmp_path / "one").as_dict()
    two = read_result(tmp_path / "two").as_dict()
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert two["val"]["loss"] == pytest.approx(one["val"]["loss"], abs=1e-6)
    rows = [[json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
            for name in ("one", "two")]
    assert [r["step"] for r in rows[0]] == [r["step"] for r in rows[1]] == [0, 2, 3]
    for a, b in zip(*rows):
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=1e-5)
        if a["step"]:  # the start has trained nothing yet
            assert b["train_loss"] == pytest.approx(a["train_loss"], abs=1e-5)
            assert b["postselection"] == pytest.approx(a["postselection"], abs=1e-5)
    a = ckpt.load_checkpoint(tmp_path / "one" / ckpt.LAST)["model"]
    b = ckpt.load_checkpoint(tmp_path / "two" / ckpt.LAST)["model"]
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
    # Rank 0's contiguous shard of the test split (windows 0-7). Rank 1's shard and so the test loss can come
    # from stale best weights (tests/test_distributed.py STALE_BEST, a library bug), compared there.
    two_nll = load_predictions(tmp_path / "two" / "test_predictions.npz").nll
    one_nll = load_predictions(tmp_path / "one" / "test_predictions.npz").nll
    assert len(two_nll) == len(one_nll) == 16
    np.testing.assert_allclose(two_nll[:8], one_nll[:8], atol=1e-5)
