"""Metrics on cases small enough to compute by hand."""

from __future__ import annotations

import math

import pytest
import torch

from quixer_rna import metrics


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


def test_unigram_perplexity_uses_add_one_smoothing():
    # Train counts [2, 1, 0] + 1 each -> probabilities [3/6, 2/6, 1/6]; test targets 0 and 2.
    ppl = metrics.unigram_perplexity(torch.tensor([0, 0, 1]), torch.tensor([0, 2]), num_classes=3)
    assert ppl == pytest.approx(math.sqrt(2 * 6))
    refs = metrics.reference_perplexities(torch.tensor([0, 0, 1]), torch.tensor([0, 2]), 3)
    assert refs["uniform_perplexity"] == 3.0 and "Laplace" in refs["unigram_smoothing"]


def test_test_predictions_file_loads_with_weights_only(tmp_path):
    scores = metrics.window_scores(torch.randn(4, 6), torch.tensor([0, 1, 2, 3]))
    path = tmp_path / metrics.PREDICTIONS_FILE
    metrics.save_test_predictions(path, scores, ["a", "a", "b", "c"])
    loaded = torch.load(path, weights_only=True)
    assert loaded["nll"].dtype == torch.float32 and loaded["nll"].shape == (4,)
    assert loaded["correct"].dtype == torch.bool and loaded["top5"].dtype == torch.bool
    assert loaded["sources"] == ["a", "a", "b", "c"]
    with pytest.raises(ValueError):
        metrics.save_test_predictions(path, scores, ["a"])
