"""Metrics on cases small enough to compute by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from quixer_rna import metrics
from quixer_rna.errors import UserError
from quixer_rna.formats import predictions


def test_window_scores_match_hand_computed_nll_and_hits():
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7]])
    scores = metrics.window_scores(torch.log(probs), torch.tensor([0, 0]))
    assert scores["nll"].tolist() == pytest.approx([math.log(2), math.log(10)])
    assert scores["correct"].tolist() == [True, False]
    assert scores["top5"].tolist() == [True, True]  # only 3 classes: top-5 holds every class


def test_top5_misses_a_target_ranked_sixth():
    logits = torch.arange(7, dtype=torch.float32).flip(0).unsqueeze(0).repeat(2, 1)  # class 0 best, 6 worst
    scores = metrics.window_scores(logits, torch.tensor([4, 5]))
    assert scores["correct"].tolist() == [False, False]
    assert scores["top5"].tolist() == [True, False]


def test_summary_perplexity_is_exp_of_cross_entropy():
    probs = torch.tensor([[0.4, 0.6], [0.25, 0.75], [0.9, 0.1]])
    scores = metrics.window_scores(torch.log(probs), torch.tensor([0, 1, 1]))
    total = metrics.score_sums(scores)
    summary = metrics.summarize(total)
    expected = -(math.log(0.4) + math.log(0.75) + math.log(0.1)) / 3
    assert summary["loss"] == pytest.approx(expected)
    assert summary["perplexity"] == pytest.approx(math.exp(expected))
    assert summary["accuracy"] == pytest.approx(1 / 3)
    # Sums over batches add up to the sums over everything.
    parts = metrics.score_sums(metrics.window_scores(torch.log(probs[:1]), torch.tensor([0])))
    parts += metrics.score_sums(metrics.window_scores(torch.log(probs[1:]), torch.tensor([1, 1])))
    assert torch.allclose(parts, total)


def test_summary_of_nothing_is_nan_and_huge_losses_overflow_to_inf():
    assert all(math.isnan(v) for v in metrics.summarize(metrics.empty_sums()).values())
    summary = metrics.summarize(torch.tensor([800.0, 0.0, 0.0, 1.0], dtype=torch.float64))
    assert summary["loss"] == 800.0 and summary["perplexity"] == math.inf


def test_unigram_reference_uses_add_one_smoothing():
    # Train targets 0, 0, 1: counts [2, 1, 0] + 1 each -> probabilities [3/6, 2/6, 1/6]; test targets 0 and 2.
    train_counts, test_counts = torch.tensor([2, 1, 0]), torch.tensor([1, 0, 1])
    log_probs = metrics.unigram_log_probs(train_counts)
    assert torch.allclose(log_probs.exp(), torch.tensor([3 / 6, 2 / 6, 1 / 6], dtype=torch.float64))
    assert metrics.unigram_log_probs(train_counts, smoothing=0.5).exp()[2] == pytest.approx(0.5 / 4.5)
    refs = metrics.reference_perplexities(train_counts, test_counts)
    assert refs["unigram_perplexity"] == pytest.approx(math.sqrt(2 * 6))
    assert refs["uniform_perplexity"] == 3.0 and "Laplace" in refs["unigram_smoothing"]
    # the reference is the perplexity of scoring every test target with the unigram's log-probabilities
    targets = torch.tensor([0, 2])
    scores = metrics.window_scores(log_probs.float().expand(2, 3), targets)
    assert math.exp(metrics.summarize(metrics.score_sums(scores))["loss"]) == pytest.approx(refs["unigram_perplexity"])


def test_predictions_file_round_trips_without_pickle(tmp_path):
    scores = metrics.window_scores(torch.randn(4, 6), torch.tensor([0, 1, 2, 3]))
    path = tmp_path / predictions.FILE
    transcripts = np.array([0, 0, 1, 2])
    predictions.save_predictions(path, scores["nll"].numpy(), scores["correct"].numpy(), scores["top5"].numpy(),
                                 transcripts, "abc")
    with np.load(path, allow_pickle=False) as raw:  # plain arrays: nothing pickled
        assert raw["nll"].dtype == np.float32 and raw["hits"].dtype == np.uint8
    loaded = predictions.load_predictions(path)
    assert len(loaded) == 4 and loaded.fingerprint == "abc"
    np.testing.assert_allclose(loaded.nll, scores["nll"].numpy(), rtol=1e-6)
    assert loaded.correct.tolist() == scores["correct"].tolist() and loaded.top5.tolist() == scores["top5"].tolist()
    assert loaded.transcript.tolist() == [0, 0, 1, 2]
    with pytest.raises(ValueError):
        predictions.save_predictions(path, scores["nll"].numpy(), scores["correct"].numpy(), scores["top5"].numpy(),
                                     transcripts[:1], "abc")


def test_damaged_or_foreign_predictions_file_is_one_line_error(tmp_path):
    with pytest.raises(UserError, match="missing"):
        predictions.load_predictions(tmp_path / "none.npz")
    path = tmp_path / predictions.FILE
    path.write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a predictions file"):
        predictions.load_predictions(path)
    header = json.dumps({"format": "other", "version": 1, "windows": 1})
    np.savez(path, nll=np.zeros(1, np.float32), hits=np.zeros(1, np.uint8), transcript=np.zeros(1, np.int32),
             header=np.array(header))
    with pytest.raises(UserError, match="format 'other'"):
        predictions.load_predictions(path)
