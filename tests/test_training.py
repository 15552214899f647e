"""The shared training loop on a tiny test-only model: it learns, resumes exactly after a kill,
refuses to mix runs, stops on NaN, and leaves files every later stage can read."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from quixer_rna import checkpoint as ckpt
from quixer_rna.errors import UserError
from quixer_rna.formats.tokens import TokenSplit
from quixer_rna.models import register
from quixer_rna.training import TrainConfig, Trainer, epoch_batches, prepare_task, train_model


@register("tiny_test")
class TinyModel(nn.Module):
    """Embeddings -> dropout -> linear; reports hooks like Quixer does, so the loop logs them."""

    def __init__(self, vocab_size: int, context_length: int, dim: int = 8, dropout: float = 0.2, nan_after: int = 0):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(dim * context_length, vocab_size)
        self.nan_after = nan_after
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.drop(self.embed(x)).flatten(1))
        if self.training:
            self.calls += 1
            if self.nan_after and self.calls > self.nan_after:
                logits = logits * float("nan")
        return logits

    def on_epoch_start(self, epoch: int) -> dict:
        return {"active_layers": epoch}

    def extra_metrics(self) -> dict:
        return {"postselection": float(torch.sigmoid(self.head.bias[0].detach()))}


def make_split(n: int, vocab: int = 7, length: int = 4, seed: int = 0) -> TokenSplit:
    """Windows counting up modulo `vocab`: the last token is always the one before it plus one."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(0, vocab, (n, 1), generator=g)
    seq = (start + torch.arange(length)) % vocab
    return TokenSplit(seq, (start.squeeze(1) % 3), vocab, [f"tx{i // 4}" for i in range(n)])


@pytest.fixture
def data() -> dict[str, TokenSplit]:
    return {"train": make_split(96, seed=1), "val": make_split(32, seed=2), "test": make_split(40, seed=3)}


def config(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, lr=0.05, device="cpu", checkpoint_every=4, patience=0, seed=3)
    base.update(overrides)
    return TrainConfig(**base)


class Killed(Exception):
    """Stands in for a crash or SIGKILL at a chosen step."""


def kill_at(step: int):
    def callback(global_step: int) -> None:
        if global_step == step:
            raise Killed

    return callback


def test_learns_far_below_unigram_and_writes_outputs(tmp_path, data):
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=4), tmp_path)
    unigram = result["references"]["unigram_perplexity"]
    assert result["test"]["perplexity"] < 1.5 < unigram - 4  # 7 equally common tokens: unigram ~ 7
    assert result["test"]["accuracy"] > 0.9
    assert result["windows"] == {"train": 96, "val": 32, "test": 40}
    assert result["epochs_run"] == 4 and result["stopped_early"] is False
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert [r["active_layers"] for r in rows] == [1, 2, 3, 4]
    assert 0 < rows[-1]["postselection"] < 1 and result["mean_postselection"] == rows[-1]["postselection"]
    assert rows[-1]["lr"] == pytest.approx(0.0)  # cosine decays to zero at the last step
    for name in (ckpt.LAST, ckpt.BEST):
        state = torch.load(tmp_path / name, weights_only=True)
        assert state["identity"]["model_name"] == "tiny_test"
    preds = torch.load(tmp_path / "test_predictions.pt", weights_only=True)
    assert preds["nll"].shape == (40,) and len(preds["sources"]) == 40
    assert preds["nll"].mean().item() == pytest.approx(result["test"]["loss"], rel=1e-5)
    assert (tmp_path / "training_curves.png").read_bytes()[:4] == b"\x89PNG"


def test_kill_mid_epoch_then_rerun_equals_uninterrupted(tmp_path, data):
    # 96 windows / 16 = 6 steps per epoch; a checkpoint every 4 steps; killed at step 10 (epoch 2,
    # 2 steps after the step-8 checkpoint), so the rerun must replay steps 9-10 identically.
    cfg = config()
    reference = train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "ref")
    with pytest.raises(Killed):
        train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut", step_callback=kill_at(10))
    saved = ckpt.load_checkpoint(tmp_path / "cut" / ckpt.LAST)["progress"]
    assert (saved["next_epoch"], saved["next_step"]) == (2, 2)
    resumed = train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut")
    assert resumed["test"] == reference["test"]
    a = torch.load(tmp_path / "ref" / ckpt.LAST, weights_only=True)["model"]
    b = torch.load(tmp_path / "cut" / ckpt.LAST, weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ref_rows = (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()
    cut_rows = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    strip = lambda rows: [{k: v for k, v in json.loads(r).items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(cut_rows) == strip(ref_rows)


def test_epoch_callback_exception_propagates_after_checkpoint(tmp_path, data):
    seen: list[int] = []

    def prune(epoch: int, row: dict) -> None:
        seen.append(epoch)
        assert "val_loss" in row
        raise Killed

    with pytest.raises(Killed):
        train_model("tiny_test", {"dim": 8}, data, config(), tmp_path, epoch_callback=prune)
    assert seen == [1]
    assert ckpt.load_checkpoint(tmp_path / ckpt.LAST)["progress"]["next_epoch"] == 2
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_completed_run_is_reported_not_retrained(tmp_path, data):
    first = train_model("tiny_test", {"dim": 8}, data, config(epochs=1), tmp_path)
    steps: list[int] = []
    again = train_model("tiny_test", {"dim": 8}, data, config(epochs=1), tmp_path, step_callback=steps.append)
    assert steps == [] and again == first


def test_resume_with_other_sizes_is_refused(tmp_path, data):
    train_model("tiny_test", {"dim": 8}, data, config(epochs=1), tmp_path)
    with pytest.raises(UserError, match=r"dim.*--overwrite"):
        Trainer("tiny_test", {"dim": 4}, data, config(epochs=1), tmp_path)
    with pytest.raises(UserError, match=r"lr"):
        Trainer("tiny_test", {"dim": 8}, data, config(epochs=1, lr=0.01), tmp_path)
    data["train"] = make_split(96, seed=9)
    with pytest.raises(UserError, match=r"data_sha256"):
        Trainer("tiny_test", {"dim": 8}, data, config(epochs=1), tmp_path)


def test_early_stopping_on_val_loss(tmp_path, data):
    # lr 0 never improves after epoch 1, so patience 2 stops after epoch 3 of 10.
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=10, lr=0.0, patience=2), tmp_path)
    assert result["epochs_run"] == 3 and result["best_epoch"] == 1 and result["stopped_early"] is True


def test_nan_loss_stops_with_message_and_keeps_good_checkpoint(tmp_path, data):
    with pytest.raises(UserError, match=r"loss became NaN at epoch 2 step 1; lower --lr"):
        train_model("tiny_test", {"dim": 8, "nan_after": 6}, data, config(), tmp_path)
    state = ckpt.load_checkpoint(tmp_path / ckpt.LAST)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_classification_task_uses_labels(tmp_path, data):
    task = prepare_task(data, "classification")
    assert task.num_outputs == 3 and task.context_length == 4
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=1, task="classification"), tmp_path)
    assert result["num_classes"] == 3 and result["references"]["uniform_perplexity"] == 3.0


@pytest.mark.parametrize(
    "broken, message",
    [
        (lambda d: d.pop("val"), "missing split"),
        (lambda d: setattr(d["test"], "sequences", d["test"].sequences + 7), "vocabulary has 7"),
        (lambda d: setattr(d["train"], "sequences", d["train"].sequences[:, :1]), "L >= 2"),
    ],
)
def test_data_that_does_not_fit_is_refused(data, broken, message):
    broken(data)
    with pytest.raises(UserError, match=message):
        prepare_task(data, "autoregressive")


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    a = epoch_batches(50, 8, seed=1, epoch=2)
    assert all(torch.equal(x, y) for x, y in zip(a, epoch_batches(50, 8, seed=1, epoch=2)))
    assert not torch.equal(a[0], epoch_batches(50, 8, seed=1, epoch=3)[0])
    assert sorted(torch.cat(a).tolist()) == list(range(50))
