"""Count-based n-gram model with interpolated Kneser-Ney smoothing: the floor every neural model must
beat on the same windows.

It scores the target (last token) of each window given the preceding `order - 1` tokens. By default
(`counting="targets"`) it counts, in the train split, the n-gram ending at each window's target:
exactly the examples the neural models are trained on, one per window, so with `--window_step 1`
every position of a transcript after its first window is counted once, and the counts do not depend
on the order of the windows in the file. `counting="transcript"` counts every position of the
underlying transcripts once instead (also the first window's positions): consecutive windows that
overlap (the same stretch of transcript shifted by the data's window step, inferred from the windows
themselves) contribute only their new positions, so overlapping windows never count a position
twice; only n-grams with a full `order - 1` history inside their window are counted.

Smoothing (Chen & Goodman's interpolated Kneser-Ney, one absolute discount D_m per order, with the
strength S_m >= 0 of Teh's hierarchical Pitman-Yor model, whose predictive rule KN approximates):

    P_m(w | h) = (max(c_m(h, w) - D_m, 0) + (D_m * T_m(h) + S_m) * P_{m-1}(w | h')) / (C_m(h) + S_m)
                                                                                  if C_m(h) > 0
               = P_{m-1}(w | h')                                                  otherwise

where c_n are raw counts at the top order, c_m (m < n) continuation counts (how many distinct tokens
precede the m-gram; `lower_counts="continuation"`, Kneser-Ney) or raw counts of the m-gram
(`lower_counts="raw"`, interpolated absolute discounting), C_m(h) = sum_w c_m(h, w), T_m(h) = number of w with c_m(h, w) > 0, h' drops the
oldest token of h, and P_0 is uniform over the vocabulary, so an unseen token still gets a finite
score. With 0 < D_m <= 1 and S_m >= 0 every P_m sums to 1; S_m = 0 is plain interpolated KN. The
discounts start from the textbook estimate n1 / (n1 + 2 n2), the strengths from 0, and both are tuned
by coordinate search to minimise validation cross-entropy; a step is kept only when it lowers it, so
tuned values never do worse on val than textbook ones; both kinds of lower-order counts are tuned and
the one with the lower val cross-entropy is kept. The strengths and raw lower-order counts matter on
large, nearly unpredictable token streams (k-means tokens of mRNA): there a discount of at most 1
cannot back off far enough, and continuation counts flatten the unigram level (every frequent token
follows nearly every other), so textbook KN ends above the unigram; a large S_m lets an order fall
back to the one below it, down to the raw unigram.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .errors import UserError
from .formats.tokens import load_token_dataset
from .metrics import PREDICTIONS_FILE, reference_perplexities, save_test_predictions, score_sums, summarize, window_scores
from .runio import RunRecord, atomic_torch_save, prepare_output_dir

LOG = logging.getLogger(__name__)

COUNTING_MODES = ("transcript", "targets")
MIN_DISCOUNT = 0.01
DISCOUNT_GRID = np.round(np.arange(MIN_DISCOUNT, 1.0 + 1e-9, 0.01), 4)
STRENGTH_GRID = np.concatenate([[0.0], np.geomspace(0.1, 1e6, 71)])
LOWER_COUNTS = ("continuation", "raw")


@dataclass
class OrderCounts:
    """Counts of one order m: sorted m-gram keys (context_key * V + token) and their counts, with the
    per-context totals C_m(h) and type counts T_m(h)."""

    keys: np.ndarray
    counts: np.ndarray
    context_keys: np.ndarray
    context_totals: np.ndarray
    context_types: np.ndarray

    @classmethod
    def from_keys(cls, keys: np.ndarray, counts: np.ndarray, vocab_size: int) -> "OrderCounts":
        context_of_key = keys // vocab_size
        context_keys, first, types = np.unique(context_of_key, return_index=True, return_counts=True)
        totals = np.add.reduceat(counts, first) if counts.size else np.zeros(0, dtype=np.int64)
        return cls(keys, counts, context_keys, totals.astype(np.int64), types.astype(np.int64))

    def lookup(self, context_keys: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(c_m(h, w), C_m(h), T_m(h)) for each query; zeros where unseen."""
        return (
            _lookup(self.keys, self.counts, keys),
            _lookup(self.context_keys, self.context_totals, context_keys),
            _lookup(self.context_keys, self.context_types, context_keys),
        )


def _lookup(sorted_keys: np.ndarray, values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    if sorted_keys.size == 0:
        return np.zeros(queries.shape, dtype=np.int64)
    position = np.minimum(np.searchsorted(sorted_keys, queries), sorted_keys.size - 1)
    return np.where(sorted_keys[position] == queries, values[position], 0)


def _ngram_keys(windows: np.ndarray, vocab_size: int) -> np.ndarray:
    """Mixed-radix key of each row of token ids [N, m] (first token most significant)."""
    keys = np.zeros(windows.shape[0], dtype=np.int64)
    for column in range(windows.shape[1]):
        keys = keys * vocab_size + windows[:, column]
    return keys


def infer_window_step(sequences: np.ndarray, sample: int = 20000, agreement: float = 0.9) -> int:
    """The shift between consecutive windows of the data: the smallest s for which nearly all
    consecutive pairs (all but transcript boundaries) overlap by L - s tokens; L (the window length)
    when they do not overlap. A bare majority is not enough: in repetitive or low-entropy token
    streams, disjoint windows often share a token or two by chance."""
    length = sequences.shape[1]
    head = sequences[: sample + 1]
    if head.shape[0] < 2:
        return length
    for shift in range(1, length):
        overlap = (head[1:, : length - shift] == head[:-1, shift:]).all(axis=1)
        if overlap.mean() >= agreement:
            return shift
    return length


def new_positions(sequences: np.ndarray, step: int) -> np.ndarray:
    """How many trailing positions of each window were not already in the previous window."""
    length = sequences.shape[1]
    fresh = np.full(sequences.shape[0], length, dtype=np.int64)
    if step < length and sequences.shape[0] > 1:
        overlap = (sequences[1:, : length - step] == sequences[:-1, step:]).all(axis=1)
        fresh[1:][overlap] = step
    return fresh


def count_ngrams(sequences: np.ndarray, order: int, vocab_size: int, counting: str = "targets") -> tuple[np.ndarray, np.ndarray, dict]:
    """Unique top-order n-gram keys and their raw counts from train windows [N, L], and a summary of
    what was counted."""
    if counting not in COUNTING_MODES:
        raise ValueError(f"counting must be one of {COUNTING_MODES}, got {counting!r}")
    sequences = np.asarray(sequences, dtype=np.int64)
    length = sequences.shape[1]
    step = None
    if counting == "targets":
        fresh = np.ones(sequences.shape[0], dtype=np.int64)
    else:
        step = infer_window_step(sequences)
        fresh = new_positions(sequences, step)
    pieces = []
    for position in range(order - 1, length):
        rows = fresh >= length - position
        if rows.any():
            pieces.append(_ngram_keys(sequences[rows, position - order + 1 : position + 1], vocab_size))
    all_keys = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    keys, counts = np.unique(all_keys, return_counts=True)
    summary = {"counting": counting, "window_step_inferred": step, "ngrams_counted": int(all_keys.size)}
    return keys, counts.astype(np.int64), summary


class KneserNeyModel:
    """Interpolated Kneser-Ney n-gram model over token ids [0, vocab_size)."""

    def __init__(
        self, order: int, vocab_size: int, keys: np.ndarray, counts: np.ndarray,
        discounts: Sequence[float] | None = None, strengths: Sequence[float] | None = None,
        lower_counts: str = "continuation",
    ):
        if order < 1:
            raise ValueError("order must be at least 1")
        if vocab_size < 1:
            raise ValueError("vocab_size must be at least 1")
        if vocab_size ** order >= 2**62:
            raise ValueError(f"order {order} with {vocab_size} tokens overflows 64-bit n-gram keys")
        self.order = order
        self.vocab_size = vocab_size
        self.keys = np.asarray(keys, dtype=np.int64)
        self.counts = np.asarray(counts, dtype=np.int64)
        if lower_counts not in LOWER_COUNTS:
            raise ValueError(f"lower_counts must be one of {LOWER_COUNTS}, got {lower_counts!r}")
        self.lower_counts = lower_counts
        self.levels = self._build_levels(lower_counts)
        self.discounts = np.asarray(discounts if discounts is not None else self.textbook_discounts(), dtype=np.float64)
        if self.discounts.shape != (order,):
            raise ValueError(f"need one discount per order ({order}), got {self.discounts.tolist()}")
        self.strengths = np.zeros(order) if strengths is None else np.asarray(strengths, dtype=np.float64)
        if self.strengths.shape != (order,) or (self.strengths < 0).any():
            raise ValueError(f"need one strength >= 0 per order ({order}), got {self.strengths.tolist()}")

    @classmethod
    def fit(cls, sequences: np.ndarray, order: int, vocab_size: int, counting: str = "targets") -> tuple["KneserNeyModel", dict]:
        keys, counts, summary = count_ngrams(sequences, order, vocab_size, counting)
        if keys.size == 0:
            raise ValueError(f"no {order}-gram fits in the train windows; lower the order")
        return cls(order, vocab_size, keys, counts), summary

    def _build_levels(self, lower_counts: str) -> list[OrderCounts]:
        """levels[m - 1] holds order m: raw counts at the top, `lower_counts` below."""
        levels = [OrderCounts.from_keys(self.keys, self.counts, self.vocab_size)]
        keys, counts = self.keys, self.counts
        for m in range(self.order - 1, 0, -1):
            suffixes = keys % (self.vocab_size ** m)
            keys, inverse, distinct = np.unique(suffixes, return_inverse=True, return_counts=True)
            if lower_counts == "raw":
                counts = np.bincount(inverse, weights=counts, minlength=keys.size).astype(np.int64)
            else:
                counts = distinct.astype(np.int64)
            levels.append(OrderCounts.from_keys(keys, counts, self.vocab_size))
        return levels[::-1]

    def use_lower_counts(self, lower_counts: str) -> None:
        """Switch the lower orders between continuation and raw counts (discounts are kept)."""
        if lower_counts not in LOWER_COUNTS:
            raise ValueError(f"lower_counts must be one of {LOWER_COUNTS}, got {lower_counts!r}")
        if lower_counts != self.lower_counts:
            self.lower_counts = lower_counts
            self.levels = self._build_levels(lower_counts)

    def textbook_discounts(self) -> np.ndarray:
        """Ney's estimate D = n1 / (n1 + 2 n2) per order, kept inside [MIN_DISCOUNT, 1]."""
        values = []
        for level in self.levels:
            n1 = int((level.counts == 1).sum())
            n2 = int((level.counts == 2).sum())
            estimate = n1 / (n1 + 2 * n2) if n1 + n2 else 0.5
            values.append(min(1.0, max(MIN_DISCOUNT, estimate)))
        return np.asarray(values)

    def _check_windows(self, sequences: np.ndarray) -> np.ndarray:
        sequences = np.asarray(sequences, dtype=np.int64)
        if sequences.ndim != 2 or sequences.shape[1] < self.order:
            raise ValueError(f"windows must be [N, L] with L >= order {self.order}, got {sequences.shape}")
        return sequences

    def target_statistics(self, sequences: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per order, the counts the target of each window needs; independent of the discounts, so
        tuning re-uses them."""
        sequences = self._check_windows(sequences)
        stats = []
        for m in range(1, self.order + 1):
            gram = sequences[:, sequences.shape[1] - m :]
            keys = _ngram_keys(gram, self.vocab_size)
            stats.append(self.levels[m - 1].lookup(keys // self.vocab_size, keys))
        return stats

    def _target_probabilities(self, stats, discounts: np.ndarray, strengths: np.ndarray) -> np.ndarray:
        probability = np.full(stats[0][0].shape, 1.0 / self.vocab_size)
        for (count, total, types), discount, strength in zip(stats, discounts, strengths):
            seen = total > 0
            lower = (discount * types + strength) * probability
            mixed = (np.maximum(count - discount, 0.0) + lower) / np.maximum(total + strength, 1e-300)
            probability = np.where(seen, mixed, probability)
        return probability

    def target_log_probs(
        self, sequences: np.ndarray, discounts: Sequence[float] | None = None, strengths: Sequence[float] | None = None,
    ) -> np.ndarray:
        """log P(last token | the previous order - 1 tokens) of each window [N]."""
        chosen = self.discounts if discounts is None else np.asarray(discounts, dtype=np.float64)
        strength = self.strengths if strengths is None else np.asarray(strengths, dtype=np.float64)
        return np.log(self._target_probabilities(self.target_statistics(sequences), chosen, strength))

    def cross_entropy(
        self, sequences: np.ndarray, discounts: Sequence[float] | None = None, strengths: Sequence[float] | None = None,
    ) -> float:
        return float(-self.target_log_probs(sequences, discounts, strengths).mean())

    def tune_discounts(self, val_sequences: np.ndarray, sweeps: int = 5) -> dict:
        """For each kind of lower-order counts, coordinate search over DISCOUNT_GRID and STRENGTH_GRID
        minimising val cross-entropy, from the textbook discounts and zero strengths; keeps the best and
        returns what was tried. The textbook reference is plain KN (continuation counts, S = 0)."""
        results = {}
        for lower_counts in LOWER_COUNTS:
            self.use_lower_counts(lower_counts)
            results[lower_counts] = self._tune_current(val_sequences, sweeps)
        chosen = min(LOWER_COUNTS, key=lambda name: results[name]["tuned_val_cross_entropy"])
        self.use_lower_counts(chosen)
        self.discounts = np.asarray(results[chosen]["tuned_discounts"])
        self.strengths = np.asarray(results[chosen]["tuned_strengths"])
        textbook = results["continuation"]
        LOG.info(
            "n-gram %s lower-order counts, discounts %s, strengths %s: val CE %.4f (textbook KN %s: %.4f)", chosen,
            self.discounts.round(3).tolist(), self.strengths.round(1).tolist(), results[chosen]["tuned_val_cross_entropy"],
            np.round(textbook["textbook_discounts"], 3).tolist(), textbook["textbook_val_cross_entropy"],
        )
        return {
            "lower_order_counts": chosen,
            "textbook_discounts": textbook["textbook_discounts"],
            "textbook_val_cross_entropy": textbook["textbook_val_cross_entropy"],
            "tuned_discounts": self.discounts.tolist(),
            "tuned_strengths": self.strengths.tolist(),
            "tuned_val_cross_entropy": results[chosen]["tuned_val_cross_entropy"],
            "tuned_val_cross_entropy_by_lower_counts": {name: r["tuned_val_cross_entropy"] for name, r in results.items()},
        }

    def _tune_current(self, val_sequences: np.ndarray, sweeps: int) -> dict:
        stats = self.target_statistics(val_sequences)

        def val_ce(values: np.ndarray) -> float:
            probability = self._target_probabilities(stats, values[: self.order], values[self.order :])
            return float(-np.log(probability).mean())

        textbook = self.textbook_discounts()
        best = np.concatenate([textbook, np.zeros(self.order)])
        best_ce = val_ce(best)
        textbook_ce = best_ce
        grids = [DISCOUNT_GRID] * self.order + [STRENGTH_GRID] * self.order
        for _ in range(sweeps):
            improved = False
            for index, grid in enumerate(grids):
                for value in grid:
                    trial = best.copy()
                    trial[index] = value
                    ce = val_ce(trial)
                    if ce < best_ce - 1e-12:
                        best, best_ce, improved = trial, ce, True
            if not improved:
                break
        return {
            "textbook_discounts": textbook.tolist(),
            "textbook_val_cross_entropy": textbook_ce,
            "tuned_discounts": best[: self.order].tolist(),
            "tuned_strengths": best[self.order :].tolist(),
            "tuned_val_cross_entropy": best_ce,
        }

    def distribution(self, contexts: np.ndarray) -> np.ndarray:
        """P(w | context) over the whole vocabulary [B, V] for contexts [B, >= order - 1] (only the
        last order - 1 tokens are used)."""
        contexts = np.asarray(contexts, dtype=np.int64)
        if contexts.ndim != 2 or contexts.shape[1] < self.order - 1:
            raise ValueError(f"contexts must be [B, T] with T >= {self.order - 1}")
        batch = contexts.shape[0]
        vocab = self.vocab_size
        probability = np.full((batch, vocab), 1.0 / vocab)
        for m in range(1, self.order + 1):
            level = self.levels[m - 1]
            discount = self.discounts[m - 1]
            strength = self.strengths[m - 1]
            history = contexts[:, contexts.shape[1] - (m - 1) :] if m > 1 else contexts[:, :0]
            context_keys = _ngram_keys(history, vocab)
            total = _lookup(level.context_keys, level.context_totals, context_keys)
            types = _lookup(level.context_keys, level.context_types, context_keys)
            low = np.searchsorted(level.keys, context_keys * vocab)
            high = np.searchsorted(level.keys, context_keys * vocab + vocab)
            sizes = high - low
            rows = np.repeat(np.arange(batch), sizes)
            starts = np.repeat(low - (np.cumsum(sizes) - sizes), sizes)
            index = np.arange(rows.size) + starts
            mixed = (discount * types[:, None] + strength) * probability
            mixed[rows, level.keys[index] % vocab] += np.maximum(level.counts[index] - discount, 0.0)
            seen = total > 0
            probability[seen] = mixed[seen] / (total[seen, None] + strength)
        return probability

    def state(self) -> dict:
        """Plain tensors and types (torch.load(weights_only=True) reads it back)."""
        return {
            "order": self.order,
            "vocab_size": self.vocab_size,
            "discounts": [float(d) for d in self.discounts],
            "strengths": [float(s) for s in self.strengths],
            "lower_counts": self.lower_counts,
            "ngram_keys": torch.from_numpy(self.keys.copy()),
            "ngram_counts": torch.from_numpy(self.counts.copy()),
        }

    @classmethod
    def from_state(cls, state: dict) -> "KneserNeyModel":
        return cls(
            int(state["order"]), int(state["vocab_size"]), state["ngram_keys"].numpy(), state["ngram_counts"].numpy(),
            state["discounts"], state["strengths"], str(state["lower_counts"]),
        )



MODEL_FILE = "ngram_model.pt"


def _scores(model: KneserNeyModel, sequences: np.ndarray, batch_size: int) -> dict[str, torch.Tensor]:
    """Per-window NLL / top-1 / top-5 through the shared metrics, from the full distribution."""
    pieces = []
    starts = range(0, sequences.shape[0], batch_size)
    for start in tqdm(starts, desc="n-gram test", unit="batch", leave=False, disable=None):
        chunk = sequences[start : start + batch_size]
        log_probs = torch.from_numpy(np.log(model.distribution(chunk[:, :-1])))
        pieces.append(window_scores(log_probs, torch.from_numpy(chunk[:, -1].copy())))
    return {key: torch.cat([p[key] for p in pieces]) for key in pieces[0]}


def run_ngram_stage(args: argparse.Namespace) -> dict:
    """Count on train, tune the discounts on val, score test; writes metrics.json (same keys as the
    neural trainer's), test_predictions.pt, ngram_model.pt, args.json."""
    if args.task != "autoregressive":
        raise UserError(f"--task {args.task}: the n-gram model predicts the next token only; use --task autoregressive")
    if args.order < 1:
        raise UserError(f"--order {args.order}: must be at least 1")
    data = load_token_dataset(args.data_dir)
    length = int(data["train"].sequences.shape[1])
    if args.order > length:
        raise UserError(f"--order {args.order}: windows hold only {length} tokens; use --order {length} or less")
    vocab = data["train"].vocab_size
    if vocab ** args.order >= 2**62:
        raise UserError(f"--order {args.order}: too high for {vocab} tokens (n-gram keys overflow 64 bits)")
    output_dir = prepare_output_dir(args.output_dir, args.overwrite)
    record = RunRecord(output_dir, "train_classical_baselines", vars(args))
    started = time.perf_counter()
    windows = {name: split.sequences.numpy() for name, split in data.items()}
    model, counting = KneserNeyModel.fit(windows["train"], args.order, vocab, args.ngram_counting)
    tuning = model.tune_discounts(windows["val"])
    val_loss = model.cross_entropy(windows["val"])
    scores = _scores(model, windows["test"], args.eval_batch_size)
    seconds = time.perf_counter() - started
    test = summarize(score_sums(scores))
    save_test_predictions(output_dir / PREDICTIONS_FILE, scores, data["test"].sources)
    atomic_torch_save({**model.state(), "counting": counting}, output_dir / MODEL_FILE)
    metrics = {
        "model": "ngram",
        "model_config": {
            "order": args.order, "counting": args.ngram_counting, "discounts": model.discounts.tolist(),
            "strengths": model.strengths.tolist(), "lower_order_counts": model.lower_counts,
        },
        "task": "autoregressive",
        "parameters": int(sum(level.keys.size for level in model.levels)),
        "parameters_note": "n-gram types stored over all orders (each holds one count)",
        "vocab_size": vocab,
        "num_classes": vocab,
        "context_length": length - 1,
        "windows": {name: len(split) for name, split in data.items()},
        "counting": counting,
        "discount_tuning": tuning,
        "val": {"loss": val_loss, "perplexity": float(np.exp(val_loss))},
        "test": test,
        "references": reference_perplexities(data["train"].sequences[:, -1], data["test"].sequences[:, -1], vocab),
        "train_seconds": seconds,
        "device": "cpu",
    }
    record.finish(metrics)
    LOG.info(
        "n-gram order %d: test loss %.4f ppl %.3f acc %.4f top5 %.4f (unigram ppl %.3f, uniform %d)",
        args.order, test["loss"], test["perplexity"], test["accuracy"], test["top5_accuracy"],
        metrics["references"]["unigram_perplexity"], vocab,
    )
    return metrics
