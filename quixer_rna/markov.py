"""The order-m nucleotide Markov model: a reference row in bits per nucleotide for the raw k-mer track.

It scores the same targets as every other model (the last k-mer of each test window, given the window's
context) as the product of its new nucleotides' probabilities, each given the m nucleotides before it:

    P_m(x | c_m) = (n(c_m, x) + alpha * P_{m-1}(x | c_{m-1})) / (n(c_m) + alpha),   P_{-1}(x) = 1/4

(interpolated with the next lower order, a hierarchical Dirichlet prior of strength alpha), where n counts
the train stream's nucleotides after each context of m nucleotides inside one stretch. Its cross-entropy is
therefore in nats per target k-mer like the others', and bits per nucleotide are CE / (new nt per target *
ln 2), the scale of the literature (order-0 ~1.95, Markov ~1.92, best ~1.84-1.87 bits/nt on human coding
sequence). The order m and alpha are chosen on the validation windows. Needs k-mers that tile the sequence
(stride <= k).

On the cluster track the same model is the strong count reference: every possible target k-mer's probability is
added to its cluster's, so it predicts a normalised distribution over clusters (order and alpha are chosen on the
k-mer level, where the model is defined).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .cli import positive_int
from .errors import UserError
from .formats.predictions import FILE as PREDICTIONS_FILE, save_predictions
from .formats.results import ModelResult, read_result, write_result
from .formats.tokens import TokenWindows, open_tokens
from .metrics import TOP_K, ScoreArrays, reference_perplexities, score_sums, summarize
from .progress import Progress
from .stage import stage_run
from .training.config import TrainConfig, TrainerStageConfig
from .training.loop import val_sample

LOG = logging.getLogger(__name__)

MAX_ORDER = 11
ALPHA_GRID = np.geomspace(0.01, 100.0, 21)
CHUNK = 1 << 22
BATCH = 512


@dataclass(frozen=True)
class MarkovConfig:
    """The Markov reference's own flag (train_classical_baselines.py --model markov); it also reads the
    trainers' data settings (train_fraction, val_windows, seed, log_every) from their TrainConfig."""

    max_markov_order: int = field(default=10, metadata={
        "type": positive_int, "help": "markov: the largest nucleotide context tried on val (orders 0..this)"})


def kmer_digits(ids: np.ndarray, k: int) -> np.ndarray:
    """Base digits (A=0 C=1 G=2 T=3) of k-mer ids, first base first: [..., k]."""
    powers = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)
    return (np.asarray(ids, dtype=np.int64)[..., None] // powers) % 4


def window_nucleotides(ids: np.ndarray, k: int, stride: int) -> np.ndarray:
    """The contiguous nucleotides [B, k + (W-1) * stride] of windows of k-mer ids [B, W] (stride <= k)."""
    digits = kmer_digits(ids, k)
    return np.concatenate([digits[:, 0], digits[:, 1:, k - stride:].reshape(len(ids), -1)], axis=1)


@dataclass
class MarkovCounts:
    """counts[m]: float64 [4^m, 4], nucleotides seen after each context of m nucleotides (most recent
    nucleotide = least significant digit of the context)."""

    counts: list[np.ndarray]

    @classmethod
    def from_stream(cls, windows: TokenWindows, k: int, stride: int, max_order: int) -> "MarkovCounts":
        counts = [np.zeros(4 ** (m + 1)) for m in range(max_order + 1)]
        stream = windows.stream
        for offset, length, _, _ in stream.segments.tolist():
            for begin in range(0, length, CHUNK):
                lead = min(begin, max_order)
                ids = np.asarray(stream.kmers[offset + begin - lead: offset + min(length, begin + CHUNK)])
                nts = window_nucleotides(ids[None, :], k, stride)[0]
                skip = 0 if begin == 0 else k + (lead - 1) * stride  # nucleotides already counted
                _count(counts, nts, skip, max_order)
        return cls([c.reshape(-1, 4) for c in counts])

    @property
    def max_order(self) -> int:
        return len(self.counts) - 1


def _count(counts: list[np.ndarray], nts: np.ndarray, skip: int, max_order: int) -> None:
    key = np.zeros(len(nts), dtype=np.int64)
    for m in range(max_order + 1):
        if m:
            key[m:] += nts[:-m] * 4 ** (m - 1)
        first = max(m, skip)
        if first < len(nts):
            counts[m] += np.bincount(key[first:] * 4 + nts[first:], minlength=4 ** (m + 1))


def chain_probabilities(counts: MarkovCounts, keys: np.ndarray, order: int, alpha: float) -> np.ndarray:
    """P_order(x | context) for every nucleotide x [..., 4]; `keys` hold the contexts of the full order."""
    prob = np.full((*keys.shape, 4), 0.25)
    for m in range(order + 1):
        table = counts.counts[m][keys % 4**m]
        prob = (table + alpha * prob) / (table.sum(-1, keepdims=True) + alpha)
    return prob


def context_keys(nts: np.ndarray, positions: np.ndarray, order: int) -> np.ndarray:
    """Context keys [B, len(positions)] of the `order` nucleotides before each position."""
    key = np.zeros((len(nts), len(positions)), dtype=np.int64)
    for j in range(1, order + 1):
        key += nts[:, positions - j] * 4 ** (j - 1)
    return key


class MarkovModel:
    def __init__(self, counts: MarkovCounts, k: int, stride: int, order: int, alpha: float):
        self.counts, self.k, self.stride, self.order, self.alpha = counts, k, stride, order, alpha
        self.new = min(stride, k)

    def target_nll(self, ids: np.ndarray, order: int | None = None, alpha: float | None = None) -> np.ndarray:
        """-log P(target k-mer | window context) in nats, per window of k-mer ids [B, W]."""
        order = self.order if order is None else order
        alpha = self.alpha if alpha is None else alpha
        nts = window_nucleotides(ids, self.k, self.stride)
        positions = np.arange(nts.shape[1] - self.new, nts.shape[1])
        prob = chain_probabilities(self.counts, context_keys(nts, positions, order), order, alpha)
        picked = np.take_along_axis(prob, nts[:, positions, None], -1)[..., 0]
        return -np.log(picked).sum(1)

    def candidate_log_probs(self, ids: np.ndarray) -> np.ndarray:
        """log P of every completion of the target's new nucleotides [B, 4^new] (the other k-mers are
        impossible given the context when stride < k); completion c's digits are its base-4 value."""
        nts = window_nucleotides(ids, self.k, self.stride)
        start = nts.shape[1] - self.new
        key = context_keys(nts, np.array([start]), self.order)[:, 0]
        log_prob = np.zeros((len(ids), 1))
        keys = key[:, None]
        for _ in range(self.new):
            prob = chain_probabilities(self.counts, keys, self.order, self.alpha)  # [B, P, 4]
            log_prob = (log_prob[..., None] + np.log(prob)).reshape(len(ids), -1)
            keys = ((keys[..., None] * 4 + np.arange(4)) % 4**self.order).reshape(len(ids), -1) if self.order else \
                np.zeros((len(ids), keys.shape[1] * 4), dtype=np.int64)
        return log_prob

    def scores(self, ids: np.ndarray) -> dict[str, torch.Tensor]:
        """Per-window NLL, top-1 and top-5 hits (over the possible completions) of windows [B, W]."""
        nll = self.target_nll(ids)
        log_prob = self.candidate_log_probs(ids)
        truth = ids[:, -1].astype(np.int64) % 4**self.new
        ranked = np.argsort(-log_prob, axis=1, kind="stable")[:, :TOP_K]
        return {"nll": torch.from_numpy(nll.astype(np.float32)), "correct": torch.from_numpy(ranked[:, 0] == truth),
                "top5": torch.from_numpy((ranked == truth[:, None]).any(1))}

    def token_probabilities(self, ids: np.ndarray, token_map: np.ndarray, vocab_size: int) -> np.ndarray:
        """P(token | context) [B, vocab_size]: each possible target k-mer's probability added to its token's
        (`token_map`: k-mer id -> token, -1 for k-mers no split holds), renormalised over the mapped k-mers."""
        log_prob = self.candidate_log_probs(ids)
        prefix = ids[:, -1].astype(np.int64) >> (2 * self.new)  # bases the target shares with its context
        kmer = prefix[:, None] * 4**self.new + np.arange(4**self.new)
        token = token_map[kmer]
        mapped = token >= 0
        rows = np.broadcast_to(np.arange(len(ids))[:, None], token.shape)
        flat = (rows * vocab_size + np.maximum(token, 0))[mapped]
        mass = np.bincount(flat, weights=np.exp(log_prob)[mapped], minlength=len(ids) * vocab_size)
        mass = mass.reshape(len(ids), vocab_size)
        return mass / mass.sum(1, keepdims=True)

    def token_scores(self, ids: np.ndarray, token_map: np.ndarray, vocab_size: int) -> dict[str, torch.Tensor]:
        """Per-window NLL, top-1 and top-5 hits of the target's token under `token_probabilities`."""
        prob = self.token_probabilities(ids, token_map, vocab_size)
        truth = token_map[ids[:, -1].astype(np.int64)]
        nll = -np.log(np.maximum(prob[np.arange(len(ids)), truth], 1e-300))
        ranked = np.argsort(-prob, axis=1, kind="stable")[:, :TOP_K]
        return {"nll": torch.from_numpy(nll.astype(np.float32)), "correct": torch.from_numpy(ranked[:, 0] == truth),
                "top5": torch.from_numpy((ranked == truth[:, None]).any(1))}


def choose_order(counts: MarkovCounts, k: int, stride: int, val_ids: np.ndarray) -> tuple[int, float, dict]:
    """The (order, alpha) of lowest val cross-entropy, and the val CE of every order (at its best alpha)."""
    model = MarkovModel(counts, k, stride, 0, 1.0)
    by_order: dict[int, tuple[float, float]] = {}
    for order in range(counts.max_order + 1):
        ces = [float(model.target_nll(val_ids, order, alpha).mean()) for alpha in ALPHA_GRID]
        best = int(np.argmin(ces))
        by_order[order] = (ces[best], float(ALPHA_GRID[best]))
    order = min(by_order, key=lambda m: by_order[m][0])
    return order, by_order[order][1], {str(m): {"val_cross_entropy": ce, "alpha": a} for m, (ce, a) in by_order.items()}


def run_markov_stage(stage: TrainerStageConfig, train_config: TrainConfig, config: MarkovConfig,
                     record: dict[str, Any]) -> dict:
    """Count on train, choose the order and alpha on val, score test: writes the results schema and
    test_predictions.npz like every model stage, and the run record (its arguments: `record`)."""
    data = open_tokens(stage.data_dir)
    if data.meta.kind not in ("identity", "kmer_map"):
        raise UserError(f"--model markov: {data.folder} holds per-window {data.tokenizer} tokens; the nucleotide "
                        "Markov model scores tokens that are a function of the target k-mer (raw k-mers or clusters)")
    token_map = None if data.meta.kind == "identity" else data["test"].token_map.numpy()
    k, stride = data.k, data.stream.meta.stride
    if stride > k:
        raise UserError(f"--model markov: the k-mers of {data.stream.folder} skip nucleotides (stride {stride} > "
                        f"k {k}); it needs contiguous sequence (stride <= k)")
    if config.max_markov_order > MAX_ORDER:
        raise UserError(f"--max_markov_order {config.max_markov_order}: at most {MAX_ORDER} (4^{MAX_ORDER + 1} counts)")
    with stage_run(stage.output_dir, "train_classical_baselines", record, role="train", overwrite=stage.overwrite,
                   completed="report") as run:
        output_dir = run.output_dir
        if run.completed_earlier:
            return read_result(output_dir).as_dict()
        started = time.perf_counter()
        train, train_info = data.training_windows(train_config.train_fraction, train_config.seed)
        history = (data.stream.window_size - 1) * stride + k - min(stride, k)  # nucleotides before a target's new ones
        counts = MarkovCounts.from_stream(train, k, stride, min(config.max_markov_order, history))
        val = data["val"]
        sample = val_sample(val.num_windows, train_config.val_windows, train_config.seed)
        val_ids = val.stream.windows(sample.numpy())
        order, alpha, tried = choose_order(counts, k, stride, val_ids)
        model = MarkovModel(counts, k, stride, order, alpha)
        val_loss = tried[str(order)]["val_cross_entropy"]
        if token_map is not None:  # the validation loss of what it predicts: tokens, not k-mers
            val_loss = float(np.mean(np.concatenate([
                model.token_scores(val_ids[begin:begin + BATCH], token_map, data.vocab_size)["nll"].numpy()
                for begin in range(0, len(val_ids), BATCH)])))
        test = data["test"]
        arrays = ScoreArrays(test.num_windows)
        with Progress(test.num_windows, "markov test", unit="window", every=train_config.log_every) as progress:
            for begin, end in test.stream.iter_chunks(BATCH):
                ids = test.stream.windows(np.arange(begin, end))
                arrays.put(begin, model.scores(ids) if token_map is None
                           else model.token_scores(ids, token_map, data.vocab_size))
                progress.update(end - begin)
        scores = arrays.scores()
        summary = summarize(score_sums(scores))
        save_predictions(output_dir / PREDICTIONS_FILE, scores["nll"].numpy(), scores["correct"].numpy(),
                         scores["top5"].numpy(), test.window_transcripts(), data.fingerprint)
        LOG.info("markov order %d (alpha %.3g): test %.4f nats per %s", order, alpha, summary["loss"],
                 f"k-mer = {summary['loss'] / (model.new * math.log(2)):.4f} bits/nt" if token_map is None
                 else f"{data.tokenizer} token (k-mer probabilities summed within each token)")
        result = ModelResult(
            model="markov",
            seed=train_config.seed,
            tokens=data.summary(),
            test=summary,
            val={"loss": val_loss, "windows_used": len(val_ids), "windows_total": val.num_windows},
            references=reference_perplexities(data["train"].target_counts(), test.target_counts()),
            parameters=int(sum(c.size for c in counts.counts[: order + 1])),
            parameters_note="nucleotide counts over every context of order 0..m",
            train_seconds=time.perf_counter() - started,
            train=train_info,
            model_config={"order": order, "alpha": alpha, "max_order": config.max_markov_order,
                          "new_nucleotides_per_target": model.new,
                          "tokens": "k-mers" if token_map is None else "k-mer probabilities summed per token",
                          "chosen_on": "validation cross-entropy per k-mer (the level the model is defined on)"},
            order_selection=tried,
            windows={name: split.num_windows for name, split in data.splits.items()},
            device="cpu",
        )
        written = write_result(output_dir, result)
        run.close("completed")
    return written
