"""The Kneser-Ney n-gram baseline: normalised, finite on anything, counts each position once, tuned
discounts never worse on val than textbook ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from quixer_rna.ngram import KneserNeyModel, count_ngrams, infer_window_step

VOCAB = 10


def _stream(length: int, seed: int) -> np.ndarray:
    """Tokens 0..7 only (8 and 9 never occur), mostly following a fixed second-order rule."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 8, length)
    for i in range(2, length):
        if rng.random() < 0.8:
            tokens[i] = (tokens[i - 1] + 2 * tokens[i - 2] + 1) % 8
    return tokens


def _windows(stream: np.ndarray, length: int, step: int) -> np.ndarray:
    return np.stack([stream[i : i + length] for i in range(0, len(stream) - length + 1, step)])


def _stream_ngrams(stream: np.ndarray, order: int) -> dict[tuple, int]:
    found: dict[tuple, int] = {}
    for i in range(order - 1, len(stream)):
        key = tuple(stream[i - order + 1 : i + 1])
        found[key] = found.get(key, 0) + 1
    return found


def _as_dict(keys: np.ndarray, counts: np.ndarray, order: int) -> dict[tuple, int]:
    found = {}
    for key, count in zip(keys.tolist(), counts.tolist()):
        digits = []
        for _ in range(order):
            key, digit = divmod(key, VOCAB)
            digits.append(digit)
        found[tuple(reversed(digits))] = count
    return found


@pytest.mark.parametrize("step", [1, 3, 8])
def test_each_transcript_position_is_counted_once(step):
    first, second = _stream(8 + 3 * 24, 1), _stream(8 + 3 * 24, 2)
    windows = np.concatenate([_windows(first, 8, step), _windows(second, 8, step)])
    assert infer_window_step(windows) == step
    keys, counts, summary = count_ngrams(windows, 3, VOCAB, counting="transcript")
    expected = _stream_ngrams(first, 3)
    for key, count in _stream_ngrams(second, 3).items():
        expected[key] = expected.get(key, 0) + count
    if step == 8:  # disjoint windows: n-grams straddling two windows have no history inside one
        assert summary["ngrams_counted"] == len(windows) * (8 - 2)
    else:
        assert _as_dict(keys, counts, 3) == expected
        assert summary["ngrams_counted"] == len(first) - 2 + len(second) - 2


def test_targets_counting_counts_one_ngram_per_window():
    windows = _windows(_stream(200, 3), 8, 1)
    keys, counts, summary = count_ngrams(windows, 2, VOCAB, counting="targets")
    assert counts.sum() == len(windows) == summary["ngrams_counted"]
    targets = {}
    for row in windows:
        targets[tuple(row[-2:])] = targets.get(tuple(row[-2:]), 0) + 1
    assert _as_dict(keys, counts, 2) == targets


@pytest.mark.parametrize("order", [1, 2, 3])
def test_distributions_sum_to_one_and_unseen_tokens_are_finite(order):
    train = _windows(_stream(600, 4), 6, 1)
    model, _ = KneserNeyModel.fit(train, order, VOCAB, counting="transcript")
    seen_context = train[:3, :-1]
    unseen_context = np.array([[9, 8, 9, 8, 9], [8, 8, 8, 8, 8], [0, 1, 9, 3, 8]])
    for contexts in (seen_context, unseen_context):
        probabilities = model.distribution(contexts)
        assert probabilities.shape == (3, VOCAB)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
        assert (probabilities > 0).all()
        assert (probabilities[:, 8:] < probabilities[:, :8].max(axis=1, keepdims=True)).all()
    windows = np.concatenate([seen_context, np.array([[8], [9], [9]])], axis=1)
    log_probs = model.target_log_probs(windows)
    assert np.isfinite(log_probs).all()
    direct = np.log(model.distribution(windows[:, :-1])[np.arange(3), windows[:, -1]])
    np.testing.assert_allclose(log_probs, direct, atol=1e-12)


def test_unigram_and_bigram_match_the_formula_by_hand():
    # tokens: 0 0 1 0 2 (V = 10); bigrams 00, 01, 10, 02
    windows = np.array([[0, 0, 1, 0, 2]])
    unigram, _ = KneserNeyModel.fit(windows, 1, VOCAB, counting="transcript")
    unigram.discounts = np.array([0.5])
    # c(0)=3, c(1)=1, c(2)=1; N=5; T=3: P(w) = (max(c-D,0) + D*3/10) / 5
    expected = np.array([(3 - 0.5 + 0.15) / 5, (1 - 0.5 + 0.15) / 5, (1 - 0.5 + 0.15) / 5] + [0.15 / 5] * 7)
    np.testing.assert_allclose(unigram.distribution(np.zeros((1, 0), dtype=np.int64))[0], expected, atol=1e-12)
    bigram, _ = KneserNeyModel.fit(windows, 2, VOCAB, counting="transcript")
    bigram.discounts = np.array([0.5, 0.75])
    # continuation counts: 0 is preceded by {0, 1}, 1 by {0}, 2 by {0}: total 4, types 3
    lower = np.array([(2 - 0.5 + 0.5 * 3 / 10) / 4, (1 - 0.5 + 0.15) / 4, (1 - 0.5 + 0.15) / 4] + [0.15 / 4] * 7)
    # after 0: c(00)=1, c(01)=1, c(02)=1: total 3, types 3
    after_zero = (np.maximum(np.array([1, 1, 1] + [0] * 7) - 0.75, 0) + 0.75 * 3 * lower) / 3
    np.testing.assert_allclose(bigram.distribution(np.array([[0]]))[0], after_zero, atol=1e-12)
    np.testing.assert_allclose(bigram.distribution(np.array([[7]]))[0], lower, atol=1e-12)


def test_tuned_discounts_are_no_worse_on_val_than_textbook():
    train = _windows(_stream(400, 5), 6, 1)
    val = _windows(_stream(300, 6), 6, 1)
    model, _ = KneserNeyModel.fit(train, 3, VOCAB)
    textbook_ce = model.cross_entropy(val, model.textbook_discounts())
    report = model.tune_discounts(val)
    assert report["textbook_val_cross_entropy"] == pytest.approx(textbook_ce)
    assert report["tuned_val_cross_entropy"] <= textbook_ce
    assert model.cross_entropy(val) == pytest.approx(report["tuned_val_cross_entropy"])
    assert all(0 < d <= 1 for d in model.discounts)
    # the rule is mostly second order, so the tuned trigram beats the unigram on val
    unigram, _ = KneserNeyModel.fit(train, 1, VOCAB)
    unigram.tune_discounts(val)
    assert model.cross_entropy(val) < unigram.cross_entropy(val) - 0.3


def test_state_round_trip_is_exact_and_loads_without_pickle(tmp_path):
    train = _windows(_stream(300, 7), 6, 1)
    model, _ = KneserNeyModel.fit(train, 3, VOCAB)
    model.discounts = np.array([0.3, 0.6, 0.9])
    model.strengths = np.array([0.0, 2.5, 40.0])
    model.use_lower_counts("raw")
    torch.save(model.state(), tmp_path / "m.pt")
    loaded = KneserNeyModel.from_state(torch.load(tmp_path / "m.pt", weights_only=True))
    contexts = train[:5, :-1]
    np.testing.assert_array_equal(loaded.distribution(contexts), model.distribution(contexts))
    assert not math.isnan(loaded.cross_entropy(train))


def test_strengths_let_a_trigram_fall_back_to_the_unigram_on_unpredictable_tokens():
    # iid tokens from a skewed distribution over 200 ids: no context helps, and with counts of 2-5 per
    # context a discount of at most 1 cannot back off far enough, so textbook KN loses to the unigram
    rng = np.random.default_rng(3)
    weights = rng.dirichlet(np.full(200, 0.5))
    train = rng.choice(200, size=(20000, 3), p=weights)
    val = rng.choice(200, size=(5000, 3), p=weights)
    unigram, _ = KneserNeyModel.fit(train, 1, 200)
    unigram.tune_discounts(val)
    trigram, _ = KneserNeyModel.fit(train, 3, 200)
    report = trigram.tune_discounts(val)
    assert report["textbook_val_cross_entropy"] > unigram.cross_entropy(val) + 0.05
    assert trigram.cross_entropy(val) < unigram.cross_entropy(val) + 0.01
    assert trigram.strengths[1:].max() > 10
    np.testing.assert_allclose(trigram.distribution(train[:4, :2]).sum(axis=1), 1.0, atol=1e-12)
    windows = train[:50]
    direct = np.log(trigram.distribution(windows[:, :-1])[np.arange(50), windows[:, -1]])
    np.testing.assert_allclose(trigram.target_log_probs(windows), direct, atol=1e-12)
