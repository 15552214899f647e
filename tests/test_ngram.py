"""The Kneser-Ney n-gram baseline: normalised, finite on anything, counts each position once, tuned
discounts never worse on val than textbook ones. Counts come from token folders (a k-mer stream and a k-mer ->
token map), as in the trainer."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures import write_token_folder
from quixer_rna.formats.kmer_stream import SplitCounts, StreamMetadata, StreamWriter, open_stream_data, \
    stream_reference
from quixer_rna.formats.tokens import MAP_FILE, TokenMetadata, TokenWindows, open_tokens
from quixer_rna.ngram import KneserNeyModel, count_ngrams, window_tails

VOCAB = 10


def _stream(length: int, seed: int) -> np.ndarray:
    """Tokens 0..7 only (8 and 9 never occur), mostly following a fixed second-order rule."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 8, length)
    for i in range(2, length):
        if rng.random() < 0.8:
            tokens[i] = (tokens[i - 1] + 2 * tokens[i - 2] + 1) % 8
    return tokens


def transcripts_folder(root: Path, transcripts: list[np.ndarray], window_size: int, window_step: int,
                       vocab: int = VOCAB) -> TokenWindows:
    """The train split of a token folder whose transcripts are the given token streams (identity k-mer ->
    token map), windowed every `window_step` positions: windows overlap as prepare_autoregressive_data.py's do."""
    k = max(1, math.ceil(math.log(vocab, 4)))
    stream_dir, token_dir = root / "kmers", root / "tokens"
    per_split = {}
    for split in ("train", "val", "test"):
        writer = StreamWriter(stream_dir, split, k)
        for i, tokens in enumerate(transcripts):
            writer.add(f"{split}{i}", f"gene{i}", len(tokens) * k, np.asarray(tokens), np.ones(len(tokens), dtype=bool))
        written = writer.close()
        per_split[split] = SplitCounts(transcripts=written["transcripts"], genes=len(transcripts),
                                       kmers=written["kmers"], segments=written["segments"], sha256=written["sha256"])
    StreamMetadata(k=k, stride=k, window_size=window_size, window_step=window_step, splits=per_split).write(stream_dir)
    token_map = np.full(4**k, -1, dtype=np.int32)
    token_map[:vocab] = np.arange(vocab)
    token_dir.mkdir(parents=True)
    np.save(token_dir / MAP_FILE, token_map)
    TokenMetadata(tokenizer="test tokens", kind="kmer_map", vocab_size=vocab, k=k, window_size=window_size,
                  stream=stream_reference(open_stream_data(stream_dir), token_dir), files={MAP_FILE: "test"}).write(token_dir)
    return open_tokens(token_dir)["train"]


def windows_folder(root: Path, windows: np.ndarray, vocab: int = VOCAB) -> TokenWindows:
    """The train split of a token folder whose windows are the rows of `windows` (stretches of one transcript)."""
    rows = torch.as_tensor(np.asarray(windows), dtype=torch.int64)
    splits = {split: rows for split in ("train", "val", "test")}
    sources = {split: ["one"] * len(rows) for split in splits}
    return open_tokens(write_token_folder(root, splits, vocab, sources=sources))["train"]


def all_tails(windows: TokenWindows, order: int) -> np.ndarray:
    return window_tails(windows, torch.arange(windows.num_windows), order)


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
def test_each_transcript_position_is_counted_once(tmp_path, step):
    # 80 tokens, windows of 8 every 1, 3 or 8 positions: the windows cover every position, overlapping or not
    first, second = _stream(8 + 3 * 24, 1), _stream(8 + 3 * 24, 2)
    train = transcripts_folder(tmp_path, [first, second], 8, step)
    assert train.num_windows == 2 * ((80 - 8) // step + 1)
    keys, counts, summary = count_ngrams(train, 3, counting="transcript")
    expected = _stream_ngrams(first, 3)
    for key, count in _stream_ngrams(second, 3).items():
        expected[key] = expected.get(key, 0) + count
    # n-grams straddling two disjoint windows count too: they lie inside one stretch of the transcript
    assert _as_dict(keys, counts, 3) == expected
    assert summary == {"counting": "transcript", "ngrams_counted": len(first) - 2 + len(second) - 2}


def test_transcript_counting_stays_inside_stretches(tmp_path):
    # windows of one transcript separated by a k-mer over another letter: no n-gram spans the break
    windows = _windows(_stream(40, 5), 5, 5)  # 8 disjoint windows
    train = windows_folder(tmp_path, windows)
    keys, counts, summary = count_ngrams(train, 3, counting="transcript")
    expected: dict[tuple, int] = {}
    for row in windows:
        for key, count in _stream_ngrams(row, 3).items():
            expected[key] = expected.get(key, 0) + count
    assert _as_dict(keys, counts, 3) == expected and summary["ngrams_counted"] == len(windows) * (5 - 2)


@pytest.mark.parametrize("chunk", [7, 1 << 20])
def test_targets_counting_counts_one_ngram_per_window(tmp_path, chunk):
    train = transcripts_folder(tmp_path, [_stream(200, 3)], 8, 1)
    windows = _windows(_stream(200, 3), 8, 1)
    keys, counts, summary = count_ngrams(train, 2, counting="targets", chunk=chunk)
    assert counts.sum() == len(windows) == summary["ngrams_counted"]
    targets = {}
    for row in windows:
        targets[tuple(row[-2:])] = targets.get(tuple(row[-2:]), 0) + 1
    assert _as_dict(keys, counts, 2) == targets
    np.testing.assert_array_equal(all_tails(train, 8), windows)
    with pytest.raises(ValueError, match="counting"):
        count_ngrams(train, 2, counting="windows")


@pytest.mark.parametrize("order", [1, 2, 3])
def test_distributions_sum_to_one_and_unseen_tokens_are_finite(tmp_path, order):
    train = transcripts_folder(tmp_path, [_stream(600, 4)], 6, 1)
    model, _ = KneserNeyModel.fit(train, order, counting="transcript")
    windows = all_tails(train, 6)
    seen_context = windows[:3, :-1]
    unseen_context = np.array([[9, 8, 9, 8, 9], [8, 8, 8, 8, 8], [0, 1, 9, 3, 8]])
    for contexts in (seen_context, unseen_context):
        probabilities = model.distribution(contexts)
        assert probabilities.shape == (3, VOCAB)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-12)
        assert (probabilities > 0).all()
        assert (probabilities[:, 8:] < probabilities[:, :8].max(axis=1, keepdims=True)).all()
    scored = np.concatenate([seen_context, np.array([[8], [9], [9]])], axis=1)
    log_probs = model.target_log_probs(scored)
    assert np.isfinite(log_probs).all()
    direct = np.log(model.distribution(scored[:, :-1])[np.arange(3), scored[:, -1]])
    np.testing.assert_allclose(log_probs, direct, atol=1e-12)


def test_unigram_and_bigram_match_the_formula_by_hand(tmp_path):
    # tokens: 0 0 1 0 2 (V = 10); bigrams 00, 01, 10, 02
    train = transcripts_folder(tmp_path, [np.array([0, 0, 1, 0, 2])], 5, 1)
    unigram, summary = KneserNeyModel.fit(train, 1, counting="transcript")
    assert summary["ngrams_counted"] == 5 and unigram.vocab_size == VOCAB
    unigram.discounts = np.array([0.5])
    # c(0)=3, c(1)=1, c(2)=1; N=5; T=3: P(w) = (max(c-D,0) + D*3/10) / 5
    expected = np.array([(3 - 0.5 + 0.15) / 5, (1 - 0.5 + 0.15) / 5, (1 - 0.5 + 0.15) / 5] + [0.15 / 5] * 7)
    np.testing.assert_allclose(unigram.distribution(np.zeros((1, 0), dtype=np.int64))[0], expected, atol=1e-12)
    bigram, _ = KneserNeyModel.fit(train, 2, counting="transcript")
    bigram.discounts = np.array([0.5, 0.75])
    # continuation counts: 0 is preceded by {0, 1}, 1 by {0}, 2 by {0}: total 4, types 3
    lower = np.array([(2 - 0.5 + 0.5 * 3 / 10) / 4, (1 - 0.5 + 0.15) / 4, (1 - 0.5 + 0.15) / 4] + [0.15 / 4] * 7)
    # after 0: c(00)=1, c(01)=1, c(02)=1: total 3, types 3
    after_zero = (np.maximum(np.array([1, 1, 1] + [0] * 7) - 0.75, 0) + 0.75 * 3 * lower) / 3
    np.testing.assert_allclose(bigram.distribution(np.array([[0]]))[0], after_zero, atol=1e-12)
    np.testing.assert_allclose(bigram.distribution(np.array([[7]]))[0], lower, atol=1e-12)
    # a strength S mixes in more of the lower order: (max(c - D, 0) + (D T + S) P_lower) / (C + S)
    bigram.strengths = np.array([0.0, 2.0])
    stronger = (np.maximum(np.array([1, 1, 1] + [0] * 7) - 0.75, 0) + (0.75 * 3 + 2.0) * lower) / (3 + 2.0)
    np.testing.assert_allclose(bigram.distribution(np.array([[0]]))[0], stronger, atol=1e-12)


def test_raw_and_continuation_lower_order_counts_by_hand(tmp_path):
    # tokens 1 0 1 0: bigrams 10, 01, 10. Below the top order, continuation counts are how many distinct tokens
    # precede a token (0: {1}, 1: {0}); raw counts how often it ends a bigram (0: twice, 1: once).
    train = transcripts_folder(tmp_path, [np.array([1, 0, 1, 0])], 4, 1)
    bigram, _ = KneserNeyModel.fit(train, 2, counting="transcript")
    bigram.discounts = np.array([0.5, 0.5])
    unseen = np.array([[7]])  # an unseen context: the lower order alone
    continuation = np.array([(1 - 0.5 + 0.1) / 2, (1 - 0.5 + 0.1) / 2] + [0.1 / 2] * 8)
    np.testing.assert_allclose(bigram.distribution(unseen)[0], continuation, atol=1e-12)
    bigram.use_lower_counts("raw")
    raw = np.array([(2 - 0.5 + 0.1) / 3, (1 - 0.5 + 0.1) / 3] + [0.1 / 3] * 8)
    np.testing.assert_allclose(bigram.distribution(unseen)[0], raw, atol=1e-12)
    # the top order keeps raw counts either way: after 1, only 0 was seen (twice)
    after_one = (np.maximum(np.array([2.0] + [0] * 9) - 0.5, 0) + 0.5 * 1 * raw) / 2
    np.testing.assert_allclose(bigram.distribution(np.array([[1]]))[0], after_one, atol=1e-12)


def test_tuned_discounts_are_no_worse_on_val_than_textbook(tmp_path):
    train = transcripts_folder(tmp_path / "train", [_stream(400, 5)], 6, 1)
    val = _windows(_stream(300, 6), 6, 1)
    model, _ = KneserNeyModel.fit(train, 3, counting="transcript")
    textbook_ce = model.cross_entropy(val, model.textbook_discounts())
    report = model.tune_discounts(val)
    assert report["textbook_val_cross_entropy"] == pytest.approx(textbook_ce)
    assert report["tuned_val_cross_entropy"] <= textbook_ce
    assert model.cross_entropy(val) == pytest.approx(report["tuned_val_cross_entropy"])
    assert all(0 < d <= 1 for d in model.discounts)
    # the rule is mostly second order, so the tuned trigram beats the unigram on val
    unigram, _ = KneserNeyModel.fit(train, 1, counting="transcript")
    unigram.tune_discounts(val)
    assert model.cross_entropy(val) < unigram.cross_entropy(val) - 0.3


def test_state_round_trip_is_exact_and_loads_without_pickle(tmp_path):
    train = transcripts_folder(tmp_path, [_stream(300, 7)], 6, 1)
    model, _ = KneserNeyModel.fit(train, 3)
    model.discounts = np.array([0.3, 0.6, 0.9])
    model.strengths = np.array([0.0, 2.5, 40.0])
    model.use_lower_counts("raw")
    model.save(tmp_path / "m.npz", counting="targets")
    loaded = KneserNeyModel.load(tmp_path / "m.npz")
    windows = all_tails(train, 6)
    contexts = windows[:5, :-1]
    np.testing.assert_array_equal(loaded.distribution(contexts), model.distribution(contexts))
    assert loaded.lower_counts == "raw" and loaded.strengths.tolist() == [0.0, 2.5, 40.0]
    assert not math.isnan(loaded.cross_entropy(windows))


def test_strengths_let_a_trigram_fall_back_to_the_unigram_on_unpredictable_tokens(tmp_path):
    # iid tokens from a skewed distribution over 200 ids: no context helps, and with counts of 2-5 per
    # context a discount of at most 1 cannot back off far enough, so textbook KN loses to the unigram
    rng = np.random.default_rng(3)
    weights = rng.dirichlet(np.full(200, 0.5))
    train_rows = rng.choice(200, size=(20000, 3), p=weights)
    val = rng.choice(200, size=(5000, 3), p=weights)
    train = windows_folder(tmp_path, train_rows, vocab=200)
    unigram, _ = KneserNeyModel.fit(train, 1)
    unigram.tune_discounts(val)
    trigram, summary = KneserNeyModel.fit(train, 3)
    assert summary["ngrams_counted"] == 20000  # "targets": one per window
    report = trigram.tune_discounts(val)
    assert report["textbook_val_cross_entropy"] > unigram.cross_entropy(val) + 0.05
    assert trigram.cross_entropy(val) < unigram.cross_entropy(val) + 0.01
    assert trigram.strengths[1:].max() > 10
    np.testing.assert_allclose(trigram.distribution(train_rows[:4, :2]).sum(axis=1), 1.0, atol=1e-12)
    windows = train_rows[:50]
    direct = np.log(trigram.distribution(windows[:, :-1])[np.arange(50), windows[:, -1]])
    np.testing.assert_allclose(trigram.target_log_probs(windows), direct, atol=1e-12)


@pytest.mark.parametrize("counting", ["targets", "transcript"])
def test_dense_and_sorted_counting_agree(tmp_path, monkeypatch, counting):
    """Small key spaces are counted in a dense table, large ones by sorting chunks: the same counts, the same
    lower orders, the same model."""
    train = transcripts_folder(tmp_path, [_stream(400, 3), _stream(250, 4)], 6, 1)
    dense_keys, dense_counts, _ = count_ngrams(train, 3, counting)
    dense = {lower: KneserNeyModel(3, train.vocab_size, dense_keys, dense_counts, lower_counts=lower)
             for lower in ("continuation", "raw")}
    import quixer_rna.ngram as ngram

    monkeypatch.setattr(ngram, "DENSE_KEYS", 0)
    sorted_keys, sorted_counts, _ = count_ngrams(train, 3, counting, chunk=37)
    np.testing.assert_array_equal(dense_keys, sorted_keys)
    np.testing.assert_array_equal(dense_counts, sorted_counts)
    for lower, model in dense.items():
        sparse = KneserNeyModel(3, train.vocab_size, sorted_keys, sorted_counts, lower_counts=lower)
        for a, b in zip(model.levels, sparse.levels):
            for name in ("keys", "counts", "context_keys", "context_totals", "context_types"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
