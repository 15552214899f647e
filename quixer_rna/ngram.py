"""Count-based n-gram model with interpolated Kneser-Ney smoothing: the floor every neural model must
beat on the same windows.

It scores the target (last token) of each window given the preceding `order - 1` tokens. By default
(`counting="targets"`) it counts, in the train split, the n-gram ending at each window's target:
exactly the examples the neural models are trained on, one per window, so with `--window_step 1`
every position of a transcript after its first window is counted once. `counting="transcript"` counts
every position of the train stream's window-covered stretches once instead (also the first window's
positions), each with its `order - 1` predecessors in the same stretch. Counting runs over the k-mer stream
in chunks with vectorised numpy (sort/unique of packed n-gram keys), never over Python dictionaries.

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

Why one module of ~530 lines: counting, discounting and scoring share the packed n-gram key layout and the
per-order tables; KneserNeyModel is one algorithm, and splitting it would spread that layout over files.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .cli import positive_int
from .errors import UserError
from .formats.predictions import FILE as PREDICTIONS_FILE, save_predictions
from .formats.results import ModelResult, read_result, write_result
from .formats.tokens import TokenWindows, open_tokens
from .metrics import TOP_K, ScoreArrays, reference_perplexities, score_sums, summarize
from .progress import Progress
from .runio import atomic_open
from .stage import stage_run
from .training.config import TrainConfig, TrainerStageConfig
from .training.loop import val_sample

LOG = logging.getLogger(__name__)

COUNTING_MODES = ("transcript", "targets")
MIN_DISCOUNT = 0.01
DISCOUNT_GRID = np.round(np.arange(MIN_DISCOUNT, 1.0 + 1e-9, 0.01), 4)
STRENGTH_GRID = np.concatenate([[0.0], np.geomspace(0.1, 1e6, 71)])
LOWER_COUNTS = ("continuation", "raw")
# n-grams per counting chunk: bounded memory whatever the split size.
COUNT_CHUNK = 1 << 20
# n-gram key spaces up to this size are counted in a dense table (int32: 0.5 GB at the limit).
DENSE_KEYS = 1 << 27
# Test windows scored at once: [B, V] probabilities, 134 MB at V = 4096.
SCORE_BATCH = 4096


@dataclass(frozen=True)
class NgramConfig:
    """The n-gram's own flags (train_classical_baselines.py --model ngram); it also reads the trainers' data
    settings (train_fraction, val_windows, seed, log_every) from their TrainConfig."""

    order: int = field(default=3, metadata={
        "type": positive_int, "help": "ngram: n-gram order, the target and the order-1 tokens before it"})
    ngram_counting: str = field(default="targets", metadata={
        "choices": COUNTING_MODES,
        "help": "ngram: targets counts each train window's target n-gram (the neural models' training examples); "
                "transcript counts every position of the train stream's windowed stretches once"})


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
        """From sorted keys: the contexts are then sorted too, so their runs need no second sort."""
        if not keys.size:
            empty = np.zeros(0, dtype=np.int64)
            return cls(keys, counts, empty, empty, empty)
        context_of_key = keys // vocab_size
        first = np.flatnonzero(np.concatenate(([True], context_of_key[1:] != context_of_key[:-1])))
        types = np.diff(np.append(first, len(keys)))
        totals = np.add.reduceat(counts, first)
        return cls(keys, counts, context_of_key[first], totals.astype(np.int64), types.astype(np.int64))

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


def _merge(keys: list[np.ndarray], counts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    merged, inverse = np.unique(np.concatenate(keys), return_inverse=True)
    return merged, np.bincount(inverse.reshape(-1), weights=np.concatenate(counts), minlength=merged.size).astype(np.int64)


def count_ngrams(windows: TokenWindows, order: int, counting: str = "targets",
                 chunk: int = COUNT_CHUNK) -> tuple[np.ndarray, np.ndarray, dict]:
    """Unique top-order n-gram keys (sorted) and their raw counts over the train windows, and a summary of what
    was counted. Chunks of n-grams are packed into int64 keys and added into a dense table when every possible
    n-gram fits one, else reduced with np.unique and merged as they pile up; memory stays bounded by the
    distinct n-grams either way."""
    if counting not in COUNTING_MODES:
        raise ValueError(f"counting must be one of {COUNTING_MODES}, got {counting!r}")
    if order > windows.window_size:
        raise ValueError(f"order {order} is longer than the windows ({windows.window_size} tokens)")
    vocab = windows.vocab_size
    total = 0
    if vocab**order <= DENSE_KEYS:
        # Every possible n-gram has a slot (512^3 = 134 M: 0.5 GB of int32): counting is one scatter-add per chunk.
        table = np.zeros(vocab**order, dtype=np.int32)
        for grams in _ngram_chunks(windows, order, counting, chunk):
            np.add.at(table, _ngram_keys(grams, vocab), 1)
            total += len(grams)
        unique = np.flatnonzero(table)
        return unique, table[unique].astype(np.int64), {"counting": counting, "ngrams_counted": int(total)}
    keys: list[np.ndarray] = []
    counts: list[np.ndarray] = []
    for grams in _ngram_chunks(windows, order, counting, chunk):
        unique, seen = np.unique(_ngram_keys(grams, vocab), return_counts=True)
        keys.append(unique)
        counts.append(seen)
        total += len(grams)
        if len(keys) >= 16:
            merged = _merge(keys, counts)
            keys, counts = [merged[0]], [merged[1]]
    if not keys:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), {"counting": counting, "ngrams_counted": 0}
    unique, merged = _merge(keys, counts)
    return unique, merged, {"counting": counting, "ngrams_counted": int(total)}


def _ngram_chunks(windows: TokenWindows, order: int, counting: str, chunk: int):
    """Token n-grams [B, order] to count, chunk by chunk: each window's last `order` tokens ("targets"), or
    every position of the window-covered stretches with its predecessors in the stretch ("transcript")."""
    if counting == "targets":
        for begin in range(0, windows.num_windows, chunk):
            index = torch.arange(begin, min(windows.num_windows, begin + chunk), device=windows.device)
            yield windows.tail(index, order).cpu().numpy()
        return
    stream = windows.stream
    covered = stream.counts > 0
    starts = stream.first_window[covered]
    ends = starts + (stream.counts[covered] - 1) * stream.window_step + stream.window_size
    positions = [np.arange(a + order - 1, b, dtype=np.int64) for a, b in zip(starts.tolist(), ends.tolist())]
    flat = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    offsets = torch.arange(1 - order, 1)
    for begin in range(0, len(flat), chunk):
        last = torch.from_numpy(flat[begin:begin + chunk]).to(windows.device)
        yield windows.tokens_at(last.unsqueeze(1) + offsets.to(windows.device)).cpu().numpy()


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
    def fit(cls, windows: TokenWindows, order: int, counting: str = "targets") -> tuple["KneserNeyModel", dict]:
        keys, counts, summary = count_ngrams(windows, order, counting)
        if keys.size == 0:
            raise ValueError(f"no {order}-gram fits in the train windows; lower the order")
        return cls(order, windows.vocab_size, keys, counts), summary

    def _build_levels(self, lower_counts: str) -> list[OrderCounts]:
        """levels[m - 1] holds order m: raw counts at the top, `lower_counts` below."""
        levels = [OrderCounts.from_keys(self.keys, self.counts, self.vocab_size)]
        keys, counts = self.keys, self.counts
        for m in range(self.order - 1, 0, -1):
            suffixes = keys % (self.vocab_size ** m)
            weights = counts if lower_counts == "raw" else None
            if self.vocab_size ** m <= DENSE_KEYS:  # a dense table of every m-gram: no sort of the suffixes
                table = np.bincount(suffixes, weights=weights, minlength=self.vocab_size ** m)
                keys = np.flatnonzero(table)
                counts = table[keys].astype(np.int64)
            else:
                keys, inverse, distinct = np.unique(suffixes, return_inverse=True, return_counts=True)
                counts = (np.bincount(inverse.reshape(-1), weights=weights, minlength=keys.size) if weights is not None
                          else distinct).astype(np.int64)
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

    def save(self, path: str | Path, **extra: Any) -> None:
        """The counts as a compressed .npz (no pickle): sorted n-gram keys as the smallest unsigned deltas and
        counts in the smallest unsigned type, a few bytes per distinct n-gram; settings in a JSON header."""
        deltas = np.diff(self.keys, prepend=0)
        header = {"format": MODEL_FORMAT, "order": self.order, "vocab_size": self.vocab_size,
                  "discounts": [float(d) for d in self.discounts], "strengths": [float(v) for v in self.strengths],
                  "lower_counts": self.lower_counts, **extra}
        with atomic_open(path, "wb", encoding=None) as handle:
            np.savez_compressed(handle, key_deltas=deltas.astype(_smallest(deltas)),
                                counts=self.counts.astype(_smallest(self.counts)), header=np.array(json.dumps(header)))

    @classmethod
    def load(cls, path: str | Path) -> "KneserNeyModel":
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(str(data["header"]))
                keys = np.cumsum(data["key_deltas"].astype(np.int64))
                counts = data["counts"].astype(np.int64)
        except (OSError, ValueError, KeyError) as exc:
            raise UserError(f"{path}: not an n-gram model file ({type(exc).__name__}: {exc})") from exc
        if header.get("format") != MODEL_FORMAT:
            raise UserError(f"{path}: not an n-gram model file of this version")
        return cls(int(header["order"]), int(header["vocab_size"]), keys, counts, header["discounts"],
                   header["strengths"], str(header["lower_counts"]))


def _smallest(values: np.ndarray) -> np.dtype:
    top = int(values.max(initial=0))
    return next(np.dtype(t) for t in (np.uint8, np.uint16, np.uint32, np.uint64) if top <= np.iinfo(t).max)


MODEL_FILE = "ngram_model.npz"
MODEL_FORMAT = "quixer-rna-ngram-1"


def window_tails(windows: TokenWindows, index: torch.Tensor, order: int, chunk: int = COUNT_CHUNK) -> np.ndarray:
    """The last `order` tokens of windows `index`, int64 [len(index), order] (what the model reads of them)."""
    parts = [windows.tail(part, order).cpu().numpy() for part in index.split(chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, order), dtype=np.int64)


def test_scores(model: KneserNeyModel, windows: TokenWindows, batch_size: int, progress: Progress) -> dict[str, torch.Tensor]:
    """Per-window NLL / top-1 / top-5 of every test window, as the shared metrics define them, from the full
    distribution of each distinct context: a window's scores depend only on its last order - 1 tokens, so each
    context's distribution is computed once ([batch_size, V] at a time), however many windows share it (a genome's
    test split holds 50 M windows and at most V^(order-1) contexts)."""
    scores = ScoreArrays(windows.num_windows)
    k = min(TOP_K, model.vocab_size)
    for begin in range(0, windows.num_windows, COUNT_CHUNK):
        index = torch.arange(begin, min(windows.num_windows, begin + COUNT_CHUNK), device=windows.device)
        tails = windows.tail(index, model.order).cpu().numpy()
        targets = torch.from_numpy(tails[:, -1].copy())
        _, first, inverse = np.unique(_ngram_keys(tails[:, :-1], model.vocab_size), return_index=True,
                                      return_inverse=True)
        inverse = inverse.reshape(-1)
        by_context = np.argsort(inverse, kind="stable")  # the windows of context c are a contiguous run
        bounds = np.searchsorted(inverse[by_context], np.arange(0, len(first) + batch_size, batch_size))
        nll = torch.empty(len(index))
        top = torch.empty((len(first), k), dtype=torch.int64)
        for batch, low in enumerate(range(0, len(first), batch_size)):
            contexts = tails[first[low:low + batch_size], :-1]
            logits = torch.from_numpy(np.log(model.distribution(contexts))).float()
            top[low:low + len(contexts)] = logits.topk(k, dim=-1).indices
            mine = torch.from_numpy(by_context[bounds[batch]:bounds[batch + 1]])
            log_probs = torch.log_softmax(logits, dim=-1)
            nll[mine] = -log_probs[torch.from_numpy(inverse)[mine] - low, targets[mine]]
        inverse = torch.from_numpy(inverse)
        hits = top[inverse] == targets.view(-1, 1)
        scores.put(begin, {"nll": nll, "correct": hits[:, 0], "top5": hits.any(dim=1)})
        progress.update(len(index))
    return scores.scores()


def run_ngram_stage(stage: TrainerStageConfig, train_config: TrainConfig, config: NgramConfig,
                    record: dict[str, Any]) -> dict:
    """Count on train, tune the discounts on val, score test; writes metrics.json (the results schema, like
    the neural trainers'), test_predictions.npz, ngram_model.npz and the run record (its arguments:
    `record`)."""
    data = open_tokens(stage.data_dir)
    length = data["train"].window_size
    if config.order > length:
        raise UserError(f"--order {config.order}: windows hold only {length} tokens; use --order {length} or less")
    vocab = data.vocab_size
    if vocab ** config.order >= 2**62:
        raise UserError(f"--order {config.order}: too high for {vocab} tokens (n-gram keys overflow 64 bits)")
    if config.ngram_counting == "transcript" and data.meta.kind == "windows":
        raise UserError("--ngram_counting transcript: per-window (contextual) tokens have no tokens per stream "
                        "position; use --ngram_counting targets")
    with stage_run(stage.output_dir, "train_classical_baselines", record, role="train", overwrite=stage.overwrite,
                   completed="report") as run:
        output_dir = run.output_dir
        if run.completed_earlier:
            LOG.info("%s already holds a completed run; reporting it (pass --overwrite to count again)", output_dir)
            return read_result(output_dir).as_dict()
        started = time.perf_counter()
        train, train_info = data.training_windows(train_config.train_fraction, train_config.seed)
        model, counting = KneserNeyModel.fit(train, config.order, config.ngram_counting)
        val = data["val"]
        sample = val_sample(val.num_windows, train_config.val_windows, train_config.seed)
        val_tails = window_tails(val, sample, config.order)
        tuning = model.tune_discounts(val_tails)
        val_loss = model.cross_entropy(val_tails)
        test_windows = data["test"].num_windows
        with Progress(test_windows, "n-gram test", unit="window", every=train_config.log_every) as progress:
            scores = test_scores(model, data["test"], SCORE_BATCH, progress)
        seconds = time.perf_counter() - started
        test = summarize(score_sums(scores))
        save_predictions(output_dir / PREDICTIONS_FILE, scores["nll"].numpy(), scores["correct"].numpy(),
                         scores["top5"].numpy(), data["test"].window_transcripts(), data.fingerprint)
        model.save(output_dir / MODEL_FILE, counting=counting)
        result = ModelResult(
            model="ngram",
            seed=train_config.seed,
            tokens=data.summary(),
            test=test,
            val={"loss": val_loss, "perplexity": float(np.exp(val_loss)), "windows_used": len(val_tails),
                 "windows_total": val.num_windows},
            references=reference_perplexities(data["train"].target_counts(), data["test"].target_counts()),
            parameters=int(sum(level.keys.size for level in model.levels)),
            parameters_note="n-gram types stored over all orders (each holds one count)",
            train_seconds=seconds,
            train=train_info,
            model_config={
                "order": config.order, "counting": config.ngram_counting, "discounts": model.discounts.tolist(),
                "strengths": model.strengths.tolist(), "lower_order_counts": model.lower_counts,
            },
            counting=counting,
            discount_tuning=tuning,
            context_length=length - 1,
            windows={name: split.num_windows for name, split in data.splits.items()},
            device="cpu",
        )
        written = write_result(output_dir, result)
        run.close("completed")
    LOG.info(
        "n-gram order %d: test loss %.4f ppl %.3f acc %.4f top5 %.4f (unigram ppl %.3f, uniform %d)",
        config.order, test["loss"], test["perplexity"], test["accuracy"], test["top5_accuracy"],
        result.references["unigram_perplexity"], vocab,
    )
    return written
