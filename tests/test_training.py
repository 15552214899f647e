"""The shared training loop on a tiny test-only model: it learns, resumes exactly after a kill,
refuses to mix runs, evaluates every --eval_every steps, stops early counting evaluations, stops on NaN,
and leaves files every later stage can read."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from fixtures import counting_windows, write_token_folder
from quixer_rna import checkpoint as ckpt
from quixer_rna.errors import UserError
from quixer_rna.formats.predictions import FILE as PREDICTIONS_FILE, load_predictions
from quixer_rna.formats.results import ModelResult, read_result, write_result
from quixer_rna.formats.tokens import TokenData, open_tokens
from quixer_rna.models import register
from quixer_rna.training import TrainConfig, Trainer, epoch_order, train_model, val_sample
from quixer_rna.training.distributed import DistContext

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class TinyConfig:
    dim: int = field(default=8, metadata={"help": "embedding size"})
    dropout: float = field(default=0.2, metadata={"help": "dropout"})
    nan_after: int = field(default=0, metadata={"help": "training forwards before the logits turn NaN (0: never)"})


@register("tiny_test", TinyConfig)
class TinyModel(nn.Module):
    """Embeddings -> dropout -> linear; reports hooks like Quixer does, so the loop logs them."""

    def __init__(self, vocab_size: int, context_length: int, config: TinyConfig):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.dim * context_length, vocab_size)
        self.nan_after = config.nan_after
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
        return {"postselection": torch.sigmoid(self.head.bias[0].detach())}


def make_data(root: Path, seeds: tuple[int, int, int] = (1, 2, 3),
              sizes: tuple[int, int, int] = (96, 32, 40)) -> TokenData:
    splits = {name: counting_windows(n, seed=seed) for name, n, seed in zip(("train", "val", "test"), sizes, seeds)}
    sources = {name: [f"{name}-tx{i // 4}" for i in range(len(w))] for name, w in splits.items()}
    return open_tokens(write_token_folder(root, splits, 7, sources=sources))


@pytest.fixture
def data(tmp_path) -> TokenData:
    return make_data(tmp_path / "data")


def config(**overrides) -> TrainConfig:
    base = dict(epochs=3, batch_size=16, lr=0.05, device="cpu", checkpoint_every=4, patience=0, seed=3)
    base.update(overrides)
    return TrainConfig(**base)


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def without_time(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


class Killed(Exception):
    """Stands in for a crash or SIGKILL at a chosen step."""


def kill_at(step: int):
    def callback(global_step: int) -> None:
        if global_step == step:
            raise Killed

    return callback


def test_learns_far_below_unigram_and_writes_outputs(tmp_path, data):
    out = tmp_path / "run"
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=4), out)
    unigram = result["references"]["unigram_perplexity"]
    assert result["test"]["perplexity"] < 1.5 < unigram - 4  # 7 equally common tokens: unigram ~ 7
    assert result["test"]["accuracy"] > 0.9
    assert result["windows"] == {"train": 96, "val": 32, "test": 40}
    assert result["epochs_run"] == 4 and result["evaluations"] == 5 and result["steps"] == 24
    assert result["stopped_early"] is False and result["world_size"] == 1
    assert result["model_config"] == {"dim": 8, "dropout": 0.2, "nan_after": 0}
    start, *rows = rows_of(out)
    # the start is evaluated before the first step (as epoch 1 begins), with no training metrics yet
    assert (start["epoch"], start["step"], start["epoch_end"], start["train_loss"]) == (1, 0, False, None)
    assert start["active_layers"] == 1 and start["val_loss"] > rows[-1]["val_loss"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4] and all(r["epoch_end"] for r in rows)
    assert [r["step"] for r in rows] == [6, 12, 18, 24]
    assert [r["active_layers"] for r in rows] == [1, 2, 3, 4]
    assert 0 < rows[-1]["postselection"] < 1
    assert result["extra"]["mean_postselection"] == rows[-1]["postselection"]
    assert rows[-1]["lr"] == pytest.approx(0.0)  # cosine decays to zero at the last step
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    for name in (ckpt.LAST, ckpt.BEST):
        state = ckpt.load_checkpoint(out / name)
        assert state["identity"]["model_name"] == "tiny_test" and state["identity"]["tokens"] == data.fingerprint
    assert torch.load(out / ckpt.LAST, weights_only=True)["state"]["completed"] is True

    # per-window test results: stream order, one per test window, averaging to the test loss
    preds = load_predictions(out / PREDICTIONS_FILE)
    assert len(preds) == 40 and preds.fingerprint == data.fingerprint
    assert preds.transcript.tolist() == [i // 4 for i in range(40)]
    assert preds.nll.mean() == pytest.approx(result["test"]["loss"], rel=1e-5)
    assert preds.correct.mean() == pytest.approx(result["test"]["accuracy"])
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"

    # the result follows the results schema (the stage writes it as metrics.json)
    write_result(out, ModelResult.from_json(result, "the trainer"))
    read = read_result(out)
    assert read.test == result["test"] and read.metrics["mean_postselection"] == rows[-1]["postselection"]
    assert read.train == {"fraction": 1.0, "windows": 96, "kmers": 96 * 4}


def test_kill_mid_epoch_then_rerun_equals_uninterrupted(tmp_path, data):
    # 96 windows / 16 = 6 steps per epoch; a checkpoint every 4 steps; killed at step 10 (epoch 2,
    # 2 steps after the step-8 checkpoint), so the rerun must replay steps 9-10 identically.
    cfg = config()
    reference = train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "ref")
    with pytest.raises(Killed):
        train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut", step_callback=kill_at(10))
    saved = ckpt.load_checkpoint(tmp_path / "cut" / ckpt.LAST)["state"]
    assert (saved["next_epoch"], saved["next_step"], saved["global_step"]) == (2, 2, 8)
    assert float(saved["train_sums"][3]) == 2 * 16  # the running sums of steps 7-8 travel with it
    resumed = train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut")
    assert resumed["test"] == reference["test"]
    skip = {"train_seconds"}
    assert {k: v for k, v in resumed.items() if k not in skip} == {k: v for k, v in reference.items() if k not in skip}
    a = ckpt.load_checkpoint(tmp_path / "ref" / ckpt.LAST)["model"]
    b = ckpt.load_checkpoint(tmp_path / "cut" / ckpt.LAST)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert without_time(rows_of(tmp_path / "cut")) == without_time(rows_of(tmp_path / "ref"))
    np.testing.assert_array_equal(load_predictions(tmp_path / "cut" / PREDICTIONS_FILE).nll,
                                  load_predictions(tmp_path / "ref" / PREDICTIONS_FILE).nll)


def test_kill_between_the_best_and_the_last_checkpoint_then_rerun_equals_uninterrupted(tmp_path, data, monkeypatch):
    cfg = config(eval_every=2)
    reference = train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "ref")
    save = ckpt.save_checkpoint
    written_at_step_4: list[str] = []

    def killed_between_two_files(path, payload):  # the step-4 evaluation is a best: it writes two files
        if payload["state"]["global_step"] == 4:
            if written_at_step_4:
                raise Killed
            written_at_step_4.append(Path(path).name)
        save(path, payload)

    monkeypatch.setattr(ckpt, "save_checkpoint", killed_between_two_files)
    with pytest.raises(Killed):
        train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut")
    monkeypatch.setattr(ckpt, "save_checkpoint", save)
    assert written_at_step_4 == [ckpt.BEST]
    resumed = train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut")
    skip = {"train_seconds"}
    assert {k: v for k, v in resumed.items() if k not in skip} == {k: v for k, v in reference.items() if k not in skip}


def test_kill_before_the_first_checkpoint_restarts_cleanly(tmp_path, data):
    cfg = config(epochs=1)
    reference = train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "ref")
    with pytest.raises(Killed):
        train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut", step_callback=kill_at(2))
    # the start's evaluation wrote the first checkpoint: the rerun resumes from it, before the first step
    assert torch.load(tmp_path / "cut" / ckpt.LAST, weights_only=True)["state"]["global_step"] == 0
    assert train_model("tiny_test", {"dim": 8}, data, cfg, tmp_path / "cut")["test"] == reference["test"]


def test_evaluations_every_n_steps_are_rows_and_checkpoints(tmp_path, data):
    # 6 steps per epoch, --eval_every 4: evaluations at the start, steps 4, 6 (epoch end), 8, 12 (epoch end; not
    # twice); on_evaluation sees those made by training, not the start's
    seen: list[dict] = []
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=2, eval_every=4), tmp_path,
                         on_evaluation=seen.append)
    start, *rows = rows_of(tmp_path)
    assert [(r["epoch"], r["step"], r["epoch_end"]) for r in [start, *rows]] == [
        (1, 0, False), (1, 4, False), (1, 6, True), (2, 8, False), (2, 12, True)]
    assert without_time(seen) == without_time(rows)
    assert result["evaluations"] == 5 and result["epochs_run"] == 2
    best = min(rows, key=lambda r: r["val_loss"])
    assert (result["best_epoch"], result["best_step"]) == (best["epoch"], best["step"])
    assert result["val"]["loss"] == best["val_loss"]
    # each row's train metrics cover only the steps since the evaluation before
    assert all(0 < r["train_loss"] < 10 for r in rows)


def test_on_evaluation_exception_propagates_after_checkpoint(tmp_path, data):
    seen: list[int] = []

    def prune(row: dict) -> None:
        seen.append(row["epoch"])
        assert "val_loss" in row and row["epoch_end"]
        raise Killed

    with pytest.raises(Killed):
        train_model("tiny_test", {"dim": 8}, data, config(), tmp_path, on_evaluation=prune)
    assert seen == [1]
    state = ckpt.load_checkpoint(tmp_path / ckpt.LAST)["state"]
    assert (state["next_epoch"], state["next_step"]) == (2, 0)
    assert [r["step"] for r in rows_of(tmp_path)] == [0, 6]  # the start's row and the one passed to it


def test_completed_run_is_reported_not_retrained(tmp_path, data):
    first = train_model("tiny_test", {"dim": 8}, data, config(epochs=1), tmp_path)
    stamp = (tmp_path / ckpt.LAST).stat().st_mtime_ns
    steps: list[int] = []
    again = train_model("tiny_test", {"dim": 8}, data, config(epochs=1), tmp_path, step_callback=steps.append)
    assert steps == [] and again == first
    assert (tmp_path / ckpt.LAST).stat().st_mtime_ns == stamp
    # resume=False trains afresh
    fresh = train_model("tiny_test", {"dim": 8}, data, config(epochs=1), tmp_path, step_callback=steps.append,
                        resume=False)
    assert steps == list(range(1, 7)) and fresh["test"] == first["test"]


def test_resume_with_other_sizes_is_refused(tmp_path, data):
    out = tmp_path / "run"
    train_model("tiny_test", {"dim": 8}, data, config(epochs=1), out)
    with pytest.raises(UserError, match=r"model_config\.dim: 8 -> 4.*--overwrite"):
        Trainer("tiny_test", {"dim": 4}, data, config(epochs=1), out, DistContext())
    with pytest.raises(UserError, match=r"lr: 0\.05 -> 0\.01"):
        Trainer("tiny_test", {"dim": 8}, data, config(epochs=1, lr=0.01), out, DistContext())
    with pytest.raises(UserError, match=r"eval_every: 0 -> 2"):
        Trainer("tiny_test", {"dim": 8}, data, config(epochs=1, eval_every=2), out, DistContext())
    other = make_data(tmp_path / "other", seeds=(9, 2, 3))
    with pytest.raises(UserError, match=r"tokens: "):
        Trainer("tiny_test", {"dim": 8}, other, config(epochs=1), out, DistContext())
    # what does not change the result may differ
    assert Trainer("tiny_test", {"dim": 8}, data, config(epochs=1, eval_batch_size=7, checkpoint_every=0), out,
                   DistContext()).completed


def test_unknown_model_setting_is_a_user_error(tmp_path, data):
    expected = r"--model tiny_test: .*unknown setting\(s\) width; valid: dim, dropout, nan_after"
    with pytest.raises(UserError, match=expected):
        train_model("tiny_test", {"width": 8}, data, config(), tmp_path)


def test_early_stopping_on_val_loss(tmp_path, data):
    # lr 0 never improves on the start (step 0), so patience 2 stops after epoch 2 of 10.
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=10, lr=0.0, patience=2), tmp_path / "a")
    assert result["epochs_run"] == 2 and (result["best_epoch"], result["best_step"]) == (1, 0)
    assert result["stopped_early"] is True
    # patience counts evaluations, not epochs: with --eval_every 2 (the start, steps 2, 4, 6 of epoch 1) and
    # --patience_epochs 0 it stops at step 4
    result = train_model("tiny_test", {"dim": 8}, data,
                         config(epochs=10, lr=0.0, patience=2, eval_every=2, patience_epochs=0), tmp_path / "b")
    assert (result["evaluations"], result["steps"], result["epochs_run"]) == (3, 4, 0)
    assert (result["best_epoch"], result["best_step"], result["stopped_early"]) == (1, 0, True)
    # by default the best must also be an epoch (6 steps) old: the stop moves to step 6, the epoch's end
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=10, lr=0.0, patience=2, eval_every=2),
                         tmp_path / "d")
    assert (result["evaluations"], result["steps"], result["epochs_run"]) == (4, 6, 1)
    assert (result["best_epoch"], result["best_step"], result["converged"]) == (1, 0, True)
    # the last epoch ending is not an early stop
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=2, lr=0.0, patience=2), tmp_path / "c")
    assert result["epochs_run"] == 2 and result["stopped_early"] is False


def test_a_run_on_the_unigram_plateau_is_not_stopped_there(tmp_path, data):
    """With --plateau_margin, a flat evaluation on the unigram plateau is not counted by patience: a run that
    learns nothing (lr 0: the same val loss every time) trains to its budget and is not called converged, one
    stopped on the plateau under the plain rule continues, and one that learns stops by patience as before."""
    plain = dict(epochs=4, lr=0.0, patience=1, patience_epochs=0)
    stopped = train_model("tiny_test", {"dim": 8}, data, config(**plain), tmp_path / "a")
    assert (stopped["epochs_run"], stopped["stopped_by"], stopped["converged"]) == (1, "patience", True)
    waiting = dict(plain, plateau_margin=0.01)
    continued = train_model("tiny_test", {"dim": 8}, data, config(**waiting), tmp_path / "a")
    assert (continued["epochs_run"], continued["stopped_by"], continued["converged"]) == (4, "budget", False)
    # the unigram's loss: the val targets under the add-one smoothed train target counts
    train_targets, val_targets = data["train"].target_counts().double(), data["val"].target_counts().double()
    log_probs = torch.log((train_targets + 1) / (train_targets + 1).sum())
    unigram = float(-(log_probs * val_targets).sum() / val_targets.sum())
    assert continued["val"]["unigram_loss"] == pytest.approx(unigram, rel=1e-9)
    assert continued["val"]["loss"] > unigram - 0.01
    learns = train_model("tiny_test", {"dim": 8}, data, config(**dict(waiting, epochs=40, lr=0.05)), tmp_path / "b")
    assert (learns["stopped_by"], learns["converged"]) == ("patience", True) and learns["epochs_run"] < 40
    assert learns["val"]["loss"] <= unigram - 0.01
    # what counts: a rising curve on the plateau (overfitting), and anything once the best has left it
    trainer = Trainer("tiny_test", {"dim": 8}, data, config(plateau_margin=0.01), tmp_path / "c", DistContext())
    counted = trainer._counted
    assert not counted(unigram + 0.005, unigram) and not counted(unigram - 0.001, unigram - 0.005)
    assert counted(unigram + 0.02, unigram) and counted(math.nan, unigram)
    assert counted(unigram - 0.019, unigram - 0.02)


def test_a_stopped_run_continues_under_a_more_patient_rule_as_if_started_under_it(tmp_path, data):
    """The stopping rule decides only where a trajectory ends: rerun under a more patient rule, a stopped run
    continues and ends exactly where a run started under that rule ends."""
    hasty = dict(epochs=6, lr=0.2, eval_every=2, patience=1, patience_epochs=0)
    first = train_model("tiny_test", {"dim": 8}, data, config(**hasty), tmp_path / "a")
    assert first["stopped_early"] and first["steps"] < 36
    patient = dict(hasty, patience_epochs=2)
    continued = train_model("tiny_test", {"dim": 8}, data, config(**patient), tmp_path / "a")
    fresh = train_model("tiny_test", {"dim": 8}, data, config(**patient), tmp_path / "b")
    assert continued["steps"] > first["steps"]
    for key in ("steps", "best_step", "evaluations", "stopped_by", "converged", "test", "windows_seen"):
        assert continued[key] == fresh[key], key
    assert continued["train_config"]["patience_epochs"] == 2
    history = [(r["step"], r["val_loss"]) for r in map(json.loads, (tmp_path / "a" / "metrics.jsonl").open())]
    assert history == [(r["step"], r["val_loss"]) for r in map(json.loads, (tmp_path / "b" / "metrics.jsonl").open())]


def test_a_run_that_never_beats_its_start_is_tested_with_its_start_weights(tmp_path):
    # train counts up by one, val and test by two: all training makes the held-out splits worse
    splits = {"train": counting_windows(96, seed=1)}
    for name, n, seed in (("val", 32, 2), ("test", 40, 3)):
        start = torch.randint(0, 7, (n, 1), generator=torch.Generator().manual_seed(seed))
        splits[name] = (start + 2 * torch.arange(4)) % 7
    data = open_tokens(write_token_folder(tmp_path / "data", splits, 7))
    out = tmp_path / "run"
    result = train_model("tiny_test", {"dim": 8, "dropout": 0.0}, data, config(epochs=3), out)
    start, *rows = rows_of(out)
    assert (result["best_epoch"], result["best_step"]) == (1, 0) and result["val"]["loss"] == start["val_loss"]
    assert rows[-1]["val_loss"] > start["val_loss"] + 1  # the trained weights are much worse
    # the start's weights are those tested (val and test follow one rule): far from the trained ones
    assert result["test"]["loss"] == pytest.approx(start["val_loss"], abs=0.3)
    assert result["test"]["loss"] < rows[-1]["val_loss"] - 0.7


def test_a_rule_that_would_have_stopped_a_run_earlier_is_refused(tmp_path, data):
    train_model("tiny_test", {"dim": 8}, data, config(lr=0.0, eval_every=2), tmp_path)  # patience 0: the budget
    with pytest.raises(UserError, match=r"would have stopped it at step 2, before it ended; pass --overwrite"):
        train_model("tiny_test", {"dim": 8}, data, config(lr=0.0, eval_every=2, patience=1, patience_epochs=0),
                    tmp_path)


def test_nan_loss_stops_with_message_and_keeps_good_checkpoint(tmp_path, data):
    # 6 training forwards in epoch 1; the 7th (epoch 2, step 1) is NaN
    with pytest.raises(UserError) as caught:
        train_model("tiny_test", {"dim": 8, "nan_after": 6}, data, config(), tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("loss became NaN at epoch 2 (steps 1..1 of it); lower --lr (now 0.05)")
    assert "--overwrite" in message
    state = ckpt.load_checkpoint(tmp_path / ckpt.LAST)
    assert (state["state"]["next_epoch"], state["state"]["next_step"]) == (2, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert all(torch.isfinite(v).all() for v in ckpt.load_checkpoint(tmp_path / ckpt.BEST)["model"].values())


@pytest.mark.parametrize(
    "sizes, message",
    [((96, 0, 40), "the val split has no windows"), ((96, 32, 0), "the test split has no windows")],
)
def test_empty_split_is_refused(tmp_path, sizes, message):
    data = make_data(tmp_path / "data", sizes=sizes)
    with pytest.raises(UserError, match=message):
        train_model("tiny_test", {"dim": 8}, data, config(), tmp_path / "run")


def test_windows_of_one_token_are_refused(tmp_path):
    splits = {name: counting_windows(16, length=1) for name in ("train", "val", "test")}
    data = open_tokens(write_token_folder(tmp_path / "data", splits, 7))
    with pytest.raises(UserError, match="at least 2"):
        train_model("lstm", {"embedding_dim": 8}, data, config(epochs=1), tmp_path / "run")


def test_token_outside_the_vocabulary_is_refused(tmp_path):
    splits = {"train": counting_windows(16), "val": counting_windows(8), "test": counting_windows(8)}
    splits["test"][3, 2] = 9  # a k-mer id with no token below vocab_size 7
    folder = write_token_folder(tmp_path, splits, 7)
    with pytest.raises(UserError, match="a k-mer of split test has no token"):
        open_tokens(folder)


def test_train_fraction_uses_whole_genes_nested(tmp_path):
    splits = {"train": counting_windows(40, seed=1), "val": counting_windows(8, seed=2),
              "test": counting_windows(8, seed=3)}
    genes = {"train": [f"g{i // 4}" for i in range(40)]}  # 10 genes of 4 windows
    data = open_tokens(write_token_folder(tmp_path / "data", splits, 7, genes=genes))
    half = train_model("tiny_test", {"dim": 8}, data, config(epochs=1, train_fraction=0.5), tmp_path / "half")
    assert half["train"]["fraction"] == 0.5 and half["train"]["genes"] == 5 and half["train"]["windows"] == 20
    assert half["windows"]["train"] == 20 and half["steps"] == 2
    small, _ = data["train"].gene_fraction(0.3, 3)
    large, _ = data["train"].gene_fraction(0.5, 3)
    assert set(small.window_transcripts().tolist()) <= set(large.window_transcripts().tolist())


def test_val_sample_is_fixed_sorted_and_seeded(tmp_path):
    a = val_sample(100, 10, seed=1)
    assert torch.equal(a, val_sample(100, 10, seed=1)) and not torch.equal(a, val_sample(100, 10, seed=2))
    assert a.tolist() == sorted(set(a.tolist())) and len(a) == 10 and 0 <= a.min() and a.max() < 100
    assert torch.equal(val_sample(100, 0, seed=1), torch.arange(100))
    assert torch.equal(val_sample(100, 500, seed=1), torch.arange(100))
    data = make_data(tmp_path / "data")
    result = train_model("tiny_test", {"dim": 8}, data, config(epochs=1, val_windows=10), tmp_path / "run")
    assert result["val"]["windows_used"] == 10 and result["val"]["windows_total"] == 32
    assert result["val"]["sample"] == "seeded by --seed 3"


def test_batch_order_is_a_pure_function_of_seed_and_epoch():
    order, steps = epoch_order(50, 8, seed=1, epoch=2)
    again, _ = epoch_order(50, 8, seed=1, epoch=2)
    assert steps == 7 and torch.equal(order, again)
    assert not torch.equal(order, epoch_order(50, 8, seed=1, epoch=3)[0])
    assert not torch.equal(order, epoch_order(50, 8, seed=2, epoch=2)[0])
    assert sorted(order.tolist()) == list(range(50))
    # the draw does not depend on the global RNG state
    torch.manual_seed(123)
    assert torch.equal(epoch_order(50, 8, seed=1, epoch=2)[0], order)
    assert epoch_order(50, 8, seed=1, epoch=2, max_steps=3)[1] == 3
    assert epoch_order(50, 8, seed=1, epoch=2, max_steps=30)[1] == 7
